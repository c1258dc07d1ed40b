// Package workpool has the small pieces the parallel parts of backup and restore share.
package workpool

import "context"

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
