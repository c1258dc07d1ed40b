package storage

import "errors"

// Permanent marks err as not worth retrying: a retry layer (see package retry) gives
// up at once on it. Use it at a backend's edge for failures that another attempt cannot
// fix, such as permission denied or bad credentials. The result wraps err, so errors.Is
// and errors.As still see through it, and its message is err's. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Retryable() bool { return false }
