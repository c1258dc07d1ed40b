package gcs_test

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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/gcs"
	"github.com/pgb-project/pgb/internal/storage/gcs/gcstest"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

// TestConformance runs the storage contract against the fake-gcs-server binary, each
// subtest with a bucket of its own and the store under a two-level prefix.
func TestConformance(t *testing.T) {
	endpoint, _ := gcstest.StartFakeGCS(t) // keeps the server up for the subtests
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return newStore(t, gcs.Config{Bucket: gcstest.CreateBucket(t, endpoint), Prefix: "pgb/repo", Endpoint: endpoint})
	})
}

// TestConformanceInProcess runs the storage contract against the emulator's library in
// process, whose transport ignores contexts, at the bucket's root.
func TestConformanceInProcess(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		endpoint, client, bucket := gcstest.NewInProcess(t)
		return newStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, HTTPClient: client})
	})
}

// newStore opens a store on cfg. Conformance subtests close it themselves; the others
// get it closed when they end.
func newStore(t *testing.T, cfg gcs.Config) *gcs.Store {
	t.Helper()
	s, err := gcs.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg, err)
	}
	return s
}

// openStore is newStore for tests outside the conformance suite.
func openStore(t *testing.T, cfg gcs.Config) *gcs.Store {
	t.Helper()
	s := newStore(t, cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

func get(t *testing.T, s storage.Store, key string, off, length int64) ([]byte, error) {
	t.Helper()
	rc, err := s.Get(t.Context(), key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func keys(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var ks []string
	if err := s.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		ks = append(ks, oi.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return ks
}

func wantMissing(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat(%q) error = %v, want ErrNotExist", key, err)
	}
}

// chunkCounter counts the chunks of resumable uploads that go through it.
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

// TestIfAbsentRaceResumable races 16 IfAbsent writers whose bodies span several
// chunks, so that the precondition is checked when each resumable upload is
// finalized: exactly one wins.
func TestIfAbsentRaceResumable(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, ChunkSize: 256 << 10})
	const writers = 16
	bodies := make([][]byte, writers)
	for i := range bodies {
		bodies[i] = pattern(uint64(i), 700<<10+i)
	}
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(t.Context(), "lock", bytes.NewReader(bodies[i]), storage.PutOptions{IfAbsent: true, Size: -1})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExist):
			t.Fatalf("writer %d: %v, want nil or ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	if got, err := get(t, s, "lock", 0, -1); err != nil || !bytes.Equal(got, bodies[winner]) {
		t.Fatalf("Get = %d bytes, %v; want the winner's %d bytes", len(got), err, len(bodies[winner]))
	}
}

// failAfter yields n bytes of data, then fails with err; hook, if set, runs when the
// n bytes have been yielded and the data goes on instead of failing.
type failAfter struct {
	r    io.Reader
	n    int64
	err  error
	hook func()
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		if f.hook != nil {
			f.hook()
			return f.r.Read(p)
		}
		return 0, f.err
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// TestAbortedUpload fails and cancels 20 MiB into resumable uploads of 8 MiB chunks,
// after two chunks reached the server: no object appears, and an older one survives.
func TestAbortedUpload(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	chunks := &chunkCounter{next: http.DefaultTransport}
	s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, ChunkSize: 8 << 20, HTTPClient: &http.Client{Transport: chunks}})
	data := pattern(7, 24<<20)
	errBoom := errors.New("source failed")

	for _, key := range []string{"new", "old"} {
		if key == "old" {
			if err := s.Put(t.Context(), "old", strings.NewReader("previous"), storage.PutOptions{Size: 8}); err != nil {
				t.Fatal(err)
			}
		}
		// The source fails.
		before := chunks.n.Load()
		err := s.Put(t.Context(), key, &failAfter{r: bytes.NewReader(data), n: 20 << 20, err: errBoom}, storage.PutOptions{Size: -1})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put(%s) with a failing source: %v, want the source's error", key, err)
		}
		if sent := chunks.n.Load() - before; sent < 2 {
			t.Fatalf("only %d chunks were sent before the failure, want 2", sent)
		}

		// The context is cancelled while the source goes on.
		ctx, cancel := context.WithCancel(t.Context())
		err = s.Put(ctx, key, &failAfter{r: bytes.NewReader(data), n: 20 << 20, hook: cancel}, storage.PutOptions{Size: -1})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put(%s) cancelled midway: %v, want context.Canceled", key, err)
		}
	}
	wantMissing(t, s, "new")
	if got, err := get(t, s, "old", 0, -1); err != nil || string(got) != "previous" {
		t.Fatalf("old object after aborted overwrites: %q, %v", got, err)
	}
	if ks := keys(t, s, ""); !slices.Equal(ks, []string{"old"}) {
		t.Fatalf("List = %q, want only old", ks)
	}
}

