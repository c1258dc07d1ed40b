// Package idle wraps a storage.Store so that a Get body that delivers no byte for a
// while fails instead of hanging: a connection that went silent mid-body (a
// black-holed network, a stuck server) is an error, which the retry layer treats as
// retryable and resumes from the first byte not yet read.
//
// Only the time spent inside the body's Read counts: a caller that is slow to read
// (writing to a slow disk) is not cut off.
package idle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

// ErrIdle is what a body read fails with when it delivered nothing for the timeout.
var ErrIdle = errors.New("no data received")

// idleError is the cause of a Get context ended by the idle timeout.
type idleError struct {
	key string
	d   time.Duration
}

func (e *idleError) Error() string {
	return fmt.Sprintf("reading %s: %v for %v", e.key, ErrIdle, e.d)
}
func (e *idleError) Unwrap() error { return ErrIdle }

// Retryable is true: another attempt, on another connection, may well get data.
func (e *idleError) Retryable() bool { return true }

// New returns a store whose Get bodies fail with an error wrapping ErrIdle when one
// Read goes d without data. d <= 0 returns inner unchanged.
func New(inner storage.Store, d time.Duration) storage.Store {
	if d <= 0 {
		return inner
	}
	return &store{Store: inner, d: d}
}

type store struct {
	storage.Store
	d time.Duration
}

// Get opens the object under a context that the idle timer cancels.
func (s *store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	gctx, cancel := context.WithCancelCause(ctx)
	rc, err := s.Store.Get(gctx, key, off, length)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	cause := &idleError{key: key, d: s.d}
	t := time.AfterFunc(s.d, func() { cancel(cause) })
	t.Stop() // armed only while a Read runs
	return &reader{rc: rc, ctx: gctx, cancel: cancel, timer: t, d: s.d}, nil
}

// MaxBatch is the wrapped store's (see storage.BatchDeleter).
func (s *store) MaxBatch() int { return storage.MaxBatch(s.Store) }

// DeleteBatch passes keys to the wrapped store's DeleteBatch (one Delete per key when
// it has none).
func (s *store) DeleteBatch(ctx context.Context, keys []string) error {
	return storage.DeleteAll(ctx, s.Store, keys)
}

// Unwrap returns the wrapped store.
func (s *store) Unwrap() storage.Store { return s.Store }

type reader struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

func (r *reader) Read(p []byte) (int, error) {
	r.timer.Reset(r.d)
	n, err := r.rc.Read(p)
	r.timer.Stop()
	if err != nil && err != io.EOF {
		var ie *idleError
		if cause := context.Cause(r.ctx); errors.As(cause, &ie) {
			return n, fmt.Errorf("%w (%s)", cause, err.Error()) // only the idle timeout is in the chain
		}
	}
	return n, err
}

func (r *reader) Close() error {
	r.timer.Stop()
	err := r.rc.Close()
	r.cancel(nil)
	return err
}
