// Package open turns a repository URL into a ready Store: the backend for its scheme,
// wrapped with deadlines and retries. It is the one place where wrappers are composed.
//
// One retry policy (Options.Retry) governs every attempt, in one layer per request:
// the SDKs make one attempt per HTTP request; the storage/retry wrapper retries whole
// calls (Get, Stat, List, Delete, and a Put from a seekable reader of the filesystem
// store); S3 and GCS retry the upload requests whose data only they hold (an S3
// PutObject or part from memory, a GCS chunk) under the same policy, and mark what
// they give up on so that the wrapper does not start it over. A request is thus tried
// at most Retry.MaxAttempts times, within the caller's deadline.
package open

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/gcs"
	"github.com/pgb-project/pgb/internal/storage/idle"
	"github.com/pgb-project/pgb/internal/storage/limit"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3"
)

// Options tune every store.
type Options struct {
	Timeout time.Duration // per attempt, and the longest a Get body may go without data
	// Retry is the one retry policy: attempts per request and the backoff between them.
	Retry retry.Policy
	// WrapTransport, if set, wraps the HTTP transport of an S3 or GCS store: tests
	// inject faults and count requests with it.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Create allows creating a missing filesystem repository directory. Readers leave
	// it false, so that a mistyped --repo is an error and not an empty repository.
	Create bool
	S3     config.S3
	GCS    config.GCS
}

// Open opens the repository at raw (see storage.ParseLocation).
func Open(ctx context.Context, raw string, opts Options) (storage.Store, error) {
	pol := opts.Retry.WithDefaults()
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
			MaxAttempts: 1, Retry: pol, RequestTimeout: c.RequestTimeout, RateLimit: c.RateLimit,
			WrapTransport: opts.WrapTransport,
			MaxParts:      c.MaxParts, StallTimeout: opts.Timeout,
		})
	case "gs":
		c := opts.GCS
		st, err = gcs.New(ctx, gcs.Config{
			Bucket: loc.Bucket, Prefix: loc.Prefix, CredentialsFile: c.CredentialsFile, Endpoint: c.Endpoint,
			ChunkSize: int(c.ChunkSize), Concurrency: c.Concurrency, MaxAttempts: 1, Retry: pol, RequestTimeout: c.RequestTimeout,
			StorageClass: c.StorageClass, KMSKeyName: c.KMSKeyName, WrapTransport: opts.WrapTransport,
			StallTimeout: opts.Timeout,
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
	// S3 and GCS retry their uploads themselves (PutRetriedBelow), from memory, under
	// the same policy, with opts.Timeout as the stall bound of each request.
	st = retry.New(st, retry.Config{Timeout: opts.Timeout, PutRetriedBelow: loc.Scheme == "s3" || loc.Scheme == "gs"}.WithPolicy(pol))
	if loc.Scheme == "gs" {
		// Outermost: an upload keeps its slot through its retries, and waiting for a
		// slot does not count against an attempt's deadline.
		st = limit.Puts(st, opts.GCS.Concurrency)
	}
	return st, nil
}
