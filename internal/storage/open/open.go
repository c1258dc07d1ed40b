// Package open turns a repository URL into a ready Store: the backend for its scheme,
// wrapped with deadlines and retries. It is the one place where wrappers are composed.
package open

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// Options tune every store.
type Options struct {
	Timeout     time.Duration // per attempt
	MaxAttempts int
	// Create allows creating a missing filesystem repository directory. Readers leave
	// it false, so that a mistyped --repo is an error and not an empty repository.
	Create bool
}

// Open opens the repository at raw (see storage.ParseLocation).
func Open(ctx context.Context, raw string, opts Options) (storage.Store, error) {
	loc, err := storage.ParseLocation(raw)
	if err != nil {
		return nil, err
	}
	var st storage.Store
	switch loc.Scheme {
	case "file":
		if !opts.Create {
			if _, err := os.Stat(loc.Path); err != nil {
				return nil, fmt.Errorf("repository %s: %w (check --repo)", loc, err)
			}
		}
		st, err = fs.New(loc.Path)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", loc, err)
		}
	case "s3", "gs":
		return nil, fmt.Errorf("repository %s: %s:// repositories are not built yet; use a local path or file:///path for now: %w",
			loc, loc.Scheme, storage.ErrUnsupported)
	default:
		return nil, fmt.Errorf("repository %s: unknown scheme %q", loc, loc.Scheme)
	}
	return retry.New(st, retry.Config{Timeout: opts.Timeout, MaxAttempts: opts.MaxAttempts}), nil
}
