// Package retry wraps a storage.Store with per-attempt deadlines and bounded retries
// with exponential backoff and full jitter. Whether an error is worth another attempt is
// decided in one place, Retryable.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

// Defaults for zero Config fields.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 200 * time.Millisecond
	DefaultMaxDelay    = 10 * time.Second
)

// Config tunes the retries. The zero value is usable. MaxAttempts, BaseDelay,
// MaxDelay, Sleep and Jitter are the store's Policy (see Config.Policy).
type Config struct {
	// MaxAttempts bounds the attempts per call, the first included; below 1 means
	// DefaultMaxAttempts, and 1 disables retrying. A Get shares one budget between
	// opening the object and resuming its body (see store.Get).
	MaxAttempts int
	// Timeout bounds each attempt, separately from the caller's context; zero means no
	// per-attempt deadline. It covers a whole Stat or Delete attempt; for Get, only
	// opening the reader (reading the body is bounded by the caller's context). For
	// Put and List it bounds inactivity, so that large uploads and long listings that
	// make progress do not time out: for Put, the time the store goes without reading
	// from r (time spent inside r's Read, waiting for the producer, is not counted);
	// for List, the wait for each next entry (time spent in the callback is not counted).
	Timeout time.Duration
	// BaseDelay is the backoff cap before the second attempt; it doubles for each later
	// attempt, up to MaxDelay. The wait is drawn at random between zero and the cap
	// ("full jitter"). Zero means DefaultBaseDelay and DefaultMaxDelay.
	BaseDelay, MaxDelay time.Duration
	// Sleep waits for d, or until ctx is done and then returns ctx's error. Nil means a
	// real timer; tests substitute one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a random duration in [0, d]. Nil means uniform, from math/rand/v2.
	Jitter func(d time.Duration) time.Duration
	// Clock makes the timers of the attempts' deadlines (Timeout). Nil means the real
	// clock; tests substitute one whose timers fire when the test says.
	Clock Clock
	// PutRetriedBelow says that the inner store retries its own uploads under the same
	// policy, each request or part from memory, and bounds their stalls itself (S3,
	// GCS): Put then goes straight through, with neither attempts nor an inactivity
	// deadline of this layer, so that attempts do not multiply and an upload whose
	// parts are in flight (not reading from r) is not taken for a stalled one.
	PutRetriedBelow bool
	// OnRetry, if set, is called after a failed attempt that will be retried, with the
	// operation ("put", "get", "stat", "list", "delete"), the key (List: the prefix),
	// the number of the attempt that failed, its error and the wait before the next.
	// It may be called concurrently by concurrent calls.
	OnRetry func(op, key string, attempt int, err error, wait time.Duration)
}

// Clock makes timers; see Config.Clock.
type Clock interface {
	// AfterFunc calls f in its own goroutine once d has passed, unless the timer is
	// stopped first, as time.AfterFunc does.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer from a Clock, with the methods of *time.Timer.
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
	// Reset makes the timer fire d from now; it reports whether it was active.
	Reset(d time.Duration) bool
}

// realClock is the clock of package time.
type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Policy returns the retry policy c describes.
func (c Config) Policy() Policy {
	return Policy{MaxAttempts: c.MaxAttempts, BaseDelay: c.BaseDelay, MaxDelay: c.MaxDelay, Sleep: c.Sleep, Jitter: c.Jitter}
}

// WithPolicy returns c with p's fields.
func (c Config) WithPolicy(p Policy) Config {
	c.MaxAttempts, c.BaseDelay, c.MaxDelay, c.Sleep, c.Jitter = p.MaxAttempts, p.BaseDelay, p.MaxDelay, p.Sleep, p.Jitter
	return c
}

// New returns a store that retries inner's failing calls as cfg says.
//
// Put is retried only when its reader is also an io.Seeker, which is rewound to where
// it stood at the call before each retry; any other reader gets exactly one attempt.
// Get retries opening; an error while reading the body is returned to the caller. List
// resumes after the last key it delivered, so fn never sees a key twice, and a List
// attempt that delivered new entries does not count against MaxAttempts.
//
// An error the inner store marked Exhausted (a backend that retried the call's
// requests itself, under the same Policy) is not retried again.
//
// Errors after retries say how many attempts were made and wrap the last attempt's
// error, so errors.Is works on them as on the inner store's errors. Once the attempts
// are used up the error is marked Exhausted.
func New(inner storage.Store, cfg Config) storage.Store {
	cfg = cfg.WithPolicy(cfg.Policy().WithDefaults())
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	return &store{inner: inner, cfg: cfg, pol: cfg.Policy()}
}

