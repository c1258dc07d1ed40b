package s3

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// Defaults and limits for Config fields.
const (
	DefaultPartSize    = 16 << 20
	MinPartSize        = 5 << 20 // S3's minimum for every part but the last
	MaxPartSize        = 5 << 30 // S3's maximum part size
	DefaultConcurrency = 4
	// DefaultMaxParts is AWS S3's limit on the parts of one multipart upload.
	DefaultMaxParts = 10000
	// DefaultMaxAttempts is modest on purpose: pgb's own retry layer sits above.
	DefaultMaxAttempts = 3
	// DefaultRequestTimeout is what the configuration layer passes by default; a zero
	// Config.RequestTimeout means no timeout.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultRegion is used when neither Config.Region nor the SDK's configuration
	// (AWS_REGION, the shared config file) names one.
	DefaultRegion = "us-east-1"
)

// ConditionalMode says how Put with IfAbsent is carried out.
type ConditionalMode int

const (
	// ConditionalEnforced (the default) sends "If-None-Match: *" with the PutObject or
	// CompleteMultipartUpload request and trusts the server to refuse an existing key
	// atomically, as AWS S3 has done since 2024 and versitygw does.
	ConditionalEnforced ConditionalMode = iota
	// ConditionalHeadCheck is for servers that ignore If-None-Match (see
	// Store.ProbeConditionalWrites): a HeadObject check, then the write (still with
	// If-None-Match). It RACES: two writers that both check before either writes both
	// succeed, and the later one silently replaces the earlier object. Use it only
	// where a single writer per key is guaranteed some other way.
	ConditionalHeadCheck
	// ConditionalUnsupported makes Put with IfAbsent fail with storage.ErrUnsupported,
	// the honest answer of a store that cannot enforce it.
	ConditionalUnsupported
)

// String names the mode as the configuration would.
func (m ConditionalMode) String() string {
	switch m {
	case ConditionalEnforced:
		return "enforced"
	case ConditionalHeadCheck:
		return "head-check"
	case ConditionalUnsupported:
		return "unsupported"
	}
	return fmt.Sprintf("ConditionalMode(%d)", int(m))
}

// ChecksumMode says when requests carry checksums of their data.
type ChecksumMode int

const (
	// ChecksumWhenSupported (the default) is the SDK's default: every request that can
	// carry a checksum of its body (CRC32) does, and multipart uploads use them too.
	ChecksumWhenSupported ChecksumMode = iota
	// ChecksumWhenRequired sends checksums only with the requests whose API requires
	// one, for S3-compatible stores that reject the SDK's newer checksum headers
	// (x-amz-checksum-*, x-amz-sdk-checksum-algorithm, x-amz-trailer); whole-object
	// reads then do not ask for the stored checksum either. Store.ProbeChecksums tells
	// which a store needs.
	ChecksumWhenRequired
)

// String names the mode as the configuration would.
func (m ChecksumMode) String() string {
	switch m {
	case ChecksumWhenSupported:
		return "when-supported"
	case ChecksumWhenRequired:
		return "when-required"
	}
	return fmt.Sprintf("ChecksumMode(%d)", int(m))
}

