package progress

import (
	"sync/atomic"
	"testing"
	"time"
)

// reports collects what the reporter says; fn never blocks.
func reports() (Func, chan [2]int64) {
	ch := make(chan [2]int64, 100)
	return func(d, total int64) { ch <- [2]int64{d, total} }, ch
}

// next is the report that must already have been made.
func next(t *testing.T, ch chan [2]int64, what string) [2]int64 {
	t.Helper()
	select {
	case r := <-ch:
		return r
	default:
		t.Fatalf("no report %s", what)
		return [2]int64{}
	}
}

// A report at once, one per tick, a last one with the final count when stopped, and
// none after: the clock is the test's, so nothing here waits for time to pass.
func TestReportsOnStartEachTickAndStop(t *testing.T) {
	var done atomic.Int64
	fn, got := reports()
	tick := make(chan time.Time)
	stop := start(fn, &done, 100, tick)
	if r := next(t, got, "when the work starts"); r != [2]int64{0, 100} {
		t.Fatalf("first report %v, want [0 100]", r)
	}
	done.Store(40)
	tick <- time.Time{} // taken by the reporter
	tick <- time.Time{} // taken once the report of the first tick was made
	if r := next(t, got, "after a tick"); r != [2]int64{40, 100} {
		t.Fatalf("report after a tick %v, want [40 100]", r)
	}
	done.Store(100)
	stop()
	next(t, got, "for the second tick")
	if r := next(t, got, "when stopped"); r != [2]int64{100, 100} {
		t.Fatalf("last report %v, want the final count [100 100]", r)
	}
	select {
	case tick <- time.Time{}:
		t.Fatal("the reporter still takes ticks after stop returned")
	default:
	}
	if len(got) != 0 {
		t.Fatalf("%d reports after stop", len(got))
	}
}

func TestNilFuncReportsNothing(t *testing.T) {
	var done atomic.Int64
	Start(nil, &done, 1, time.Millisecond)() // nothing, no panic
}

// The first report comes when the work starts, so that a rate can be measured from it.
func TestStartReportsAtOnce(t *testing.T) {
	var done atomic.Int64
	var calls atomic.Int64
	stop := Start(func(int64, int64) { calls.Add(1) }, &done, 100, time.Hour)
	if calls.Load() != 1 {
		t.Errorf("%d reports before the first interval, want 1", calls.Load())
	}
	stop()
	if calls.Load() != 2 {
		t.Errorf("%d reports after stop, want 2 (one at the start, one at the end)", calls.Load())
	}
}
