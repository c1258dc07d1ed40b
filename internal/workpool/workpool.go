// Package workpool is the one worker pool of pgb: the parallel parts of backup and
// restore run through it.
package workpool

import (
	"context"
	"sync"
)

// Run feeds items, in order, to n workers (at least one) over one channel and waits
// for every worker to return. The first worker error cancels the ctx the workers and
// the feeding run under, with that error as its cause; Run returns that cause, which
// is also the caller's ctx's cause when it ends first, and nil when all went well.
// A worker ranges over its channel until it is closed or ctx is done.
func Run[T any](ctx context.Context, n int, items []T, worker func(ctx context.Context, items <-chan T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan T)
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := worker(ctx, ch); err != nil {
				cancel(err)
			}
		}()
	}
	Feed(ctx, ch, items)
	wg.Wait()
	return context.Cause(ctx)
}

// Feed sends items to ch in order until all are sent or ctx is done, then closes ch,
// so that workers ranging over ch always stop.
func Feed[T any](ctx context.Context, ch chan<- T, items []T) {
	defer close(ch)
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			return
		}
	}
}
