// Package limit wraps a storage.Store so that at most a given number of uploads run
// at once; a Put over the limit waits for a slot (or for its context to end) before it
// reaches the store below. It sits above the retry layer, so that an upload keeps its
// slot through its retries and the time spent waiting for a slot never counts against
// an attempt's deadline.
package limit

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/pgb-project/pgb/internal/storage"
)

// Store is a storage.Store whose Puts are limited. It is safe for concurrent use.
type Store struct {
	storage.Store
	slots   chan struct{}
	waiting atomic.Int64
}

// Puts returns inner with at most n Puts running at once; n < 1 means no limit, and
// inner is returned as it is.
func Puts(inner storage.Store, n int) storage.Store {
	if n < 1 {
		return inner
	}
	return &Store{Store: inner, slots: make(chan struct{}, n)}
}

// Put waits for a slot, then puts as the inner store does. A context that ends first
// ends the call with its error, before anything is sent.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	s.waiting.Add(1)
	select {
	case s.slots <- struct{}{}:
		s.waiting.Add(-1)
	case <-ctx.Done():
		s.waiting.Add(-1)
		return fmt.Errorf("put %q: waiting for an upload slot: %w", key, ctx.Err())
	}
	defer func() { <-s.slots }()
	return s.Store.Put(ctx, key, r, opts)
}

// Waiting is the number of Puts waiting for a slot.
func (s *Store) Waiting() int { return int(s.waiting.Load()) }

// Limit is the number of Puts that may run at once.
func (s *Store) Limit() int { return cap(s.slots) }

// MaxBatch is the wrapped store's (see storage.BatchDeleter).
func (s *Store) MaxBatch() int { return storage.MaxBatch(s.Store) }

// DeleteBatch passes keys to the wrapped store's DeleteBatch (one Delete per key when
// it has none).
func (s *Store) DeleteBatch(ctx context.Context, keys []string) error {
	return storage.DeleteAll(ctx, s.Store, keys)
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() storage.Store { return s.Store }
