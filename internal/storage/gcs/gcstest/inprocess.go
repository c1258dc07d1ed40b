package gcstest

import (
	"io"
	"net/http"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// inProcessURL is the endpoint of in-process servers: a name that resolves nowhere,
// since their client never dials.
const inProcessURL = "http://fake-gcs.invalid"

// NewInProcess starts fake-gcs-server's library in process, with no listener, and
// returns the endpoint and HTTP client to reach it (the client hands requests straight
// to the server's handler, whatever their host) and a bucket on it. The server is
// stopped when the test ends.
//
// Its transport ignores request contexts and buffers whole responses; the binary
// (StartFakeGCS) is the closer match to a real server.
func NewInProcess(t testing.TB) (endpoint string, client *http.Client, bucket string) {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener:  true,
		Scheme:      "http",
		ExternalURL: inProcessURL,
		PublicHost:  "fake-gcs.invalid",
		Writer:      io.Discard,
	})
	if err != nil {
		t.Fatalf("gcstest: in-process server: %v", err)
	}
	t.Cleanup(srv.Stop)
	bucket = "pgb-inprocess"
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	return inProcessURL, srv.HTTPClient(), bucket
}