// TestLargeRoundTrip puts 20 MiB in 8 MiB chunks and reads it back whole and in part.
func TestLargeRoundTrip(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, ChunkSize: 8 << 20, StorageClass: "NEARLINE"})
	roundTrip(t, s, pattern(3, 20<<20))
}

// roundTrip puts data and checks it back through Get (whole and a range), Stat and
// List.
func roundTrip(t *testing.T, s storage.Store, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), "big/object", io.MultiReader(bytes.NewReader(data)), storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got, err := get(t, s, "big/object", 0, -1); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %d bytes (want %d), equal %v, error %v", len(got), len(data), bytes.Equal(got, data), err)
	}
	off := int64(len(data) / 3)
	if got, err := get(t, s, "big/object", off, 1<<20); err != nil || !bytes.Equal(got, data[off:off+1<<20]) {
		t.Fatalf("Get of 1 MiB at %d: %d bytes, error %v", off, len(got), err)
	}
	info, err := s.Stat(t.Context(), "big/object")
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if ks := keys(t, s, "big/"); !slices.Equal(ks, []string{"big/object"}) {
		t.Fatalf("List = %q", ks)
	}
}

// TestMissingBucket: every call on a bucket that does not exist fails at once,
// permanently, naming the bucket, and not as a missing object.
func TestMissingBucket(t *testing.T) {
	endpoint, _ := gcstest.StartFakeGCS(t)
	s := openStore(t, gcs.Config{Bucket: "pgb-no-such-bucket", Prefix: "p", Endpoint: endpoint})
	ctx := t.Context()
	_, statErr := s.Stat(ctx, "k")
	_, getErr := s.Get(ctx, "k", 0, -1)
	for name, err := range map[string]error{
		"Put":    s.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{Size: 1}),
		"List":   s.List(ctx, "", func(storage.ObjectInfo) error { return nil }),
		"Stat":   statErr,
		"Get":    getErr,
		"Delete": s.Delete(ctx, "k"),
	} {
		if err == nil || !storage.IsPermanent(err) || retry.Retryable(err) || errors.Is(err, storage.ErrNotExist) ||
			!strings.Contains(err.Error(), `"pgb-no-such-bucket" does not exist`) || !strings.Contains(err.Error(), "--repo") {
			t.Errorf("%s: %v; want a permanent error naming the bucket", name, err)
		}
	}
}

// TestUnreachableEndpoint: a closed port fails fast, retryably, naming the endpoint.
func TestUnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := openStore(t, gcs.Config{Bucket: "b", Endpoint: "http://" + addr, MaxAttempts: 2, Retry: retry.Policy{MaxAttempts: 2}})
	ctx := t.Context()
	start := time.Now()
	_, statErr := s.Stat(ctx, "k")
	_, getErr := s.Get(ctx, "k", 0, -1)
	for name, err := range map[string]error{
		"Put":  s.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{Size: 1}),
		"List": s.List(ctx, "", func(storage.ObjectInfo) error { return nil }),
		"Stat": statErr,
		"Get":  getErr,
	} {
		// Put is retried by the store itself, chunk by chunk, and then marked exhausted
		// so that the wrapper above does not retry it again.
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || (retry.Retryable(err) == (name == "Put")) || (name == "Put") != retry.IsExhausted(err) ||
			!strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "STORAGE_EMULATOR_HOST") {
			t.Errorf("%s: %v; want a retryable connection refused naming %s", name, err, addr)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the calls took %v", d)
	}
}

