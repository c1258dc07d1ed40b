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
	fn(done.Load(), total)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				fn(done.Load(), total)
				return
			case <-tick.C:
				fn(done.Load(), total)
			}
		}
	}()
	return func() { close(quit); <-finished }
}
