package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is pgb's one retry policy: how many attempts a storage request gets and how
// long to wait between them. The retrying store (New) applies it to whole calls; a
// backend applies the same value to the requests whose data it holds itself and that
// no layer above can resend (an upload's chunks or parts, buffered in memory), and
// marks what it gave up on with Exhausted so that no layer above retries it again.
// Attempts therefore never multiply: the SDKs below make one attempt per request.
//
// The zero value is usable: DefaultMaxAttempts, DefaultBaseDelay, DefaultMaxDelay.
type Policy struct {
	// MaxAttempts bounds the attempts, the first included; below 1 means
	// DefaultMaxAttempts, and 1 disables retrying.
	MaxAttempts int
	// BaseDelay is the backoff cap before the second attempt; it doubles for each later
	// attempt, up to MaxDelay. The wait is drawn at random between zero and the cap
	// ("full jitter"). Zero means DefaultBaseDelay and DefaultMaxDelay.
	BaseDelay, MaxDelay time.Duration
	// Sleep waits for d, or until ctx is done and then returns ctx's error. Nil means a
	// real timer; tests substitute one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a random duration in [0, d]. Nil means uniform, from math/rand/v2.
	Jitter func(d time.Duration) time.Duration
}

// WithDefaults returns p with its zero fields set.
func (p Policy) WithDefaults() Policy {
	if p.MaxAttempts < 1 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	if p.Jitter == nil {
		p.Jitter = func(d time.Duration) time.Duration { return rand.N(d + 1) }
	}
	return p
}

// Backoff is the wait after the failure of attempt n (from 1): jittered below
// BaseDelay·2^(n-1), capped at MaxDelay. p must have its defaults.
func (p Policy) Backoff(n int) time.Duration {
	limit := p.MaxDelay
	if shift := n - 1; shift >= 0 && shift < 62 {
		if d := p.BaseDelay << shift; d > 0 && d < limit && d>>shift == p.BaseDelay {
			limit = d
		}
	}
	return p.Jitter(limit)
}

// Do calls try until it succeeds, fails with an error Retryable calls final, ctx is
// done, or MaxAttempts attempts have failed, waiting Backoff between attempts. An
// error after more than one attempt says how many were made, after try's error
// (which names the call); once the attempts are used up it is marked Exhausted.
func (p Policy) Do(ctx context.Context, try func(ctx context.Context) error) error {
	p = p.WithDefaults()
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := try(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil, !Retryable(err):
			if n == 1 {
				return err
			}
			return fmt.Errorf("%w (failed after %d attempts)", err, n)
		case n >= p.MaxAttempts:
			return Exhausted(fmt.Errorf("%w (giving up after %d attempt%s)", err, n, plural(n)))
		}
		if serr := p.Sleep(ctx, p.Backoff(n)); serr != nil {
			return fmt.Errorf("%w while waiting to retry, after %d attempt%s (last error: %s)", serr, n, plural(n), err.Error()) // only serr is the cause
		}
	}
}

// Exhausted marks err as the end of a retry policy's attempts: Retryable reports
// false for it, so that a layer above that applies the same policy does not start
// over. Its message is err's, and errors.Is and errors.As see through it.
// Exhausted(nil) is nil.
func Exhausted(err error) error {
	if err == nil {
		return nil
	}
	return &exhaustedError{err: err}
}

// IsExhausted reports whether err was marked with Exhausted.
func IsExhausted(err error) bool {
	var e *exhaustedError
	return errors.As(err, &e)
}

type exhaustedError struct{ err error }

func (e *exhaustedError) Error() string   { return e.err.Error() }
func (e *exhaustedError) Unwrap() error   { return e.err }
func (e *exhaustedError) Retryable() bool { return false }