// Config describes an S3 (or S3-compatible) repository. Zero fields take the defaults
// named on each; New validates the whole.
type Config struct {
	Bucket string // required
	// Prefix is the key prefix inside the bucket, without leading or trailing "/";
	// object key k is stored as Prefix + "/" + k. Empty means the bucket's root.
	Prefix string
	// Region of the bucket. Empty: AWS_DEFAULT_REGION, else the shared config
	// profile's, else DefaultRegion (see credentials.go).
	Region string
	// Endpoint of an S3-compatible store, e.g. "http://127.0.0.1:7070". Empty: the
	// SDK's endpoint settings (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's),
	// else AWS.
	Endpoint string
	// ForcePathStyle addresses buckets as http://endpoint/bucket/key, as most
	// S3-compatible stores need.
	ForcePathStyle bool
	// Static credentials. Empty AccessKeyID and SecretAccessKey mean pgb's chain, in
	// the SDK's order (see credentials.go): the named Profile, AWS_ACCESS_KEY /
	// AWS_SECRET_KEY, web identity (IRSA), the default profile, container and instance
	// roles.
	AccessKeyID, SecretAccessKey, SessionToken string
	// Profile selects a shared-config profile (like AWS_PROFILE).
	Profile string
	// SSE is the server-side encryption of new objects: "", "AES256" or "aws:kms";
	// SSEKMSKeyID names the KMS key for "aws:kms" (empty: the bucket's default key).
	SSE, SSEKMSKeyID string
	// StorageClass of new objects, e.g. "STANDARD_IA". Empty: the bucket's default.
	StorageClass string
	// PartSize is the base multipart part size: objects up to PartSize bytes go up in
	// one PutObject, larger ones in parts of at least PartSize, grown so that no upload
	// needs more than MaxParts (see partPlan). Default DefaultPartSize, at least
	// MinPartSize. A Put buffers up to Concurrency parts of the current size in memory.
	PartSize int64
	// Concurrency is the number of parts of one upload in flight. Default
	// DefaultConcurrency.
	Concurrency int
	// StallTimeout bounds how long one upload request (a PutObject or a part) may go
	// without reading its body; after the body is sent RequestTimeout bounds the wait
	// for the answer. A stalled request is cancelled and retried under Retry. Zero
	// means no bound.
	StallTimeout time.Duration
	// MaxParts is the store's limit on the parts of one multipart upload, 1 to
	// DefaultMaxParts (AWS's limit, the default). Part sizes grow so that no upload
	// needs more; see partPlan.
	MaxParts int
	// MaxAttempts bounds the SDK's own attempts per HTTP request other than those of
	// multipart uploads (it retries 5xx, throttling and connection errors). Default
	// DefaultMaxAttempts. storage/open sets 1: the retry policy (Retry, and the
	// storage/retry wrapper above) makes the attempts, so that they do not multiply.
	MaxAttempts int
	// Retry is how the store retries the requests of an upload, whose data it holds in
	// memory and no layer above can resend: the HEAD of a put-if-absent, a PutObject,
	// each part (sendPart), and the other multipart requests (by the SDK under this
	// policy, see multipartRetries). A Put that fails after its attempts is marked
	// retry.Exhausted. The zero value is the retry package's defaults.
	Retry retry.Policy
	// RequestTimeout bounds connecting and then waiting for the response headers of
	// one HTTP request attempt; streaming a body in either direction is not bounded by
	// it, so large transfers that make progress do not time out. Zero means no
	// timeout (the configuration layer passes DefaultRequestTimeout by default).
	RequestTimeout time.Duration
	// RateLimit caps HTTP requests (SDK retries included) per second; 0 means no cap.
	RateLimit int
	// Conditional says how IfAbsent is enforced; see ConditionalMode.
	Conditional ConditionalMode
	// Checksum says when requests carry checksums; see ChecksumMode.
	Checksum ChecksumMode
	// WrapTransport, if set, wraps the store's HTTP transport (which keeps the
	// connection pooling and timeouts above): tests inject faults with it.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	c.Retry = c.Retry.WithDefaults()
	if c.MaxParts == 0 {
		c.MaxParts = DefaultMaxParts
	}
	return c
}

