package s3_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// partCounter records the part numbers of the UploadPart requests that pass through.
type partCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	max  int
	n    int
}

func (p *partCounter) wrap(base http.RoundTripper) http.RoundTripper { p.base = base; return p }

func (p *partCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") {
		num, _ := strconv.Atoi(req.URL.Query().Get("partNumber"))
		p.mu.Lock()
		p.n++
		p.max = max(p.max, num)
		p.mu.Unlock()
	}
	return p.base.RoundTrip(req)
}

// A store that allows only a few parts per upload still takes a streamed object that
// would need many more parts of the configured size: the part size grows.
func TestStreamedUploadStaysWithinMaxParts(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64 // the size hint Put is given
	}{
		{"unknown size", -1},
		{"known size", 8 * s3.MinPartSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := goFakeConfig(t)
			cfg.MaxParts = 4
			pc := &partCounter{}
			cfg.WrapTransport = pc.wrap
			st := newStore(t, cfg)
			data := pattern(11, 8*s3.MinPartSize)      // 8 parts at the configured 5 MiB
			r := io.MultiReader(bytes.NewReader(data)) // no Seek, no Len: a pipe
			if err := st.Put(t.Context(), "big", r, storage.PutOptions{Size: tc.size}); err != nil {
				t.Fatalf("Put of %d bytes with s3-max-parts 4 and 5 MiB parts: %v", len(data), err)
			}
			if got := readAll(t, st, "big"); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, not what was written", len(got))
			}
			if pc.max > cfg.MaxParts || pc.n > cfg.MaxParts {
				t.Fatalf("the server saw %d UploadPart requests, part numbers up to %d; want at most %d", pc.n, pc.max, cfg.MaxParts)
			}
		})
	}
}

// firstTryOfEachPart matches the first UploadPart request for each part number.
func firstTryOfEachPart() func(*http.Request) bool {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(r *http.Request) bool {
		if r.Method != http.MethodPut || !r.URL.Query().Has("partNumber") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		num := r.URL.Query().Get("partNumber")
		first := !seen[num]
		seen[num] = true
		return first
	}
}

// A transient UploadPart failure, after the SDK's own attempts, costs a retry of that
// part, not the upload: here the first attempt at every part fails.
func TestStreamedUploadRetriesFailedParts(t *testing.T) {
	for _, ft := range []*s3test.FaultyTransport{
		{Status: http.StatusServiceUnavailable},
		{Reset: true},
	} {
		t.Run("status="+strconv.Itoa(ft.Status), func(t *testing.T) {
			cfg := goFakeConfig(t)
			cfg.MaxAttempts = 1 // no SDK retries: every injected fault reaches the store
			cfg.Retry = retry.Policy{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }}
			ft.Match = firstTryOfEachPart()
			cfg.WrapTransport = ft.Wrap
			st := newStore(t, cfg)
			data := pattern(12, 6*s3.MinPartSize+123)
			if err := st.Put(t.Context(), "big", io.MultiReader(bytes.NewReader(data)), storage.PutOptions{Size: -1}); err != nil {
				t.Fatalf("Put with the first attempt at every part failing: %v", err)
			}
			if got := readAll(t, st, "big"); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, not what was written", len(got))
			}
			if parts := 7; ft.Faults() != parts {
				t.Fatalf("%d faults injected, want one for each of the %d parts", ft.Faults(), parts)
			}
			t.Logf("%d of %d UploadPart requests failed", ft.Faults(), ft.Requests())
		})
	}
}
