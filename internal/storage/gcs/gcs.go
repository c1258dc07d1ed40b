// Package gcs is a storage.Store on Google Cloud Storage, through the JSON API of
// cloud.google.com/go/storage. Keys map to objects named Prefix + "/" + key in one
// bucket.
//
// How the storage contract is kept:
//   - Put streams r into a resumable upload in chunks of Config.ChunkSize, so memory
//     is bounded by one chunk whatever the object's size; a body whose announced size
//     fits in one chunk goes in a single request with a buffer of just that size. GCS
//     makes the object visible only when the upload is finalized, so a Put is atomic.
//     When r fails or ctx is cancelled, the upload is abandoned before it is
//     finalized: no object appears and a previous one is untouched.
//   - IfAbsent is the DoesNotExist precondition (ifGenerationMatch=0), enforced by
//     GCS itself; its failure (HTTP 412) is storage.ErrExist.
//   - Get reads with the JSON API (so that emulators serve it too) and counts the bytes
//     against the length the server announced: a body that ends early is
//     io.ErrUnexpectedEOF, never a clean io.EOF.
//   - List pages through the objects under the store's prefix in the lexical order
//     GCS returns them in, checking ctx between entries.
//
// Retries: uploads are retried by the client, chunk by chunk, as Config.Retry says
// (the data of a chunk is only in the client's buffer, so no layer above could resend
// it): up to Retry.MaxAttempts failed attempts in a row, counting afresh after each
// chunk that goes through, for the request that starts an upload, each chunk and a
// body sent in one request alike. A Put that fails after them is marked
// retry.Exhausted, so that the storage/retry wrapper above does not start it over.
// Other requests get up to Config.MaxAttempts attempts in the client, for idempotent
// operations only (reads, listings; Delete is not retried by the client: a retry after
// a lost reply would report the object as missing). storage/open sets MaxAttempts to 1
// and leaves those retries to the wrapper, which applies the same policy.
//
// Errors are translated once, in translateError: storage's sentinels for answers,
// storage.Permanent for a missing bucket, bad credentials and refused permissions. The
// first time a store finds no object, it checks that the bucket exists (emulators do
// not tell a missing bucket from a missing object), so that a mistyped bucket does not
// pass for an empty repository.
package gcs

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	gs "cloud.google.com/go/storage"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// Defaults for zero Config fields.
const (
	DefaultChunkSize   = 16 << 20
	DefaultMaxAttempts = 3
)

// Config describes a GCS store. Only Bucket is required.
type Config struct {
	// Bucket is the bucket's name.
	Bucket string
	// Prefix is prepended, with a "/", to every key; empty means the bucket's root.
	// It has no leading or trailing "/" and no empty, "." or ".." elements.
	Prefix string
	// CredentialsFile is a service-account JSON key file (or another Google
	// credentials file of the kinds GOOGLE_APPLICATION_CREDENTIALS may name, such as
	// workload identity federation). Empty means Application Default Credentials
	// (which honour GOOGLE_APPLICATION_CREDENTIALS), or no authentication at all when
	// an endpoint is set.
	CredentialsFile string
	// Endpoint is a custom endpoint, such as an emulator: "host:port" (plain HTTP),
	// "http(s)://host[:port]", or a full JSON API base URL ending in "/storage/v1/".
	// With an Endpoint, or STORAGE_EMULATOR_HOST in the environment (which the client
	// reads itself), requests carry no credentials unless CredentialsFile is set.
	Endpoint string
	// ChunkSize is the resumable upload chunk size, rounded up to a multiple of
	// 256 KiB by the client; it bounds the memory of each Put. Zero means
	// DefaultChunkSize.
	ChunkSize int
	// Concurrency is how many uploads may run at once. It sizes the connection pool;
	// the store itself limits nothing: storage/open puts the limit above the retry
	// layer (package limit).
	Concurrency int
	// MaxAttempts bounds the client's attempts per request other than uploads, the
	// first included; zero means DefaultMaxAttempts and 1 disables the client's
	// retries.
	MaxAttempts int
	// Retry is how the client retries uploads (see the package comment); the zero
	// value is the retry package's defaults.
	Retry retry.Policy
	// StallTimeout bounds one chunk request of a resumable upload, sending included
	// (the client's ChunkTransferTimeout): a stalled chunk is retried under Retry from
	// its buffer. So a chunk of ChunkSize must go up within it (16 MiB in 60 s: about
	// 280 KB/s). Zero means no bound.
	StallTimeout time.Duration
	// RequestTimeout bounds each attempt's wait for the server's response headers
	// once the request is sent; zero means no bound. It applies to the store's own
	// HTTP transport, not to an HTTPClient given below.
	RequestTimeout time.Duration
	// StorageClass of new objects (e.g. "NEARLINE"); empty means the bucket's default.
	StorageClass string
	// KMSKeyName is the Cloud KMS key that encrypts new objects (CMEK); empty means
	// the bucket's default encryption.
	KMSKeyName string
	// HTTPClient, if set, carries the requests in place of the store's own transport,
	// e.g. a fault-injecting one in tests. Credentials are added on top of it unless
	// requests go unauthenticated (see Endpoint).
	HTTPClient *http.Client
	// WrapTransport, if set, wraps the transport that carries the requests (the
	// store's own, or HTTPClient's), below the credentials: tests inject faults with it.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// String describes the configuration without secrets.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString(location(c.Bucket, c.Prefix))
	if ep, src := c.endpoint(); ep != "" {
		fmt.Fprintf(&b, " endpoint=%s (%s)", redactURL(ep), src)
	}
	switch {
	case c.CredentialsFile != "":
		fmt.Fprintf(&b, " credentials-file=%s", c.CredentialsFile)
	case c.noAuth():
		b.WriteString(" credentials=none")
	default:
		b.WriteString(" credentials=application-default")
	}
	fmt.Fprintf(&b, " chunk-size=%d max-attempts=%d", c.ChunkSize, c.MaxAttempts)
	if c.RequestTimeout > 0 {
		fmt.Fprintf(&b, " request-timeout=%v", c.RequestTimeout)
	}
	if c.StorageClass != "" {
		fmt.Fprintf(&b, " storage-class=%s", c.StorageClass)
	}
	if c.KMSKeyName != "" {
		fmt.Fprintf(&b, " kms-key=%s", c.KMSKeyName)
	}
	return b.String()
}

