package open_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/gcs/gcstest"
	"github.com/pgb-project/pgb/internal/storage/open"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// counter is a fault injector that answers 503 to every request and counts them.
type counter interface {
	http.RoundTripper
	count() int64
}

type s3Faults struct{ *s3test.FaultyTransport }

func (f s3Faults) count() int64 { return int64(f.Requests()) }

type gcsFaults struct{ *gcstest.Faults }

func (f gcsFaults) count() int64 { return f.Injected() }

// noWait is a retry policy's Sleep that does not wait.
func noWait(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// TestStoreUnavailableEveryRequestIsTriedStorageRetriesTimes: against a store that
// answers 503 to everything, each call through the store as the commands open it is
// attempted exactly storage-retries times: the SDK's attempts, the backend's upload
// retries and the retry wrapper's do not multiply.
func TestStoreUnavailableEveryRequestIsTriedStorageRetriesTimes(t *testing.T) {
	const attempts = 4
	s3Endpoint, s3Bucket := s3test.NewGoFakeS3(t)
	for _, tc := range []struct {
		repo   string
		faults func() counter
	}{
		{"s3://" + s3Bucket + "/repo", func() counter {
			return s3Faults{&s3test.FaultyTransport{Status: http.StatusServiceUnavailable}}
		}},
		{"gs://bucket/repo", func() counter { return gcsFaults{&gcstest.Faults{Fail: 1}} }},
	} {
		for _, op := range []struct {
			name string
			call func(ctx context.Context, st storage.Store) error
		}{
			{"get", func(ctx context.Context, st storage.Store) error {
				rc, err := st.Get(ctx, "k", 0, -1)
				if err == nil {
					_, err = io.ReadAll(rc)
					rc.Close()
				}
				return err
			}},
			{"stat", func(ctx context.Context, st storage.Store) error { _, err := st.Stat(ctx, "k"); return err }},
			{"put", func(ctx context.Context, st storage.Store) error {
				return st.Put(ctx, "k", strings.NewReader("value"), storage.PutOptions{Size: 5})
			}},
			{"put-stream", func(ctx context.Context, st storage.Store) error {
				return st.Put(ctx, "k", io.MultiReader(strings.NewReader("value")), storage.PutOptions{Size: -1})
			}},
			{"put-multipart", func(ctx context.Context, st storage.Store) error {
				big := io.MultiReader(bytes.NewReader(make([]byte, 5<<20+1))) // more than a part, not seekable
				return st.Put(ctx, "k", big, storage.PutOptions{Size: -1})
			}},
			{"list", func(ctx context.Context, st storage.Store) error {
				return st.List(ctx, "", func(storage.ObjectInfo) error { return nil })
			}},
			{"delete", func(ctx context.Context, st storage.Store) error { return st.Delete(ctx, "k") }},
			{"delete-batch", func(ctx context.Context, st storage.Store) error {
				if storage.MaxBatch(st) == 0 {
					return fmt.Errorf("the opened store does not pass batch deletes through")
				}
				return storage.DeleteAll(ctx, st, []string{"k"})
			}},
		} {
			t.Run(tc.repo[:2]+"/"+op.name, func(t *testing.T) {
				faults := tc.faults()
				st, err := open.Open(t.Context(), tc.repo, open.Options{
					Timeout:       time.Minute,
					Retry:         retry.Policy{MaxAttempts: attempts, Sleep: noWait, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
					WrapTransport: func(http.RoundTripper) http.RoundTripper { return faults },
					S3: config.S3{Endpoint: s3Endpoint, Region: "us-east-1", ForcePathStyle: true, AccessKeyID: "a", SecretAccessKey: "s",
						PartSize: 5 << 20, Concurrency: 1, RequestTimeout: time.Minute, Conditional: "enforced"},
					GCS: config.GCS{Endpoint: "http://127.0.0.1:1", ChunkSize: 256 << 10, Concurrency: 1, RequestTimeout: time.Minute},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				err = op.call(t.Context(), st)
				if err == nil || retry.Retryable(err) {
					t.Errorf("error = %v, want a final error", err)
				}
				if errors.Is(err, storage.ErrNotExist) {
					t.Errorf("error = %v: a 503 is not a missing object", err)
				}
				if n := faults.count(); n != attempts {
					t.Errorf("%d requests, want exactly %d (storage-retries)", n, attempts)
				}
			})
		}
	}
}

// holdUploads holds every upload request until released, counting those in flight.
type holdUploads struct {
	next     http.RoundTripper
	release  chan struct{}
	mu       sync.Mutex
	inflight int
	most     int
}

func (h *holdUploads) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.Contains(req.URL.Path, "/upload/") {
		return h.next.RoundTrip(req)
	}
	h.mu.Lock()
	h.inflight++
	h.most = max(h.most, h.inflight)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.inflight--
		h.mu.Unlock()
	}()
	<-h.release
	return h.next.RoundTrip(req)
}

func (h *holdUploads) counts() (inflight, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inflight, h.most
}

// TestGCSUploadConcurrencyLimitsUploadsInFlight: with gcs-upload-concurrency N, no
// more than N uploads reach the server at once; the others wait for a slot.
func TestGCSUploadConcurrencyLimitsUploadsInFlight(t *testing.T) {
	const limit, uploads = 2, 6
	endpoint, client, bucket := gcstest.NewInProcess(t)
	hold := &holdUploads{next: client.Transport, release: make(chan struct{})}
	st, err := open.Open(t.Context(), "gs://"+bucket+"/repo", open.Options{
		Timeout:       time.Minute,
		Retry:         retry.Policy{Sleep: noWait},
		WrapTransport: func(http.RoundTripper) http.RoundTripper { return hold },
		GCS:           config.GCS{Endpoint: endpoint, ChunkSize: 256 << 10, Concurrency: limit, RequestTimeout: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	waiting := func() int { return 0 }
	if w, ok := st.(interface{ Waiting() int }); ok {
		waiting = w.Waiting
	}
	errs := make(chan error, uploads)
	for i := range uploads {
		go func() {
			errs <- st.Put(t.Context(), fmt.Sprintf("part-%d", i), strings.NewReader("data"), storage.PutOptions{Size: 4})
		}()
	}
	// Wait until every upload is either at the server or waiting for a slot.
	for {
		if inflight, _ := hold.counts(); inflight+waiting() == uploads {
			break
		}
		runtime.Gosched()
	}
	inflight, most := hold.counts()
	close(hold.release)
	for range uploads {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if most > limit || inflight != limit {
		t.Errorf("%d uploads at the server at once (%d at the end of the rush), want at most %d", most, inflight, limit)
	}
	for i := range uploads {
		if _, err := st.Stat(t.Context(), fmt.Sprintf("part-%d", i)); err != nil {
			t.Error(err)
		}
	}
}

// nthChunks matches the n-th chunk requests of resumable uploads (from 1) in the set.
func nthChunks(set ...int) func(*http.Request) bool {
	var mu sync.Mutex
	seen := 0
	return func(req *http.Request) bool {
		if !req.URL.Query().Has("upload_id") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		return slices.Contains(set, seen)
	}
}

// TestGCSStreamedUploadRetriesAChunkNotTheUpload: a large upload streamed from a pipe
// (nothing above the store can resend it, as for a backup part) survives transient
// faults in the middle: each failed chunk is sent again from the client's chunk
// buffer, up to storage-retries attempts in a row, and the object holds exactly the
// bytes streamed.
func TestGCSStreamedUploadRetriesAChunkNotTheUpload(t *testing.T) {
	const attempts, chunk = 4, 256 << 10
	endpoint, client, bucket := gcstest.NewInProcess(t)
	// Chunk requests 2, 3 and 4 (the second chunk, three times in a row) are answered
	// 503; the 6th (a later chunk) has its connection reset.
	resets := &gcstest.Faults{Next: client.Transport, Reset: 1, Match: nthChunks(6)}
	unavailable := &gcstest.Faults{Next: resets, Fail: 1, Match: nthChunks(2, 3, 4)}
	chunks := &chunkCounter{next: unavailable}
	st, err := open.Open(t.Context(), "gs://"+bucket+"/repo", open.Options{
		Timeout:       time.Minute,
		Retry:         retry.Policy{MaxAttempts: attempts, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		WrapTransport: func(http.RoundTripper) http.RoundTripper { return chunks },
		GCS:           config.GCS{Endpoint: endpoint, ChunkSize: chunk, Concurrency: 1, RequestTimeout: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	data := make([]byte, 8*chunk+1000)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(data); pw.CloseWithError(err) }()
	if err := st.Put(t.Context(), "base/part-1", pr, storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("streamed upload with transient faults: %v", err)
	}
	if got := unavailable.Injected() + resets.Injected(); got != 4 {
		t.Fatalf("%d faults injected, want 4", got)
	}
	rc, err := st.Get(t.Context(), "base/part-1", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want exactly the %d streamed", len(got), err, len(data))
	}
	// 9 chunks, and one more request for each fault: only the failed chunk was resent.
	if n := chunks.n.Load(); n != 9+4 {
		t.Errorf("%d chunk requests, want %d", n, 9+4)
	}
}

// chunkCounter counts the chunk requests of resumable uploads.
type chunkCounter struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *chunkCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Query().Has("upload_id") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(req)
}

// TestS3StreamedUploadRetriesAPartNotTheUpload: a multipart upload streamed from a
// pipe survives UploadPart failures: the failed part is sent again from its buffer, up
// to storage-retries attempts in a row, and the object holds exactly the bytes.
func TestS3StreamedUploadRetriesAPartNotTheUpload(t *testing.T) {
	const attempts, part = 4, 5 << 20
	endpoint, bucket := s3test.NewGoFakeS3(t)
	var mu sync.Mutex
	seen := 0
	isPart := func(req *http.Request) bool { return req.Method == http.MethodPut && req.URL.Query().Has("partNumber") }
	faults := &s3test.FaultyTransport{Status: http.StatusServiceUnavailable, Match: func(req *http.Request) bool {
		if !isPart(req) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		return seen <= attempts-1 // the first part fails 3 times in a row
	}}
	parts := &s3test.FaultyTransport{Match: isPart} // counts the UploadPart requests
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", open.Options{
		Timeout:       time.Minute,
		Retry:         retry.Policy{MaxAttempts: attempts, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		WrapTransport: func(base http.RoundTripper) http.RoundTripper { faults.Base = base; parts.Base = faults; return parts },
		S3: config.S3{Endpoint: endpoint, Region: "us-east-1", ForcePathStyle: true, AccessKeyID: "a", SecretAccessKey: "s",
			PartSize: part, Concurrency: 1, RequestTimeout: time.Minute, Conditional: "enforced"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data := make([]byte, 2*part+1000)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(data); pw.CloseWithError(err) }()
	if err := st.Put(t.Context(), "base/part-1", pr, storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("streamed multipart upload with a failing part: %v", err)
	}
	rc, err := st.Get(t.Context(), "base/part-1", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want exactly the %d streamed", len(got), err, len(data))
	}
	if n, f := parts.Requests(), faults.Faults(); f != attempts-1 || n != 3+f {
		t.Errorf("%d UploadPart requests with %d faults, want %d: 3 parts, one more for each fault", n, f, 3+attempts-1)
	}
}