// Retryable reports whether another attempt might succeed where err failed:
//   - nil, and errors wrapping storage.ErrNotExist, ErrExist, ErrInvalidKey,
//     ErrInvalidRange or ErrUnsupported, are final: they are answers, not failures;
//   - an error with a Retryable() bool method (storage.Permanent gives false, the
//     timeout of a single attempt gives true) is taken at its word;
//   - context.Canceled is final;
//   - the network errnos ECONNRESET, ECONNREFUSED, ECONNABORTED, EPIPE, ETIMEDOUT,
//     EHOSTUNREACH, ENETUNREACH and ENETDOWN are retryable, although syscall.Errno
//     calls most of them not Temporary;
//   - an error with a Temporary() bool method is taken at its word (syscall.Errno:
//     EINTR, EAGAIN, EMFILE are temporary; EACCES, ENOSPC, EROFS are not);
//     context.DeadlineExceeded and network timeouts say they are temporary;
//   - anything else is retryable, as network failures mostly are. Backends mark what
//     is known to be permanent (permission denied, bad credentials) with
//     storage.Permanent.
//
// The outermost marker in err's chain wins. An error cannot tell whose deadline
// expired; the retrying store checks the caller's context before every retry, so the
// caller's cancellation or deadline always ends the retries, while a deadline inside
// the inner store (an HTTP client timeout) or of the attempt is retried.
func Retryable(err error) bool {
	if err == nil || isAnswer(err) {
		return false
	}
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && isNetworkErrno(errno) {
		return true
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return true
}

// isNetworkErrno reports transient network failures; see Retryable.
func isNetworkErrno(e syscall.Errno) bool {
	switch e {
	case syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN:
		return true
	}
	return false
}

// isAnswer reports whether err carries one of storage's sentinel answers.
func isAnswer(err error) bool {
	for _, s := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrInvalidKey, storage.ErrInvalidRange, storage.ErrUnsupported} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// errAttemptTimeout is the cause of an attempt context that hit Config.Timeout.
var errAttemptTimeout = errors.New("attempt deadline exceeded")

// timeoutError is an attempt's error when the attempt's own deadline ended it. It
// matches context.DeadlineExceeded, whatever the inner store saw (a deadline, or a
// cancellation for the paused deadlines of Get, Put and List).
type timeoutError struct {
	d   time.Duration
	err error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %v: %v", e.d, e.err)
}
func (e *timeoutError) Unwrap() error   { return e.err }
func (e *timeoutError) Retryable() bool { return true }
func (e *timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// abortError makes run return err as it is, at once: fn's error in List.
type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }

type store struct {
	inner storage.Store
	cfg   Config
	pol   Policy // cfg's, with its defaults
}

// call describes one retried operation.
type call struct {
	op, key string
	max     int
	// try makes one attempt under the caller's ctx; it sets up its own deadline.
	try func(ctx context.Context) error
	// rewind, if set, prepares for a retry (Put: seek the reader back).
	rewind func() error
	// progressed, if set, reports whether the last attempt made progress, which
	// restarts the attempt budget (List).
	progressed func() bool
	// note is added to the error when a retryable failure cannot be retried.
	note string
	// failed, if set, counts the failed attempts that counted against max.
	failed *int
}

// run makes attempts until one succeeds, an error is final, the attempts are used up
// or ctx is done.
func (s *store) run(ctx context.Context, c call) error {
	used := 0 // attempts counted against c.max
	for total := 1; ; total++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s %q: %w", c.op, c.key, err)
		}
		err := c.try(ctx)
		if err == nil {
			return nil
		}
		var abort *abortError
		if errors.As(err, &abort) {
			return abort.err
		}
		if c.progressed == nil || !c.progressed() {
			used++
			if c.failed != nil {
				*c.failed++
			}
		}
		switch {
		case ctx.Err() != nil, !Retryable(err):
			if total == 1 {
				return err
			}
			return fmt.Errorf("%s %q: failed after %d attempts: %w", c.op, c.key, total, err)
		case used >= c.max:
			return Exhausted(fmt.Errorf("%s %q: giving up after %d attempt%s%s: %w", c.op, c.key, total, plural(total), c.note, err))
		}
		if c.rewind != nil {
			if rerr := c.rewind(); rerr != nil {
				return fmt.Errorf("%s %q: cannot rewind the data to retry (%s) after %d attempt%s: %w", c.op, c.key, rerr.Error(), total, plural(total), err)
			}
		}
		wait := s.pol.Backoff(max(used, 1))
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(c.op, c.key, total, err, wait)
		}
		if serr := s.pol.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s %q: %w while waiting to retry, after %d attempt%s (last error: %s)", c.op, c.key, serr, total, plural(total), err.Error()) // only serr is the cause
		}
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// timed runs f under a context that ends after Config.Timeout, marking a failure
// caused by that deadline as retryable.
func (s *store) timed(ctx context.Context, f func(ctx context.Context) error) error {
	if s.cfg.Timeout <= 0 {
		return f(ctx)
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := s.cfg.Clock.AfterFunc(s.cfg.Timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()
	return s.markTimeout(ctx, actx, f(actx))
}

// markTimeout wraps err in a timeoutError when the attempt context actx ended by its
// own deadline while the caller's ctx is still live, unless err is an answer or marked
// permanent: those stand whatever the deadline.
func (s *store) markTimeout(ctx, actx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || !errors.Is(context.Cause(actx), errAttemptTimeout) {
		return err
	}
	if isAnswer(err) || storage.IsPermanent(err) {
		return err
	}
	return &timeoutError{d: s.cfg.Timeout, err: err}
}

// Put stores r's content, retrying as New describes.
//
// A retried Put with IfAbsent is ambiguous: when an attempt fails after the store
// committed the object (a lost acknowledgement or a timeout at the last moment), the
// retry finds the object and fails with storage.ErrExist although this call wrote it.
// Callers that use IfAbsent as a lock or a once-only write must treat ErrExist by
// reading the object and comparing it with what they meant to write.
func (s *store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if s.cfg.PutRetriedBelow {
		return s.inner.Put(ctx, key, r, opts)
	}
	c := call{op: "put", key: key, max: s.cfg.MaxAttempts}
	sk, ok := r.(io.Seeker)
	var start int64
	if ok {
		var err error
		if start, err = sk.Seek(0, io.SeekCurrent); err != nil {
			ok = false // a pipe or similar: seeking is not possible after all
		}
	}
	if ok {
		c.rewind = func() error {
			_, err := sk.Seek(start, io.SeekStart)
			return err
		}
	} else {
		c.max = 1
		c.note = " (not retried: the data cannot be rewound)"
	}
	c.try = func(ctx context.Context) error { return s.putAttempt(ctx, key, r, opts) }
	return s.run(ctx, c)
}

// putAttempt puts under a deadline that is paused while r's Read runs and restarts
// after each.
func (s *store) putAttempt(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if s.cfg.Timeout <= 0 {
		return s.inner.Put(ctx, key, r, opts)
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := s.cfg.Clock.AfterFunc(s.cfg.Timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()
	tr := &timedReader{r: r, timer: timer, d: s.cfg.Timeout}
	var body io.Reader = tr
	if sk, ok := r.(io.Seeker); ok {
		body = &timedReadSeeker{timedReader: tr, sk: sk} // the inner store may use Seek
	}
	return s.markTimeout(ctx, actx, s.inner.Put(actx, key, body, opts))
}

// timedReader stops timer while reading from r and restarts it afterwards.
type timedReader struct {
	r     io.Reader
	timer Timer
	d     time.Duration
}

func (t *timedReader) Read(p []byte) (int, error) {
	t.timer.Stop()
	defer t.timer.Reset(t.d)
	return t.r.Read(p)
}

type timedReadSeeker struct {
	*timedReader
	sk io.Seeker
}

func (t *timedReadSeeker) Seek(off int64, whence int) (int64, error) { return t.sk.Seek(off, whence) }

// Get opens the object, retrying the opening as New describes. The reader must be
// closed, which also releases the attempt's context.
//
// A body that breaks off with a retryable error (a reset connection, a truncated
// response) is resumed: the object is opened again at the first byte not yet read.
// Opening and resuming share one budget: a Get makes at most MaxAttempts attempts in
// all, counting each failed opening and each body that broke off. This relies on
// objects never changing under a key once written, which holds for everything pgb
// stores.
func (s *store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	r := &resumer{s: s, ctx: ctx, key: key, off: off, length: length}
	rc, err := s.open(ctx, key, off, length, s.cfg.MaxAttempts, &r.failed)
	if err != nil {
		return nil, err
	}
	r.rc = rc
	return r, nil
}

// open opens the object, with up to budget attempts, counting failed ones in failed.
func (s *store) open(ctx context.Context, key string, off, length int64, budget int, failed *int) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.run(ctx, call{op: "get", key: key, max: budget, failed: failed, try: func(ctx context.Context) error {
		var err error
		rc, err = s.getAttempt(ctx, key, off, length)
		return err
	}})
	return rc, err
}

// resumer reads a Get body, reopening the object where a broken body stopped.
type resumer struct {
	s           *store
	ctx         context.Context
	key         string
	off, length int64 // the range asked for; length < 0: to the end
	read        int64
	failed      int   // failed attempts so far: openings and broken bodies
	readAtFail  int64 // read when the last attempt failed
	rc          io.ReadCloser
}

// resumeProgress is how much a body must deliver between two breaks for the second to
// start the attempt budget afresh: a long download over a flaky link may break many
// times over hours, each time after real progress, while a store that breaks every
// body at once (or after a few bytes) still runs out of attempts.
const resumeProgress = 1 << 20

func (r *resumer) Read(p []byte) (int, error) {
	for {
		n, err := r.rc.Read(p)
		r.read += int64(n)
		if err == nil || err == io.EOF || n > 0 {
			if err != nil && err != io.EOF && n > 0 {
				err = nil // report the bytes now; the error comes back on the next Read
			}
			return n, err
		}
		if !Retryable(err) || r.ctx.Err() != nil {
			return 0, err
		}
		if r.read-r.readAtFail >= resumeProgress {
			r.failed = 0
		}
		r.readAtFail = r.read
		r.failed++
		if r.failed >= r.s.cfg.MaxAttempts {
			return 0, Exhausted(err)
		}
		_ = r.rc.Close() // abandoned for a resumed read: its error is the one to report
		if werr := r.s.pol.Sleep(r.ctx, r.s.pol.Backoff(r.failed)); werr != nil {
			return 0, err
		}
		length := r.length
		if length >= 0 {
			length -= r.read
		}
		rc, oerr := r.s.open(r.ctx, r.key, r.off+r.read, length, r.s.cfg.MaxAttempts-r.failed, &r.failed)
		if oerr != nil {
			r.rc = io.NopCloser(errReader{oerr})
			return 0, fmt.Errorf("resume reading %s after %w: %w", r.key, err, oerr)
		}
		r.rc = rc
	}
}

func (r *resumer) Close() error { return r.rc.Close() }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// getAttempt opens the reader under a context whose deadline is disarmed once the
// reader is returned: the reader may need the context for as long as it is read.
func (s *store) getAttempt(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if s.cfg.Timeout <= 0 {
		return s.inner.Get(ctx, key, off, length)
	}
	actx, cancel := context.WithCancelCause(ctx)
	timer := s.cfg.Clock.AfterFunc(s.cfg.Timeout, func() { cancel(errAttemptTimeout) })
	rc, err := s.inner.Get(actx, key, off, length)
	if !timer.Stop() && err == nil {
		// The deadline passed just as the reader came back: its context is done.
		_ = rc.Close() // never read: the timeout is the result
		cancel(errAttemptTimeout)
		return nil, &timeoutError{d: s.cfg.Timeout, err: errors.New("reader opened too late")}
	}
	if err != nil {
		err = s.markTimeout(ctx, actx, err)
		cancel(nil)
		return nil, err
	}
	return &closer{ReadCloser: rc, cancel: cancel}, nil
}

// closer releases the attempt's context when the reader is closed.
type closer struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *closer) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

// Stat describes the object, retrying as New describes.
func (s *store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	var info storage.ObjectInfo
	err := s.run(ctx, call{op: "stat", key: key, max: s.cfg.MaxAttempts, try: func(ctx context.Context) error {
		return s.timed(ctx, func(ctx context.Context) error {
			var err error
			info, err = s.inner.Stat(ctx, key)
			return err
		})
	}})
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return info, nil
}

// Delete removes the object, retrying as New describes. Like IfAbsent, a retried
// Delete is ambiguous: storage.ErrNotExist after a failed attempt may mean that the
// failed attempt did delete the object.
func (s *store) Delete(ctx context.Context, key string) error {
	return s.run(ctx, call{op: "delete", key: key, max: s.cfg.MaxAttempts, try: func(ctx context.Context) error {
		return s.timed(ctx, func(ctx context.Context) error { return s.inner.Delete(ctx, key) })
	}})
}

// MaxBatch is the inner store's (see storage.BatchDeleter): 0 when it has no batch
// delete.
func (s *store) MaxBatch() int { return storage.MaxBatch(s.inner) }

// DeleteBatch deletes keys with the inner store's DeleteBatch, retrying as New
// describes; after a partial failure (a *storage.BatchError) the next attempt sends
// only the keys that failed. A store below without batch delete gets one retried
// Delete per key.
func (s *store) DeleteBatch(ctx context.Context, keys []string) error {
	b, ok := s.inner.(storage.BatchDeleter)
	if !ok || b.MaxBatch() == 0 {
		return storage.DeleteAll(ctx, s, keys) // one by one: DeleteAll finds no batch below
	}
	if len(keys) == 0 {
		return nil
	}
	pending := keys
	name := keys[0]
	if len(keys) > 1 {
		name = fmt.Sprintf("%s and %d more", keys[0], len(keys)-1)
	}
	return s.run(ctx, call{op: "delete", key: name, max: s.cfg.MaxAttempts, try: func(ctx context.Context) error {
		err := s.timed(ctx, func(ctx context.Context) error { return b.DeleteBatch(ctx, pending) })
		var be *storage.BatchError
		if errors.As(err, &be) {
			var left []string
			for _, k := range pending {
				if _, failed := be.Failed[k]; failed {
					left = append(left, k)
				}
			}
			if len(left) > 0 {
				pending = left
			}
		}
		return err
	}})
}

// List lists the objects under prefix, retrying as New describes. A retry resumes
// after the last key delivered to fn (the inner store lists in lexical order), so fn
// sees each key once. fn's error is returned as it is, without retrying.
func (s *store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	var (
		last     string
		started  bool
		progress bool
	)
	deliver := func(oi storage.ObjectInfo) error {
		if started && oi.Key <= last {
			return nil // delivered by an earlier attempt
		}
		if err := fn(oi); err != nil {
			return &abortError{err}
		}
		started, last, progress = true, oi.Key, true
		return nil
	}
	return s.run(ctx, call{
		op: "list", key: prefix, max: s.cfg.MaxAttempts,
		try: func(ctx context.Context) error {
			progress = false
			return s.listAttempt(ctx, prefix, deliver)
		},
		progressed: func() bool { return progress },
	})
}

// listAttempt lists under a deadline that restarts with each entry and is paused
// while fn runs.
func (s *store) listAttempt(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if s.cfg.Timeout <= 0 {
		return s.inner.List(ctx, prefix, fn)
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := s.cfg.Clock.AfterFunc(s.cfg.Timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()
	err := s.inner.List(actx, prefix, func(oi storage.ObjectInfo) error {
		if !timer.Stop() {
			cancel(errAttemptTimeout) // the deadline passed; make sure the cause is set
			return errAttemptTimeout
		}
		if err := fn(oi); err != nil {
			return err
		}
		timer.Reset(s.cfg.Timeout)
		return nil
	})
	var abort *abortError
	if errors.As(err, &abort) {
		return abort
	}
	return s.markTimeout(ctx, actx, err)
}

// String names the inner store.
func (s *store) String() string { return s.inner.String() }

// Close closes the inner store.
func (s *store) Close() error { return s.inner.Close() }

// Unwrap returns the wrapped store.
func (s *store) Unwrap() storage.Store { return s.inner }
