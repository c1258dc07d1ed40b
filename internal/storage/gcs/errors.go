package gcs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"

	"cloud.google.com/go/auth"
	gs "cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/pgb-project/pgb/internal/storage"
)

// translateError turns an error of the client into what storage promises, once, for
// operation op ("put", "get", "stat", "list", "delete") on key (List: the prefix):
//   - a missing object (404) is storage.ErrNotExist, a failed IfAbsent precondition
//     (412) storage.ErrExist, an unsatisfiable range (416) storage.ErrInvalidRange;
//   - a missing bucket (and any 404 from Put or List, which name no object that
//     could be missing) is permanent, and says to check --repo;
//   - refused credentials or permissions (401, 403, a token that cannot be had) and
//     malformed requests (400) are permanent, and name the credential settings;
//   - a refused connection stays retryable and names the endpoint;
//   - anything else (5xx, 429, network errors) is wrapped as it is: retryable.
//
// Messages are one line, without the server's response body or any credential.
func (s *Store) translateError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("gcs: %s %q", op, key)
	var gerr *googleapi.Error
	code := 0
	if errors.As(err, &gerr) {
		code = gerr.Code
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, gs.ErrBucketNotExist),
		code == http.StatusNotFound && (op == "put" || op == "list" || bucketMissing(gerr)):
		return storage.Permanent(&edgeError{
			msg: fmt.Sprintf("%s: bucket %q does not exist: check --repo", what, s.cfg.Bucket),
			err: err,
		})
	case errors.Is(err, gs.ErrObjectNotExist), code == http.StatusNotFound:
		return fmt.Errorf("%s: %w", what, storage.ErrNotExist)
	case code == http.StatusPreconditionFailed:
		return fmt.Errorf("%s: %w", what, storage.ErrExist)
	case code == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%s: %w", what, storage.ErrInvalidRange)
	case code == http.StatusUnauthorized, code == http.StatusForbidden, tokenRefused(err):
		return storage.Permanent(&edgeError{
			msg: fmt.Sprintf("%s: access to bucket %q denied%s: check the credentials (GOOGLE_APPLICATION_CREDENTIALS or --gcs-credentials-file) and their roles on the bucket",
				what, s.cfg.Bucket, serverSays(gerr)),
			err: err,
		})
	case code == http.StatusBadRequest:
		check := "the bucket name in --repo"
		if op == "put" {
			check += ", --gcs-storage-class and --gcs-kms-key-name"
		}
		return storage.Permanent(&edgeError{
			msg: fmt.Sprintf("%s: request refused as invalid%s: check %s", what, serverSays(gerr), check),
			err: err,
		})
	case errors.Is(err, syscall.ECONNREFUSED):
		ep, _ := s.cfg.endpoint()
		if ep == "" {
			return fmt.Errorf("%s: cannot connect to storage.googleapis.com: %w", what, err)
		}
		return &edgeError{
			msg: fmt.Sprintf("%s: cannot connect to the GCS endpoint %s (set by --gcs-endpoint or %s): connection refused; is the server running?",
				what, redactURL(ep), emulatorEnv),
			err: err,
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// confirmNotExist checks, the first time a call of s finds no object, that the bucket
// exists: GCS says in a 404 whether the bucket is missing, but emulators do not, and
// a mistyped bucket must not pass for an empty repository. It returns err, or the
// permanent error of a missing bucket. The check lists at most one object under the
// store's prefix (a permission the store needs anyway); if it fails otherwise, err
// stands.
func (s *Store) confirmNotExist(ctx context.Context, op, key string, err error) error {
	if !errors.Is(err, storage.ErrNotExist) || s.bucketSeen.Load() {
		return err
	}
	it := s.idem.Objects(ctx, &gs.Query{Prefix: s.prefix, Projection: gs.ProjectionNoACL})
	it.PageInfo().MaxSize = 1
	_, lerr := it.Next()
	var gerr *googleapi.Error
	switch {
	case lerr == nil, errors.Is(lerr, iterator.Done):
		s.bucketSeen.Store(true)
	case errors.Is(lerr, gs.ErrBucketNotExist), errors.As(lerr, &gerr) && gerr.Code == http.StatusNotFound:
		return s.translateError(op, key, fmt.Errorf("%w: %w", gs.ErrBucketNotExist, lerr))
	}
	return err
}

// edgeError is a translated error with a message of its own; it wraps the client's
// error for errors.Is and errors.As.
type edgeError struct {
	msg string
	err error
}

func (e *edgeError) Error() string { return e.msg }
func (e *edgeError) Unwrap() error { return e.err }

// bucketMissing reports whether a 404 is about the bucket rather than the object.
func bucketMissing(e *googleapi.Error) bool {
	if e == nil {
		return false
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "bucket") && (strings.Contains(m, "not exist") || strings.Contains(m, "not found"))
}

// tokenRefused reports whether the token endpoint refused the credentials (as opposed
// to being unreachable).
func tokenRefused(err error) bool {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500
	}
	var ae *auth.Error
	if errors.As(err, &ae) {
		return ae.Response != nil && ae.Response.StatusCode >= 400 && ae.Response.StatusCode < 500
	}
	return false
}

// serverSays quotes the first line of the server's message, if any.
func serverSays(e *googleapi.Error) string {
	if e == nil {
		return ""
	}
	m, _, _ := strings.Cut(strings.TrimSpace(e.Message), "\n")
	if m == "" {
		return fmt.Sprintf(" (HTTP %d)", e.Code)
	}
	return fmt.Sprintf(" (HTTP %d: %s)", e.Code, m)
}