// TestRequestTimeout: a server that does not answer fails the attempt after
// RequestTimeout, retryably.
func TestRequestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	s := openStore(t, gcs.Config{Bucket: "b", Endpoint: srv.URL, RequestTimeout: 200 * time.Millisecond, MaxAttempts: 2})
	start := time.Now()
	_, err := s.Stat(t.Context(), "k")
	if err == nil || !retry.Retryable(err) {
		t.Fatalf("Stat from a silent server: %v, want a retryable error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stat took %v despite a 200ms request timeout", d)
	}
}

// TestEmulatorHostEnv: STORAGE_EMULATOR_HOST alone points the store at an emulator,
// without credentials.
func TestEmulatorHostEnv(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	host := strings.TrimPrefix(endpoint, "http://")
	t.Setenv("STORAGE_EMULATOR_HOST", host)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json") // must not be read
	s := openStore(t, gcs.Config{Bucket: bucket, Prefix: "p"})
	if err := s.Put(t.Context(), "k", strings.NewReader("v"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, s, "k", 0, -1); err != nil || string(got) != "v" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if !strings.Contains(s.String(), host) {
		t.Errorf("String() = %q, want the emulator's address", s.String())
	}
}

// TestPrefixIsolation: stores under "a" and "ab" in one bucket see only their own keys.
func TestPrefixIsolation(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	a := openStore(t, gcs.Config{Bucket: bucket, Prefix: "a", Endpoint: endpoint})
	ab := openStore(t, gcs.Config{Bucket: bucket, Prefix: "ab", Endpoint: endpoint})
	root := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint})
	for _, s := range []*gcs.Store{a, ab} {
		for _, k := range []string{"x", "b/x"} {
			if err := s.Put(t.Context(), k, strings.NewReader(s.String()), storage.PutOptions{Size: -1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := root.Put(t.Context(), "a", strings.NewReader("file named like the prefix"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s      *gcs.Store
		prefix string
		want   []string
	}{
		{a, "", []string{"b/x", "x"}},
		{a, "b", []string{"b/x"}},
		{ab, "", []string{"b/x", "x"}},
		{root, "", []string{"a", "a/b/x", "a/x", "ab/b/x", "ab/x"}},
		{root, "a/", []string{"a/b/x", "a/x"}},
	} {
		if got := keys(t, tc.s, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("%s: List(%q) = %q, want %q", tc.s, tc.prefix, got, tc.want)
		}
	}
	if got, err := get(t, a, "x", 0, -1); err != nil || string(got) != a.String() {
		t.Errorf("a: Get(x) = %q, %v", got, err)
	}
	if err := a.Delete(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := ab.Stat(t.Context(), "x"); err != nil {
		t.Errorf("ab: x is gone after a deleted its own x: %v", err)
	}
}

// isMediaGet matches object downloads.
func isMediaGet(req *http.Request) bool {
	return req.Method == http.MethodGet && req.URL.Query().Get("alt") == "media"
}

// TestTruncatedBody: a body that ends, cleanly, before its Content-Length is an error,
// never a short object; one that breaks off is resumed by the client.
func TestTruncatedBody(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	clean := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint})
	data := pattern(5, 3<<20)
	if err := clean.Put(t.Context(), "k", bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}

	lying := &gcstest.Faults{Truncate: 1, Match: isMediaGet}
	s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, HTTPClient: &http.Client{Transport: lying}})
	for _, r := range [][2]int64{{0, -1}, {100, -1}, {100, 1 << 20}} {
		got, err := get(t, s, "k", r[0], r[1])
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("Get(%d, %d) of a truncated body: %d bytes, error %v; want an error", r[0], r[1], len(got), err)
		}
		if r[0] > 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Get(%d, %d) of a truncated body: error %v, want io.ErrUnexpectedEOF", r[0], r[1], err)
		}
	}
	if lying.Injected() == 0 {
		t.Fatal("no body was truncated")
	}

	broken := &gcstest.Faults{Truncate: 0.5, TruncateErr: io.ErrUnexpectedEOF, Match: isMediaGet, Seed: 2}
	s = openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, HTTPClient: &http.Client{Transport: broken}})
	for range 4 {
		if got, err := get(t, s, "k", 0, -1); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get through broken connections: %d bytes, %v", len(got), err)
		}
	}
	if broken.Injected() == 0 {
		t.Fatal("no connection was broken")
	}
}

