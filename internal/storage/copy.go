package storage

import (
	"context"
	"io"
)

// SourceError marks a failure of the reader handed to Put, as opposed to a failure of
// the store, so that backends report it as what it is and never retry it.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return "read source: " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// CopyContext copies r to w through buf, checking ctx between reads: a Put whose
// caller gave up stops at the next chunk. A failure of r comes back as *SourceError;
// ctx's error and w's errors come back as they are.
func CopyContext(ctx context.Context, w io.Writer, r io.Reader, buf []byte) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return &SourceError{Err: rerr}
		}
	}
}

// Retryable is false: retrying cannot mend the caller's reader.
func (e *SourceError) Retryable() bool { return false }
