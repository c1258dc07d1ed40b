// Package open turns a repository URL into a ready Store: the backend for its scheme,
// wrapped with deadlines and retries. It is the one place where wrappers are composed.
package open

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/gcs"
	"github.com/pgb-project/pgb/internal/storage/idle"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3"
)

// Options tune every store.
type Options struct {
	Timeout     time.Duration // per attempt, and the longest a Get body may go without data
	MaxAttempts int
	// Create allows creating a missing filesystem repository directory. Readers leave
	// it false, so that a mistyped --repo is an error and not an empty repository.
	Create bool
	S3     config.S3
	GCS    config.GCS
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
	case "s3":
		c := opts.S3
		mode := s3.ConditionalEnforced
		switch c.Conditional {
		case "head-check":
			mode = s3.ConditionalHeadCheck
		case "unsupported":
			mode = s3.ConditionalUnsupported
		}
		checksum := s3.ChecksumWhenSupported
		if c.Checksum == "when-required" {
			checksum = s3.ChecksumWhenRequired
		}
		st, err = s3.New(ctx, s3.Config{
			Conditional: mode, Checksum: checksum,
			Bucket: loc.Bucket, Prefix: loc.Prefix, Region: c.Region, Endpoint: c.Endpoint,
			ForcePathStyle: c.ForcePathStyle, AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
			SessionToken: c.SessionToken, Profile: c.Profile, SSE: c.SSE, SSEKMSKeyID: c.SSEKMSKeyID,
			StorageClass: c.StorageClass, PartSize: c.PartSize, Concurrency: c.Concurrency,
			MaxAttempts: c.MaxAttempts, RequestTimeout: c.RequestTimeout, RateLimit: c.RateLimit,
			MaxParts: c.MaxParts,
		})
	case "gs":
		c := opts.GCS
		st, err = gcs.New(ctx, gcs.Config{
			Bucket: loc.Bucket, Prefix: loc.Prefix, CredentialsFile: c.CredentialsFile, Endpoint: c.Endpoint,
			ChunkSize: int(c.ChunkSize), Concurrency: c.Concurrency, MaxAttempts: c.MaxAttempts, RequestTimeout: c.RequestTimeout,
			StorageClass: c.StorageClass, KMSKeyName: c.KMSKeyName,
		})
	default:
		return nil, fmt.Errorf("repository %s: unknown scheme %q", loc, loc.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", loc, err)
	}
	// A body that delivers nothing for a whole attempt's deadline is cut off and, by
	// the retry layer, resumed where it stopped.
	st = idle.New(st, opts.Timeout)
	return retry.New(st, retry.Config{Timeout: opts.Timeout, MaxAttempts: opts.MaxAttempts}), nil
}

// Unwrap returns the backend under the wrappers Open added.
func Unwrap(st storage.Store) storage.Store {
	for {
		u, ok := st.(interface{ Unwrap() storage.Store })
		if !ok {
			return st
		}
		st = u.Unwrap()
	}
}
