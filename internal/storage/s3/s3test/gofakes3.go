// Package s3test starts S3 servers for tests of the s3 storage backend and of the code
// above it: real versitygw and SeaweedFS processes (StartVersityGW, StartSeaweedFS),
// an in-process gofakes3 (NewGoFakeS3), a fault-injecting HTTP transport
// (FaultyTransport) and one that refuses the SDK's checksum headers as some
// S3-compatible stores do (ChecksumRejecting).
package s3test

import (
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// GoFakeS3Bucket is the bucket NewGoFakeS3 creates.
const GoFakeS3Bucket = "pgb-test"

// NewGoFakeS3 starts an in-memory gofakes3 server with one empty bucket, stopped at
// t's cleanup. It checks no signatures: any credentials are accepted. Use it with
// path-style addressing.
//
// gofakes3 enforces If-None-Match on PutObject but not on CompleteMultipartUpload.
func NewGoFakeS3(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(GoFakeS3Bucket); err != nil {
		t.Fatalf("gofakes3: create bucket: %v", err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	return srv.URL, GoFakeS3Bucket
}
