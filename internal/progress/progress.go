// Package progress reports the progress of long work through a callback, about once
// a second and once more at the end.
package progress

import (
	"sync/atomic"
	"time"
)

// Func receives bytes done so far and the total expected.
type Func func(done, total int64)

// Start calls fn at once (the work starts: a rate is measured from this call), then
// every interval with done's value until the returned stop is called, which reports
// a last time and waits. A nil fn does nothing.
func Start(fn Func, done *atomic.Int64, total int64, interval time.Duration) (stop func()) {
	if fn == nil {
		return func() {}
	}
	tick := time.NewTicker(interval)
	stopReports := start(fn, done, total, tick.C)
	return func() { stopReports(); tick.Stop() }
}

// start is Start with the ticks coming from tick, so that tests drive the clock.
func start(fn Func, done *atomic.Int64, total int64, tick <-chan time.Time) (stop func()) {
	fn(done.Load(), total)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-quit:
				fn(done.Load(), total)
				return
			case <-tick:
				fn(done.Load(), total)
			}
		}
	}()
	return func() { close(quit); <-finished }
}
