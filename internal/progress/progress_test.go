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
