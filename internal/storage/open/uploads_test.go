package open_test

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/gcs/gcstest"
	"github.com/pgb-project/pgb/internal/storage/open"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func s3Opts(endpoint string, n int, wrap func(http.RoundTripper) http.RoundTripper) open.Options {
	return open.Options{
		Timeout:       time.Minute,
		Retry:         retry.Policy{MaxAttempts: n, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		WrapTransport: wrap,
		S3: config.S3{Endpoint: endpoint, Region: "us-east-1", ForcePathStyle: true, AccessKeyID: "a", SecretAccessKey: "s",
			PartSize: 5 << 20, Concurrency: 1, RequestTimeout: time.Minute, Conditional: "enforced", MaxParts: 10000, Checksum: "when-supported"},
	}
}

// A backup part (pipe, IfAbsent, Size -1) larger than one part: one 503 on the
// HEAD that precedes the multipart upload killed the part (no layer retried it).
func TestAFailedHEADBeforeAMultipartUploadIsRetried(t *testing.T) {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	var heads atomic.Int64
	faults := &s3test.FaultyTransport{Status: 503, Match: func(r *http.Request) bool {
		return r.Method == http.MethodHead && heads.Add(1) == 1
	}}
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", s3Opts(endpoint, 4, faults.Wrap))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(make([]byte, 6<<20)); pw.CloseWithError(err) }()
	err = st.Put(t.Context(), "b/part-1", pr, storage.PutOptions{IfAbsent: true, Size: -1})
	if err != nil {
		t.Errorf("one transient 503 on HEAD failed the part: %v (heads=%d)", err, heads.Load())
	}
}

// A slow-failing store (each request answers 503 after d) with a small seekable
// Put: the backend's Do and the wrapper both retry; requests multiply.
func TestSlowFailuresDoNotMultiplyAttempts(t *testing.T) {
	const n = 3
	endpoint, bucket := s3test.NewGoFakeS3(t)
	var reqs atomic.Int64
	wrap := func(base http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			reqs.Add(1)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			f := &s3test.FaultyTransport{Status: 503}
			return f.RoundTrip(r)
		})
	}
	o := s3Opts(endpoint, n, wrap)
	o.Timeout = 250 * time.Millisecond
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Put(t.Context(), "wal/x", bytes.NewReader([]byte("hello")), storage.PutOptions{IfAbsent: true, Size: 5})
	t.Logf("err=%v", err)
	if got := reqs.Load(); got > n {
		t.Errorf("%d requests for one Put with storage-retries %d", got, n)
	}
}

// GCS: a small seekable Put against a slow-failing endpoint.
func TestGCSSlowFailuresDoNotMultiplyAttempts(t *testing.T) {
	const n = 3
	var reqs atomic.Int64
	faults := &gcstest.Faults{Fail: 1}
	wrap := func(base http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			reqs.Add(1)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			return faults.RoundTrip(r)
		})
	}
	st, err := open.Open(t.Context(), "gs://bucket/repo", open.Options{
		Timeout:       250 * time.Millisecond,
		Retry:         retry.Policy{MaxAttempts: n, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		WrapTransport: wrap,
		GCS:           config.GCS{Endpoint: "http://127.0.0.1:1", ChunkSize: 256 << 10, Concurrency: 1, RequestTimeout: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Put(t.Context(), "wal/x", strings.NewReader("hello"), storage.PutOptions{IfAbsent: true, Size: 5})
	t.Logf("err=%v", err)
	if got := reqs.Load(); got > n {
		t.Errorf("%d requests for one Put with storage-retries %d", got, n)
	}
}

// Parts whose answers take longer than storage-timeout (the body sent, the server
// slow to answer) are no stall: the retry layer's inactivity deadline, which ran while
// the store waited for a free part buffer, cut such uploads off, and from a pipe
// nothing retried them.
func TestPartsInFlightLongerThanTheStorageTimeoutAreNoStall(t *testing.T) {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	wrap := func(base http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					return nil, err
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				select {
				case <-time.After(800 * time.Millisecond):
				case <-r.Context().Done():
					return nil, r.Context().Err()
				}
			}
			return base.RoundTrip(r)
		})
	}
	o := s3Opts(endpoint, 3, wrap)
	o.Timeout = 500 * time.Millisecond
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(make([]byte, 11<<20)); pw.CloseWithError(err) }()
	if err := st.Put(t.Context(), "b/part-1", pr, storage.PutOptions{Size: -1}); err != nil {
		t.Errorf("healthy slow upload failed: %v", err)
	}
}

