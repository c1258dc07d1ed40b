package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// errStalled is the cause of an upload request cancelled for going StallTimeout
// without reading its body.
var errStalled = errors.New("upload stalled")

// stallError is a request cut off by its stall bound: worth another attempt.
type stallError struct {
	d   time.Duration
	err error
}

func (e *stallError) Error() string {
	return fmt.Sprintf("no progress sending the data for %s (storage-timeout): %v", e.d, e.err)
}
func (e *stallError) Unwrap() error   { return e.err }
func (e *stallError) Retryable() bool { return true }

// sendGuarded runs send with data as the request body, under a context cancelled
// when the body goes s.cfg.StallTimeout without being read before its end (after it,
// RequestTimeout bounds the wait for the answer).
func (s *Store) sendGuarded(ctx context.Context, data []byte, send func(ctx context.Context, body io.ReadSeeker) error) error {
	d := s.cfg.StallTimeout
	if d <= 0 {
		return send(ctx, bytes.NewReader(data))
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := time.AfterFunc(d, func() { cancel(errStalled) })
	defer t.Stop()
	err := send(actx, &stallReader{r: bytes.NewReader(data), t: t, d: d})
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errStalled) {
		return &stallError{d: d, err: err}
	}
	return err
}

// stallReader restarts its timer at each Read and Seek, and stops it at the end.
type stallReader struct {
	r *bytes.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil || s.r.Len() == 0 {
		s.t.Stop()
	} else {
		s.t.Reset(s.d)
	}
	return n, err
}

func (s *stallReader) Seek(off int64, whence int) (int64, error) {
	s.t.Reset(s.d)
	return s.r.Seek(off, whence)
}