// withDefaults checks c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Bucket == "" {
		return c, fmt.Errorf("gcs: no bucket given")
	}
	if c.Prefix != "" {
		if err := storage.ValidKey(c.Prefix); err != nil {
			return c, fmt.Errorf("gcs: prefix %q: want a path with no leading or trailing \"/\" and no empty, \".\" or \"..\" elements: %w", c.Prefix, err)
		}
	}
	if c.ChunkSize < 0 || c.MaxAttempts < 0 || c.RequestTimeout < 0 || c.Concurrency < 0 {
		return c, fmt.Errorf("gcs: negative chunk size, attempts, timeout or concurrency in %s", c)
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	c.Retry = c.Retry.WithDefaults()
	return c, nil
}

// location is the gs:// URL of a bucket and prefix.
func location(bucket, prefix string) string {
	if prefix == "" {
		return "gs://" + bucket
	}
	return "gs://" + bucket + "/" + prefix
}

// Store is a storage.Store on a GCS bucket. It is safe for concurrent use.
type Store struct {
	cfg    Config
	client *gs.Client
	// idem retries every request (reads, listings); once does not retry requests that
	// are not idempotent (Delete). Each has its own retry settings: the client merges
	// later options into a handle's settings in place. Put makes a handle per upload.
	idem, once *gs.BucketHandle
	// prefix is "" or Config.Prefix + "/".
	prefix string
	// bucketSeen is set once the bucket is known to exist (see confirmNotExist).
	bucketSeen atomic.Bool
}

var _ storage.Store = (*Store)(nil)

// New returns a store for cfg's bucket and prefix, with one client of its own. It
// makes no request: a missing bucket or bad credentials show on the first call (bad
// credentials files and missing Application Default Credentials show at once).
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:    cfg,
		client: client,
		idem:   client.Bucket(cfg.Bucket).Retryer(retryOptions(cfg, gs.RetryAlways)...),
		once:   client.Bucket(cfg.Bucket).Retryer(retryOptions(cfg, gs.RetryIdempotent)...),
	}
	if cfg.Prefix != "" {
		s.prefix = cfg.Prefix + "/"
	}
	return s, nil
}

// String returns the gs:// URL of the store, with its endpoint when not Google's.
func (s *Store) String() string {
	if ep, _ := s.cfg.endpoint(); ep != "" {
		return location(s.cfg.Bucket, s.cfg.Prefix) + " at " + redactURL(ep)
	}
	return location(s.cfg.Bucket, s.cfg.Prefix)
}

// Close releases the client's connections.
func (s *Store) Close() error {
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("gcs: close: %w", err)
	}
	return nil
}

// object checks key and returns its object's name.
func (s *Store) object(key string) (string, error) {
	if err := storage.ValidKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}
