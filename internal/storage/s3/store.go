// Package s3 is the storage.Store for Amazon S3 and S3-compatible object stores
// (MinIO, Ceph RGW, versitygw, R2…), built on aws-sdk-go-v2.
//
// Object key k lives at Config.Prefix + "/" + k in Config.Bucket. Behaviour beyond
// the storage.Store contract:
//   - Put sends objects of up to Config.PartSize bytes in one PutObject and larger
//     ones as a multipart upload of at most Config.Concurrency parts in flight, in
//     parts that grow so that no upload needs more than Config.MaxParts (partPlan); a
//     part that fails transiently is sent again (Config.Retry); a failed or
//     cancelled multipart upload is aborted, so neither an object nor an in-progress
//     upload is left behind.
//   - Requests carry CRC32 checksums of their data, as the SDK does by default, unless
//     Config.Checksum is ChecksumWhenRequired (for stores that reject the headers).
//   - Put with IfAbsent relies on "If-None-Match: *" (see ConditionalMode and
//     Store.ProbeConditionalWrites for servers that ignore it).
//   - Delete and Get past the end make an extra HeadObject request, because S3
//     answers a DELETE of a missing key with success and a range starting at the end
//     of an object with 416.
//   - A HeadObject 404 carries no error code, so Stat and Delete on a missing bucket
//     report storage.ErrNotExist; Put, Get and List name the missing bucket.
//   - AWS answers requests for missing keys with 403 AccessDenied instead of 404 when
//     the credentials lack s3:ListBucket on the bucket; grant it, or missing objects
//     look like a permission problem.
//   - Errors are translated once, in translateError: the sentinels of package storage,
//     storage.Permanent for refused credentials, missing buckets and wrong regions,
//     with a message naming the setting to fix and never a secret.
package s3

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgb-project/pgb/internal/storage"
)

// Store is a storage.Store in one S3 bucket, under one prefix. It is safe for
// concurrent use; all calls share one HTTP connection pool.
type Store struct {
	cfg       Config
	client    *s3.Client
	transport *http.Transport // closed by Close
	base      string          // cfg.Prefix + "/", or "" for the bucket's root
}

var _ storage.Store = (*Store)(nil)

// New validates cfg, fills in defaults and builds the S3 client. It makes no request
// to the server: a wrong bucket, region or credentials show up on the first call.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg = withEnvironmentKeys(cfg.withDefaults(), os.Getenv)
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	prof, err := loadProfile(cfg.Profile, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	roots, err := caBundle(prof, os.Getenv)
	if err != nil {
		return nil, err
	}
	transport := newTransport(cfg)
	if roots != nil {
		if transport.TLSClientConfig == nil {
			transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		transport.TLSClientConfig.RootCAs = roots
	}
	httpClient := &http.Client{Transport: wrapTransport(cfg, transport)}
	awsCfg, err := loadAWSConfig(cfg, prof, httpClient)
	if err != nil {
		return nil, err
	}
	if awsCfg.BaseEndpoint != nil {
		cfg.Endpoint = *awsCfg.BaseEndpoint // from the SDK's settings: String names it
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		// Response checksums are validated for whole-object reads only (Get sets
		// ChecksumMode): some S3-compatible servers send the whole object's checksum
		// with a ranged response, which can only fail to match.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		o.APIOptions = append(o.APIOptions, multipartRetries(cfg.Retry))
		if cfg.Checksum == ChecksumWhenRequired {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		}
	})
	s := &Store{cfg: cfg, client: client, transport: transport}
	if cfg.Prefix != "" {
		s.base = cfg.Prefix + "/"
	}
	return s, nil
}

// String names the repository and endpoint, without credentials.
func (s *Store) String() string {
	if s.cfg.Endpoint == "" {
		return s.cfg.location()
	}
	return s.cfg.location() + " at " + redactURL(s.cfg.Endpoint)
}

// Close releases idle connections. The store must not be used afterwards.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// objectKey checks key and returns the object's key in the bucket.
func (s *Store) objectKey(key string) (string, error) {
	if err := storage.ValidKey(key); err != nil {
		return "", err
	}
	return s.base + key, nil
}

// checksumAlgorithm is the checksum multipart uploads name explicitly: CRC32, or none
// with ChecksumWhenRequired.
func (s *Store) checksumAlgorithm() types.ChecksumAlgorithm {
	if s.cfg.Checksum == ChecksumWhenRequired {
		return ""
	}
	return types.ChecksumAlgorithmCrc32
}

// sse sets server-side encryption and storage class on the inputs that create objects.
func (s *Store) sse() (types.ServerSideEncryption, *string, types.StorageClass) {
	var kms *string
	if s.cfg.SSEKMSKeyID != "" {
		kms = aws.String(s.cfg.SSEKMSKeyID)
	}
	return types.ServerSideEncryption(s.cfg.SSE), kms, types.StorageClass(s.cfg.StorageClass)
}
