package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.Shutdown()
	os.Exit(code)
}

// ---- helpers ----

// goFakeConfig is a store configuration for a fresh gofakes3 server.
func goFakeConfig(t testing.TB) s3.Config {
	endpoint, bucket := s3test.NewGoFakeS3(t)
	return s3.Config{
		Bucket: bucket, Prefix: "repo/x", Region: "us-east-1", Endpoint: endpoint, ForcePathStyle: true,
		AccessKeyID: "fake", SecretAccessKey: "fake-secret", PartSize: s3.MinPartSize, RequestTimeout: 10 * time.Second,
	}
}

// versityConfig is a store configuration for a fresh bucket on the shared versitygw,
// with the smallest part size so that the suite's 5 MiB+ object goes multipart.
func versityConfig(t testing.TB) s3.Config {
	endpoint, access, secret, bucket := s3test.StartVersityGW(t)
	return s3.Config{
		Bucket: bucket, Prefix: "pgb", Region: s3test.VersityRegion, Endpoint: endpoint, ForcePathStyle: true,
		AccessKeyID: access, SecretAccessKey: secret, PartSize: s3.MinPartSize, RequestTimeout: 10 * time.Second,
	}
}

// seaweedConfig is versityConfig for a fresh bucket on the shared SeaweedFS.
func seaweedConfig(t testing.TB) s3.Config {
	endpoint, access, secret, bucket := s3test.StartSeaweedFS(t)
	return s3.Config{
		Bucket: bucket, Prefix: "pgb", Region: s3test.SeaweedRegion, Endpoint: endpoint, ForcePathStyle: true,
		AccessKeyID: access, SecretAccessKey: secret, PartSize: s3.MinPartSize, RequestTimeout: 30 * time.Second,
	}
}

func newStore(t testing.TB, cfg s3.Config) *s3.Store {
	t.Helper()
	st, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New(%v): %v", cfg, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func readAll(t testing.TB, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return b
}

func keys(t testing.TB, st storage.Store, prefix string) []string {
	t.Helper()
	var ks []string
	if err := st.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		ks = append(ks, oi.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return ks
}

// wantNoUploads fails if the bucket holds unfinished multipart uploads.
func wantNoUploads(t testing.TB, cfg s3.Config) {
	t.Helper()
	out, err := s3test.AdminClient(cfg.Endpoint).ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(cfg.Bucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d unfinished multipart uploads left, first for %q", len(out.Uploads), aws.ToString(out.Uploads[0].Key))
	}
}

// failAfter yields data and then fails with errReader instead of io.EOF.
type failAfter struct{ r io.Reader }

var errReader = errors.New("injected reader failure")

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errReader
	}
	return n, err
}

// ---- conformance ----