// TestFlakyServer: with a fifth of the requests answered 503 and some connections
// reset, a 20 MiB round trip still succeeds thanks to the client's retries.
func TestFlakyServer(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	flaky := &gcstest.Faults{Fail: 0.2, Reset: 0.05, Seed: 1}
	s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, ChunkSize: 1 << 20, MaxAttempts: 8, Retry: retry.Policy{MaxAttempts: 8},
		HTTPClient: &http.Client{Transport: flaky}})
	roundTrip(t, s, pattern(4, 20<<20))
	if flaky.Injected() == 0 {
		t.Fatal("no fault was injected")
	}
	t.Logf("%d faults injected", flaky.Injected())
}

// TestAccessDenied: 401 and 403 are permanent and say where credentials come from.
func TestAccessDenied(t *testing.T) {
	endpoint, bucket := gcstest.StartFakeGCS(t)
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint,
			HTTPClient: &http.Client{Transport: &gcstest.Faults{Fail: 1, FailCode: code}}})
		_, err := s.Stat(t.Context(), "k")
		if err == nil || !storage.IsPermanent(err) || errors.Is(err, storage.ErrNotExist) ||
			!strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") || !strings.Contains(err.Error(), "--gcs-credentials-file") ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("HTTP %d: %v; want a one-line permanent error naming the credential settings", code, err)
		}
	}
}

// TestCredentialsFile: a missing or unsuitable credentials file fails New,
// permanently, without quoting the file's secrets; a user credentials file is accepted
// (GOOGLE_APPLICATION_CREDENTIALS may name one).
func TestCredentialsFile(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	dir := t.TempDir()
	const secret = "s3cr3t-key-material"
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, file := range []string{
		filepath.Join(dir, "missing.json"),
		write("weird.json", `{"type":"weird","private_key":"`+secret+`"}`),
		write("untyped.json", `{"private_key":"`+secret+`"}`),
		write("garbage.json", secret),
	} {
		_, err := gcs.New(t.Context(), gcs.Config{Bucket: "b", CredentialsFile: file})
		if err == nil || !storage.IsPermanent(err) || !strings.Contains(err.Error(), "--gcs-credentials-file") {
			t.Errorf("New with credentials file %s: %v; want a permanent error naming --gcs-credentials-file", file, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
	user := write("user.json", `{"type":"authorized_user","client_id":"id","client_secret":"cs","refresh_token":"`+secret+`"}`)
	s := openStore(t, gcs.Config{Bucket: "b", CredentialsFile: user})
	if str := s.String(); strings.Contains(str, secret) {
		t.Errorf("String() = %q", str)
	}
}

// TestConfig checks validation and that String shows no secrets.
func TestConfig(t *testing.T) {
	for _, cfg := range []gcs.Config{
		{},
		{Bucket: "b", Prefix: "/a"},
		{Bucket: "b", Prefix: "a/"},
		{Bucket: "b", Prefix: "a//b"},
		{Bucket: "b", Prefix: "a/../b"},
		{Bucket: "b", ChunkSize: -1},
		{Bucket: "b", Endpoint: "ftp://host"},
	} {
		if s, err := gcs.New(t.Context(), cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	cfg := gcs.Config{Bucket: "b", Prefix: "p/q", Endpoint: "http://user:pa55word@127.0.0.1:1/?key=k3y", KMSKeyName: "projects/x/keys/y"}
	s := openStore(t, cfg)
	for _, str := range []string{cfg.String(), s.String()} {
		if strings.Contains(str, "pa55word") || strings.Contains(str, "k3y") || !strings.Contains(str, "gs://b/p/q") {
			t.Errorf("String() = %q", str)
		}
	}
}

// TestListEarlyStopAndCancel pages through a listing with a small page and stops it
// from the callback and by cancelling.
func TestListEarlyStopAndCancel(t *testing.T) {
	endpoint, client, bucket := gcstest.NewInProcess(t)
	s := openStore(t, gcs.Config{Bucket: bucket, Endpoint: endpoint, HTTPClient: client})
	for i := range 30 {
		if err := s.Put(t.Context(), fmt.Sprintf("k/%02d", i), strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n atomic.Int32
	err := s.List(ctx, "k/", func(storage.ObjectInfo) error {
		if n.Add(1) == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n.Load() != 5 {
		t.Fatalf("List cancelled after 5: %v after %d calls", err, n.Load())
	}
}
