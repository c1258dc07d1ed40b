package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	gs "cloud.google.com/go/storage"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// copyChunk is the buffer Put reads r with; ctx is checked between reads.
const copyChunk = 256 << 10

// Put uploads r's bytes to key's object; the object appears, complete, only when the
// upload is finalized, which happens after r's io.EOF. With opts.IfAbsent the upload is
// conditional on no object existing, which GCS checks atomically as it finalizes the
// upload (and may check earlier), and fails with storage.ErrExist otherwise.
//
// If r fails or ctx is cancelled first, the upload is abandoned: its context is
// cancelled before the client is told the data has ended, so the finalizing request is
// never sent. The unfinished upload session expires on the server by itself.
//
// Memory: one chunk of Config.ChunkSize, or less when opts.Size announces a smaller
// body (which then goes in one request).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return s.translateError("put", key, err)
	}
	pol := s.cfg.Retry
	tries := &uploadTries{max: pol.MaxAttempts}
	obj := s.client.Bucket(s.cfg.Bucket).Retryer(gs.WithMaxAttempts(pol.MaxAttempts), gs.WithPolicy(gs.RetryAlways),
		gs.WithBackoff(backoff(pol)), gs.WithErrorFunc(tries.retry)).Object(name)
	if opts.IfAbsent {
		obj = obj.If(gs.Conditions{DoesNotExist: true})
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(wctx)
	w.ChunkSize = s.chunkSize(opts.Size)
	w.ContentType = "application/octet-stream" // and no sniffing of the first bytes
	w.StorageClass = s.cfg.StorageClass
	w.KMSKeyName = s.cfg.KMSKeyName
	w.ProgressFunc = tries.progress
	w.ChunkRetryDeadline = chunkRetryDeadline(pol, s.cfg.RequestTimeout)
	w.ChunkTransferTimeout = s.cfg.StallTimeout

	if err := storage.CopyContext(ctx, w, r, make([]byte, copyChunk)); err != nil {
		cancel()
		_ = w.Close() // waits for the upload to end; it fails, with the context's error
		return s.putError(ctx, key, err, tries)
	}
	if err := ctx.Err(); err != nil {
		cancel()
		_ = w.Close()
		return s.translateError("put", key, err)
	}
	if err := w.Close(); err != nil {
		return s.putError(ctx, key, err, tries)
	}
	return nil
}

// putError translates a failed upload; ctx's error comes first, as a cancelled upload
// may fail with a broken pipe or a failed request. A failure that was worth retrying
// has been retried by the client as Config.Retry allows: it is marked
// retry.Exhausted.
func (s *Store) putError(ctx context.Context, key string, err error, tries *uploadTries) error {
	var se *storage.SourceError
	if ctx.Err() == nil && errors.As(err, &se) {
		return fmt.Errorf("gcs: put %q: %w", key, se)
	}
	err = s.translateError("put", key, ctxFirst(ctx, err))
	if ctx.Err() != nil || !retry.Retryable(err) {
		return err
	}
	if n := tries.failed.Load(); n > 1 {
		err = fmt.Errorf("%w (giving up after %d attempts in a row)", err, n)
	}
	return retry.Exhausted(err)
}

// chunkRetryDeadline lifts the client's per-chunk retry deadline (32s by default)
// above what the policy's attempts can take, so that the attempts, and the caller's
// deadline, bound a chunk's retries: each attempt waits at most requestTimeout (a
// minute when unbounded) for an answer, and at most MaxDelay before the next.
func chunkRetryDeadline(p retry.Policy, requestTimeout time.Duration) time.Duration {
	if requestTimeout <= 0 {
		requestTimeout = time.Minute
	}
	return time.Duration(p.MaxAttempts) * (requestTimeout + p.MaxDelay)
}

// chunkSize is the upload chunk size for a body of size bytes (-1: unknown). A body
// that fits in a chunk gets a buffer one byte larger than itself, so that the client
// sees its end within the first chunk and sends it in one request.
func (s *Store) chunkSize(size int64) int {
	if size >= 0 && size < int64(s.cfg.ChunkSize) {
		return int(size) + 1
	}
	return s.cfg.ChunkSize
}

// uploadTries bounds an upload's retries. The client bounds upload retries by time
// only (ChunkRetryDeadline per chunk) or not at all (the request that starts an
// upload, and a body sent in one request), whatever its MaxAttempts: this allows max
// consecutive failed attempts, counting afresh after each chunk that goes through.
type uploadTries struct {
	max    int
	failed atomic.Int64
}

// retry decides on a failed attempt.
func (u *uploadTries) retry(err error) bool {
	return gs.ShouldRetry(err) && u.failed.Add(1) < int64(u.max)
}

// progress is called after each chunk that went through.
func (u *uploadTries) progress(int64) { u.failed.Store(0) }