// GCS: an upload whose chunks together take longer than storage-timeout is no stall
// (w.Write blocks while a chunk is sent, and the retry layer's deadline, which paused
// only inside r.Read, cut such uploads off). Each chunk is bounded by itself.
func TestGCSChunksInFlightAreNoStallOfTheUpload(t *testing.T) {
	endpoint, client, bucket := gcstest.NewInProcess(t)
	wrap := func(http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Query().Has("upload_id") {
				select {
				case <-time.After(500 * time.Millisecond):
				case <-r.Context().Done():
					return nil, r.Context().Err()
				}
			}
			return client.Transport.RoundTrip(r)
		})
	}
	st, err := open.Open(t.Context(), "gs://"+bucket+"/repo", open.Options{
		Timeout:       2 * time.Second,
		Retry:         retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		WrapTransport: wrap,
		GCS:           config.GCS{Endpoint: endpoint, ChunkSize: 256 << 10, Concurrency: 1, RequestTimeout: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(make([]byte, 5*256<<10+10)); pw.CloseWithError(err) }()
	if err := st.Put(t.Context(), "b/part-1", pr, storage.PutOptions{Size: -1}); err != nil {
		t.Errorf("healthy slow GCS upload failed: %v", err)
	}
}

// A client clock 1h behind the server's: S3 answers RequestTimeTooSkewed (403) with
// its Date; the SDK corrects its offset from that Date but, with MaxAttempts 1, does not
// retry, and pgb marked 403 permanent, so the wrapper did not either: every one-call
// process (wal-push, wal-fetch) failed. RequestTimeTooSkewed is retried.
func TestClockSkewIsCorrectedWithinTheCall(t *testing.T) {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	server := func() time.Time { return time.Now().Add(time.Hour) }
	var reqs atomic.Int64
	wrap := func(http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			reqs.Add(1)
			signed, _ := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
			h := http.Header{"Date": {server().UTC().Format(http.TimeFormat)}, "Content-Type": {"application/xml"}}
			if d := server().Sub(signed); d > 15*time.Minute || d < -15*time.Minute {
				body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>`
				return &http.Response{StatusCode: 403, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
			}
			h.Set("Content-Type", "application/octet-stream")
			return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader("abc")), ContentLength: 3, Request: r}, nil
		})
	}
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", s3Opts(endpoint, 5, wrap))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	get := func() error {
		rc, err := st.Get(t.Context(), "k", 0, -1)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		return err
	}
	err1 := get()
	n1 := reqs.Load()
	err2 := get()
	t.Logf("first: %v (%d requests); second: %v", err1, n1, err2)
	if err1 != nil {
		t.Errorf("clock skew not corrected within the call: %v", err1)
	}
}

// A part request that stalls (the server reads none of its body) is cut off after
// storage-timeout and sent again; the upload succeeds.
func TestAStalledPartIsCutOffAndSentAgain(t *testing.T) {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	var parts atomic.Int64
	wrap := func(base http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") && parts.Add(1) == 1 {
				<-r.Context().Done() // stalls until the stall bound cancels the request
				return nil, r.Context().Err()
			}
			return base.RoundTrip(r)
		})
	}
	o := s3Opts(endpoint, 3, wrap)
	o.Timeout = 200 * time.Millisecond
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data := bytes.Repeat([]byte("pgb"), 4<<20)
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(data); pw.CloseWithError(err) }()
	if err := st.Put(t.Context(), "b/part-1", pr, storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put with one stalled part: %v", err)
	}
	if parts.Load() < 4 {
		t.Errorf("%d part requests, want the stalled one sent again", parts.Load())
	}
	rc, err := st.Get(t.Context(), "b/part-1", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}

// CompleteMultipartUpload is committed by the server but its reply is lost, and the
// retry finds the upload gone (NoSuchUpload): the object these parts make is there
// (HEAD answers their multipart ETag), so the Put succeeded — it used to fail, costing
// the whole backup.
func TestACompletionWhoseAnswerWasLostCountsWhenTheObjectIsThere(t *testing.T) {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	data := bytes.Repeat([]byte("pgb!"), 6<<18) // 6 MiB: parts of 5 MiB and 1 MiB
	var sums []byte
	for _, p := range [][]byte{data[:5<<20], data[5<<20:]} {
		h := md5.Sum(p)
		sums = append(sums, h[:]...)
	}
	multipartETag := fmt.Sprintf(`"%x-2"`, md5.Sum(sums))
	var once sync.Once
	lost := false
	wrap := func(base http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := base.RoundTrip(r)
			if err != nil {
				return resp, err
			}
			if r.Method == http.MethodPost && r.URL.Query().Has("uploadId") {
				once.Do(func() { lost = true })
				if lost {
					lost = false
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
				}
			}
			if r.Method == http.MethodHead && resp.StatusCode == http.StatusOK {
				resp.Header.Set("ETag", multipartETag) // as S3 answers for a multipart object
			}
			return resp, err
		})
	}
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", s3Opts(endpoint, 4, wrap))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pr, pw := io.Pipe()
	go func() { _, err := pw.Write(data); pw.CloseWithError(err) }()
	if err := st.Put(t.Context(), "b/part-1", pr, storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put = %v, although the object is stored", err)
	}
	never := false
	once.Do(func() { never = true })
	if never {
		t.Error("the completion's answer was never lost: the test proves nothing")
	}
}

// A 4xx refusal of the request as it is (here 400 EntityTooSmall) is permanent: one
// request, not storage-retries of them.
func TestARequestTheStoreRefusesIsNotRetried(t *testing.T) {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	var reqs atomic.Int64
	wrap := func(http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			reqs.Add(1)
			body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>EntityTooSmall</Code><Message>Your proposed upload is smaller than the minimum allowed object size.</Message></Error>`
			h := http.Header{"Content-Type": {"application/xml"}}
			return &http.Response{StatusCode: 400, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
		})
	}
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", s3Opts(endpoint, 4, wrap))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Put(t.Context(), "wal/x", strings.NewReader("hello"), storage.PutOptions{Size: 5})
	if err == nil || !storage.IsPermanent(err) || reqs.Load() != 1 {
		t.Fatalf("Put = %v after %d requests, want a permanent error after 1", err, reqs.Load())
	}
}