func TestConformanceGoFakeS3(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st, err := s3.New(t.Context(), goFakeConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestConformanceVersityGW(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st, err := s3.New(t.Context(), versityConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// A second real S3 implementation, so that pgb is not tuned to one server's quirks.
func TestConformanceSeaweedFS(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st, err := s3.New(t.Context(), seaweedConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// The racy fallback still behaves on the happy paths of the suite, on a server that
// enforces nothing itself for multipart uploads.
func TestConformanceGoFakeS3HeadCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	storagetest.Run(t, func(t *testing.T) storage.Store {
		cfg := goFakeConfig(t)
		cfg.Conditional = s3.ConditionalHeadCheck
		st, err := s3.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// ---- conditional writes ----

func TestIfAbsentMultipartRace(t *testing.T) {
	cfg := versityConfig(t)
	st := newStore(t, cfg)
	const size = 12 << 20
	contents := [][]byte{pattern(1, size), pattern(2, size)}
	errs := make([]error, len(contents))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range contents {
		wg.Go(func() {
			<-start
			// Unknown size and a reader without Seek: the streaming path.
			errs[i] = st.Put(t.Context(), "race", io.MultiReader(bytes.NewReader(contents[i])), storage.PutOptions{IfAbsent: true, Size: -1})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Fatalf("both IfAbsent multipart uploads succeeded")
		case !errors.Is(err, storage.ErrExist):
			t.Fatalf("writer %d: %v, want nil or ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("neither upload succeeded: %v", errs)
	}
	if got := readAll(t, st, "race"); !bytes.Equal(got, contents[winner]) {
		t.Fatalf("object differs from the winner's data")
	}
	wantNoUploads(t, cfg)

	// A later multipart IfAbsent Put is refused too, and leaves no upload behind.
	err := st.Put(t.Context(), "race", bytes.NewReader(contents[1-winner]), storage.PutOptions{IfAbsent: true, Size: size})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("third IfAbsent Put: %v, want ErrExist", err)
	}
	wantNoUploads(t, cfg)
}

func TestProbeConditionalWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(testing.TB) s3.Config
		want bool
	}{
		{"versitygw", versityConfig, true},
		{"seaweedfs", seaweedConfig, true},
		// gofakes3 honours If-None-Match on PutObject but not on
		// CompleteMultipartUpload.
		{"gofakes3", goFakeConfig, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg(t)
			st := newStore(t, cfg)
			enforced, err := st.ProbeConditionalWrites(t.Context())
			if err != nil || enforced != tc.want {
				t.Fatalf("ProbeConditionalWrites = %v, %v; want %v, nil", enforced, err, tc.want)
			}
			if ks := keys(t, st, ""); len(ks) != 0 {
				t.Fatalf("the probe left %q behind", ks)
			}
			wantNoUploads(t, cfg)
		})
	}
}

// The condition on CompleteMultipartUpload is what counts: an object that appears
// after Put's early check, while the parts go up, still wins.
func TestIfAbsentMultipartObjectAppearsMidway(t *testing.T) {
	cfg := versityConfig(t)
	st := newStore(t, cfg)
	data := pattern(6, 12<<20)
	other := func() {
		if err := st.Put(t.Context(), "k", strings.NewReader("other"), storage.PutOptions{Size: -1}); err != nil {
			t.Errorf("the other writer: %v", err)
		}
	}
	// The hook runs while the second part is read, after the early check.
	r := io.MultiReader(bytes.NewReader(data[:6<<20]), &hookReader{fn: other}, bytes.NewReader(data[6<<20:]))
	err := st.Put(t.Context(), "k", r, storage.PutOptions{IfAbsent: true, Size: -1})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("IfAbsent Put overtaken by another writer: %v, want ErrExist", err)
	}
	if got := string(readAll(t, st, "k")); got != "other" {
		t.Fatalf("object = %.20q, want the other writer's", got)
	}
	wantNoUploads(t, cfg)
}

func TestConditionalUnsupported(t *testing.T) {
	cfg := goFakeConfig(t)
	cfg.Conditional = s3.ConditionalUnsupported
	st := newStore(t, cfg)
	err := st.Put(t.Context(), "k", strings.NewReader("x"), storage.PutOptions{IfAbsent: true, Size: 1})
	if !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("IfAbsent Put in unsupported mode: %v, want ErrUnsupported", err)
	}
	if err := st.Put(t.Context(), "k", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatalf("plain Put: %v", err)
	}
}

// ---- aborted uploads ----

func TestAbortedMultipartLeavesNothing(t *testing.T) {
	cfg := versityConfig(t)
	st := newStore(t, cfg)
	data := pattern(3, 7<<20)

	err := st.Put(t.Context(), "broken", &failAfter{bytes.NewReader(data)}, storage.PutOptions{Size: -1})
	if !errors.Is(err, errReader) {
		t.Fatalf("Put with a reader failing after 7 MiB: %v, want the reader's error", err)
	}
	if _, err := st.Stat(t.Context(), "broken"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat after the failed Put: %v, want ErrNotExist", err)
	}
	wantNoUploads(t, cfg)

	// Cancelled while the second part is being read, after the first went up.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := io.MultiReader(bytes.NewReader(data[:6<<20]), &hookReader{fn: cancel}, bytes.NewReader(data[6<<20:]))
	err = st.Put(ctx, "cancelled", r, storage.PutOptions{IfAbsent: true, Size: -1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v, want context.Canceled", err)
	}
	if ks := keys(t, st, ""); len(ks) != 0 {
		t.Fatalf("objects left after failed uploads: %q", ks)
	}
	wantNoUploads(t, cfg)
}

// hookReader calls fn on its first Read and then yields nothing more.
type hookReader struct {
	fn   func()
	once sync.Once
}

func (h *hookReader) Read([]byte) (int, error) {
	h.once.Do(h.fn)
	return 0, io.EOF
}

// ---- errors ----

func TestWrongSecretIsPermanent(t *testing.T) {
	cfg := versityConfig(t)
	cfg.SecretAccessKey = "wrong-secret-Zq93xY"
	cfg.SessionToken = "session-token-Qp0x7"
	st := newStore(t, cfg)
	start := time.Now()
	err := st.Put(t.Context(), "k", strings.NewReader("x"), storage.PutOptions{Size: 1})
	if err == nil {
		t.Fatal("Put with a wrong secret succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put took %v: the refusal was retried", d)
	}
	if !storage.IsPermanent(err) || retry.Retryable(err) {
		t.Errorf("error %q is not permanent", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "credentials") || !strings.Contains(msg, "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("error %q does not point at the credentials", msg)
	}
	for _, secret := range []string{cfg.SecretAccessKey, cfg.SessionToken} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q contains a secret", msg)
		}
	}
	// Every operation says so, List and Stat included.
	if err := st.List(t.Context(), "", func(storage.ObjectInfo) error { return nil }); !storage.IsPermanent(err) {
		t.Errorf("List: %v, want a permanent error", err)
	}
	if _, err := st.Stat(t.Context(), "k"); !storage.IsPermanent(err) {
		t.Errorf("Stat: %v, want a permanent error", err)
	}
}

func TestMissingBucketIsPermanent(t *testing.T) {
	cfg := versityConfig(t)
	cfg.Bucket = "pgb-no-such-bucket"
	st := newStore(t, cfg)
	errs := map[string]error{
		"put":  st.Put(t.Context(), "k", strings.NewReader("x"), storage.PutOptions{Size: 1}),
		"list": st.List(t.Context(), "", func(storage.ObjectInfo) error { return nil }),
	}
	_, errs["get"] = st.Get(t.Context(), "k", 0, -1)
	for op, err := range errs {
		if !storage.IsPermanent(err) || !strings.Contains(fmt.Sprint(err), `"pgb-no-such-bucket" does not exist`) || !strings.Contains(fmt.Sprint(err), "--repo") {
			t.Errorf("%s: %v, want a permanent error naming the bucket and --repo", op, err)
		}
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // a closed port: connections are refused
	st := newStore(t, s3.Config{
		Bucket: "b", Endpoint: endpoint, ForcePathStyle: true, Region: "us-east-1",
		AccessKeyID: "a", SecretAccessKey: "s", MaxAttempts: 1, RequestTimeout: time.Second,
		Retry: retry.Policy{MaxAttempts: 2},
	})
	start := time.Now()
	err = st.Put(t.Context(), "k", strings.NewReader("x"), storage.PutOptions{Size: 1})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Put to a closed port took %v", d)
	}
	if err == nil || !strings.Contains(err.Error(), endpoint) || !strings.Contains(err.Error(), "PGB_S3_ENDPOINT") {
		t.Fatalf("Put to a closed port: %v, want an error naming the endpoint and PGB_S3_ENDPOINT", err)
	}
	// Retried by the store as its policy allows, and marked so, so that the wrapper
	// above does not retry it again.
	if !retry.IsExhausted(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connection refused should be retried, then marked exhausted: %v", err)
	}
}

func TestTruncatedBody(t *testing.T) {
	cfg := versityConfig(t)
	ft := &s3test.FaultyTransport{TruncateAfter: 1000, Match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && !r.URL.Query().Has("list-type")
	}}
	cfg.WrapTransport = ft.Wrap
	st := newStore(t, cfg)
	data := pattern(4, 100<<10)
	if err := st.Put(t.Context(), "k", bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{0, -1}, {10, 5000}} {
		rc, err := st.Get(t.Context(), "k", r[0], r[1])
		if err != nil {
			t.Fatalf("Get%v: %v", r, err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Get%v of a truncated body: %d bytes, error %v; want io.ErrUnexpectedEOF", r, n, err)
		}
	}
	if ft.Faults() == 0 {
		t.Fatal("no body was truncated")
	}
}

func TestSurvivesServerErrors(t *testing.T) {
	for _, ft := range []*s3test.FaultyTransport{
		{Prob: 0.2, Status: http.StatusServiceUnavailable, Seed: 7},
		{Prob: 0.2, Status: http.StatusInternalServerError, Seed: 8},
		{FailEvery: 4, Reset: true},
	} {
		t.Run(fmt.Sprintf("status=%d,reset=%v", ft.Status, ft.Reset), func(t *testing.T) {
			cfg := versityConfig(t)
			cfg.WrapTransport = ft.Wrap
			cfg.MaxAttempts = 10 // the SDK retries; 0.2^10 makes a spurious failure unlikely
			st := newStore(t, cfg)
			data := pattern(5, 12<<20)
			if err := st.Put(t.Context(), "big", io.MultiReader(bytes.NewReader(data)), storage.PutOptions{Size: -1}); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if got := readAll(t, st, "big"); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, not what was written", len(got))
			}
			if ks := keys(t, st, ""); len(ks) != 1 || ks[0] != "big" {
				t.Fatalf("List = %q", ks)
			}
			if ft.Faults() == 0 {
				t.Fatalf("no faults injected in %d requests", ft.Requests())
			}
			t.Logf("%d of %d requests failed", ft.Faults(), ft.Requests())
		})
	}
}

// ---- prefixes and secrets ----

func TestPrefixIsolation(t *testing.T) {
	cfg := versityConfig(t)
	stores := map[string]*s3.Store{}
	for _, p := range []string{"a", "ab", ""} {
		c := cfg
		c.Prefix = p
		stores[p] = newStore(t, c)
	}
	for _, p := range []string{"a", "ab"} {
		for _, k := range []string{"x", "b/y"} {
			if err := stores[p].Put(t.Context(), k, strings.NewReader(p), storage.PutOptions{Size: -1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range []string{"a", "ab"} {
		if got := strings.Join(keys(t, stores[p], ""), ","); got != "b/y,x" {
			t.Errorf("store %q lists %q, want only its own b/y,x", p, got)
		}
		if got := string(readAll(t, stores[p], "x")); got != p {
			t.Errorf("store %q reads %q", p, got)
		}
	}
	if got := strings.Join(keys(t, stores[""], ""), ","); got != "a/b/y,a/x,ab/b/y,ab/x" {
		t.Errorf("the bucket root lists %q", got)
	}
	if err := stores["a"].Delete(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, stores["ab"], "x")); got != "ab" {
		t.Errorf("deleting a's x touched ab's: %q", got)
	}
}

func TestNoSecretsInDescriptions(t *testing.T) {
	cfg := s3.Config{
		Bucket: "b", Prefix: "p", Endpoint: "http://user:pass-Xy1@127.0.0.1:7070",
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret-Kp4rW", SessionToken: "token-9xZq",
	}
	st := newStore(t, cfg)
	for _, s := range []string{st.String(), cfg.String(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, st)} {
		for _, secret := range []string{cfg.SecretAccessKey, cfg.SessionToken, "pass-Xy1"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q contains the secret %q", s, secret)
			}
		}
	}
	if got, want := st.String(), "s3://b/p at http://127.0.0.1:7070"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestConfigValidation(t *testing.T) {
	ok := s3.Config{Bucket: "b", Region: "us-east-1", AccessKeyID: "a", SecretAccessKey: "s"}
	for _, tc := range []struct {
		mutate func(*s3.Config)
		want   string
	}{
		{func(c *s3.Config) { c.Bucket = "" }, "--repo"},
		{func(c *s3.Config) { c.Prefix = "/p" }, "prefix"},
		{func(c *s3.Config) { c.Prefix = "p/" }, "prefix"},
		{func(c *s3.Config) { c.SSE = "aes" }, "--s3-sse"},
		{func(c *s3.Config) { c.SSEKMSKeyID = "k" }, "--s3-sse aws:kms"},
		{func(c *s3.Config) { c.PartSize = 1 << 20 }, "--s3-part-size"},
		{func(c *s3.Config) { c.Concurrency = -1 }, "--s3-upload-concurrency"},
		{func(c *s3.Config) { c.SecretAccessKey = "" }, "AWS_SECRET_ACCESS_KEY"},
		{func(c *s3.Config) { c.Endpoint = "127.0.0.1:7070" }, "PGB_S3_ENDPOINT"},
	} {
		cfg := ok
		tc.mutate(&cfg)
		_, err := s3.New(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v) error = %v, want one mentioning %q", cfg, err, tc.want)
		}
	}
	if _, err := s3.New(t.Context(), ok); err != nil {
		t.Errorf("New(%v): %v", ok, err)
	}
}

func TestRateLimit(t *testing.T) {
	cfg := goFakeConfig(t)
	cfg.RateLimit = 20 // a burst of 20, then one request every 50ms
	st := newStore(t, cfg)
	start := time.Now()
	for range 30 {
		if _, err := st.Stat(t.Context(), "k"); !errors.Is(err, storage.ErrNotExist) {
			t.Fatalf("Stat: %v", err)
		}
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("30 requests at 20/s took only %v", d)
	}
}

// ---- incomplete uploads left by killed writers ----

// A writer killed mid-upload leaves its multipart upload incomplete, and S3 keeps (and
// bills) the parts until someone aborts it. RemoveStaleTemps, which pgb delete
// --garbage calls, finds those initiated before the cutoff below the prefix, adds up
// their parts and with remove aborts them; younger ones, and uploads outside the prefix
// or the store's own prefix, are left alone.
func TestStaleMultipartUploadsAreFoundAndAborted(t *testing.T) {
	cfg := versityConfig(t)
	st := newStore(t, cfg)
	admin := s3test.AdminClient(cfg.Endpoint)
	ctx := t.Context()
	start := func(obj string, size int) {
		t.Helper()
		up, err := admin.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: aws.String(cfg.Bucket), Key: aws.String(obj)})
		if err != nil {
			t.Fatalf("CreateMultipartUpload %s: %v", obj, err)
		}
		if _, err := admin.UploadPart(ctx, &awss3.UploadPartInput{Bucket: aws.String(cfg.Bucket), Key: aws.String(obj),
			UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(pattern(1, size))}); err != nil {
			t.Fatalf("UploadPart %s: %v", obj, err)
		}
	}
	start(cfg.Prefix+"/backups/20261203T010203Z/part.00000", 70000)
	start(cfg.Prefix+"/wal/0000000100000000/000000010000000000000001", 1000)
	start("other/backups/20261203T010203Z/part.00000", 1000)
	left := func() (keys []string) {
		t.Helper()
		out, err := admin.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(cfg.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
		sort.Strings(keys)
		return keys
	}
	all := left()
	if len(all) != 3 {
		t.Fatalf("uploads started: %q", all)
	}
	type sweeper interface {
		RemoveStaleTemps(ctx context.Context, prefix string, cutoff time.Time, remove bool) (int, int64, error)
	}
	sw, ok := storage.Store(st).(sweeper)
	if !ok {
		t.Fatal("the S3 store does not sweep incomplete uploads")
	}
	if n, b, err := sw.RemoveStaleTemps(ctx, "backups/", time.Now().Add(-time.Hour), true); err != nil || n != 0 || b != 0 {
		t.Fatalf("cutoff before the uploads began: %d uploads, %d bytes, %v; want none", n, b, err)
	}
	later := time.Now().Add(time.Hour)
	if n, b, err := sw.RemoveStaleTemps(ctx, "backups/", later, false); err != nil || n != 1 || b != 70000 {
		t.Fatalf("counting: %d uploads, %d bytes, %v; want 1 upload of 70000 bytes", n, b, err)
	}
	if got := left(); !slices.Equal(got, all) {
		t.Fatalf("counting aborted uploads: %q left of %q", got, all)
	}
	if n, b, err := sw.RemoveStaleTemps(ctx, "backups/", later, true); err != nil || n != 1 || b != 70000 {
		t.Fatalf("removing: %d uploads, %d bytes, %v; want 1 upload of 70000 bytes", n, b, err)
	}
	want := []string{"other/backups/20261203T010203Z/part.00000", cfg.Prefix + "/wal/0000000100000000/000000010000000000000001"}
	if got := left(); !slices.Equal(got, want) {
		t.Fatalf("uploads left: %q, want %q", got, want)
	}
	if n, _, err := sw.RemoveStaleTemps(ctx, "backups/", later, true); err != nil || n != 0 {
		t.Fatalf("a second sweep: %d uploads, %v; want none", n, err)
	}
}

// A server whose listing of incomplete uploads pages without moving on does not keep
// the sweep going for ever, and one that refuses the listing (no permission) makes it
// storage.ErrUnsupported, so that pgb delete --garbage goes on without it.
func TestStaleUploadSweepStopsOnABrokenListingAndYieldsToARefusal(t *testing.T) {
	var lists atomic.Int64
	var deny atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.URL.Query()["uploads"]; !ok {
			w.WriteHeader(http.StatusOK)
			return
		}
		lists.Add(1)
		if deny.Load() {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>no s3:ListBucketMultipartUploads</Message></Error>`)
			return
		}
		// Always the same next page: it never moves on.
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><NextKeyMarker>pgb/backups/x</NextKeyMarker><NextUploadIdMarker>u1</NextUploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated></ListMultipartUploadsResult>`)
	}))
	defer srv.Close()
	st := newStore(t, s3.Config{Bucket: "b", Prefix: "pgb", Region: "us-east-1", Endpoint: srv.URL, ForcePathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s", RequestTimeout: 10 * time.Second, Retry: retry.Policy{MaxAttempts: 1}})
	_, _, err := st.RemoveStaleTemps(t.Context(), "backups/", time.Now(), true)
	if err == nil || !strings.Contains(err.Error(), "does not move on") || lists.Load() != 2 {
		t.Fatalf("a listing that pages in place: %v after %d requests, want an error after 2", err, lists.Load())
	}
	deny.Store(true)
	_, _, err = st.RemoveStaleTemps(t.Context(), "backups/", time.Now(), true)
	if !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("a refused listing: %v, want storage.ErrUnsupported", err)
	}
}