// validate reports the first unusable setting, naming it as the user sets it.
func (c Config) validate() error {
	switch {
	case c.Bucket == "":
		return fmt.Errorf("no bucket given: set --repo s3://bucket/prefix")
	case strings.Contains(c.Bucket, "/"):
		return fmt.Errorf("bucket %q contains '/': check --repo (s3://bucket/prefix)", c.Bucket)
	case c.Prefix != "" && storage.ValidKey(c.Prefix) != nil:
		return fmt.Errorf("prefix %q is not usable (no leading or trailing '/', no empty, '.' or '..' elements): check --repo", c.Prefix)
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		return fmt.Errorf("static credentials need both an access key id and a secret access key: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --s3-access-key-id and --s3-secret-access-key), or neither")
	case c.SessionToken != "" && c.AccessKeyID == "":
		return fmt.Errorf("a session token needs static credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY too, or drop AWS_SESSION_TOKEN / --s3-session-token")
	case c.PartSize < MinPartSize || c.PartSize > MaxPartSize:
		return fmt.Errorf("part size %d is out of range: set --s3-part-size between 5MiB and 5GiB", c.PartSize)
	case c.Concurrency < 1:
		return fmt.Errorf("upload concurrency %d: set --s3-upload-concurrency to 1 or more", c.Concurrency)
	case c.MaxParts < 1 || c.MaxParts > DefaultMaxParts:
		return fmt.Errorf("max parts %d is out of range: set --s3-max-parts between 1 and %d", c.MaxParts, DefaultMaxParts)
	case c.MaxAttempts < 1:
		return fmt.Errorf("max attempts %d: set --s3-max-attempts to 1 or more", c.MaxAttempts)
	case c.RequestTimeout < 0:
		return fmt.Errorf("request timeout %v is negative: check --s3-request-timeout", c.RequestTimeout)
	case c.RateLimit < 0:
		return fmt.Errorf("rate limit %d is negative: check --s3-rate-limit", c.RateLimit)
	case c.Conditional < ConditionalEnforced || c.Conditional > ConditionalUnsupported:
		return fmt.Errorf("unknown conditional-write mode %v", c.Conditional)
	case c.Checksum < ChecksumWhenSupported || c.Checksum > ChecksumWhenRequired:
		return fmt.Errorf("unknown checksum mode %v: set --s3-checksum to when-supported or when-required", c.Checksum)
	}
	switch c.SSE {
	case "", "AES256", "aws:kms":
	default:
		return fmt.Errorf("server-side encryption %q: set --s3-sse (PGB_S3_SSE) to AES256 or aws:kms, or leave it empty", c.SSE)
	}
	if c.SSEKMSKeyID != "" && c.SSE != "aws:kms" {
		return fmt.Errorf("a KMS key id (--s3-sse-kms-key-id) needs --s3-sse aws:kms")
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("endpoint %q is not an http(s) URL: check PGB_S3_ENDPOINT / --s3-endpoint", redactURL(c.Endpoint))
		}
	}
	return nil
}

// location is the repository URL, s3://bucket[/prefix].
func (c Config) location() string {
	if c.Prefix == "" {
		return "s3://" + c.Bucket
	}
	return "s3://" + c.Bucket + "/" + c.Prefix
}

// String describes the configuration without secrets: credentials are only said to
// be static or to come from the SDK's chain.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString(c.location())
	if c.Endpoint != "" {
		fmt.Fprintf(&b, " endpoint=%s", redactURL(c.Endpoint))
	}
	if c.Region != "" {
		fmt.Fprintf(&b, " region=%s", c.Region)
	}
	if c.ForcePathStyle {
		b.WriteString(" path-style")
	}
	switch {
	case c.AccessKeyID != "":
		b.WriteString(" credentials=static")
	case c.Profile != "":
		fmt.Fprintf(&b, " credentials=profile:%s", c.Profile)
	default:
		b.WriteString(" credentials=default-chain")
	}
	if c.SSE != "" {
		fmt.Fprintf(&b, " sse=%s", c.SSE)
	}
	if c.StorageClass != "" {
		fmt.Fprintf(&b, " storage-class=%s", c.StorageClass)
	}
	return b.String()
}

// GoString is String, so that %#v does not print the secrets either.
func (c Config) GoString() string { return "s3.Config{" + c.String() + "}" }

// redactURL drops any user:password from an endpoint URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(raw, "@") {
			return "(unparsable URL)"
		}
		return raw
	}
	u.User = nil
	return u.String()
}
