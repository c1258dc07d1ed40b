package progress

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestStopReportsTheFinalCount(t *testing.T) {
	var done atomic.Int64
	var last, calls atomic.Int64
	stop := Start(func(d, total int64) {
		if total != 100 {
			t.Errorf("total = %d", total)
		}
		last.Store(d)
		calls.Add(1)
	}, &done, 100, time.Millisecond)
	done.Store(100)
	stop()
	if last.Load() != 100 || calls.Load() < 1 {
		t.Fatalf("last report %d after %d calls", last.Load(), calls.Load())
	}
	n := calls.Load()
	time.Sleep(5 * time.Millisecond)
	if calls.Load() != n {
		t.Fatal("reports continued after stop")
	}
	Start(nil, &done, 1, time.Millisecond)() // nil callback: nothing, no panic
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
}
