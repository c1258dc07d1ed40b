package s3_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3"
)

// deleteCounter counts the DeleteObjects and DeleteObject requests that pass.
type deleteCounter struct {
	base          http.RoundTripper
	batch, single atomic.Int64
}

func (c *deleteCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req.Method == http.MethodPost && req.URL.Query().Has("delete"):
		c.batch.Add(1)
	case req.Method == http.MethodDelete:
		c.single.Add(1)
	}
	return c.base.RoundTrip(req)
}

func putMany(t *testing.T, st storage.Store, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("wal/%06d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan string)
	for range 16 {
		wg.Go(func() {
			for k := range work {
				if err := st.Put(t.Context(), k, strings.NewReader(k), storage.PutOptions{Size: int64(len(k))}); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return keys
}

// Deleting 2,500 objects takes 3 DeleteObjects requests (1000 keys at most in each)
// and no single deletes, with either checksum setting.
func TestDeleteAllOf2500ObjectsIsThreeRequests(t *testing.T) {
	for _, checksum := range []s3.ChecksumMode{s3.ChecksumWhenSupported, s3.ChecksumWhenRequired} {
		t.Run(fmt.Sprint(checksum), func(t *testing.T) {
			cfg := versityConfig(t)
			cfg.Checksum = checksum
			counter := &deleteCounter{}
			cfg.WrapTransport = func(base http.RoundTripper) http.RoundTripper { counter.base = base; return counter }
			st := newStore(t, cfg)
			ks := putMany(t, st, 2500)
			if err := st.Put(t.Context(), "kept", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
				t.Fatal(err)
			}
			if err := storage.DeleteAll(t.Context(), retry.New(st, retry.Config{}), ks); err != nil {
				t.Fatalf("DeleteAll: %v", err)
			}
			if b, s := counter.batch.Load(), counter.single.Load(); b != 3 || s != 0 {
				t.Fatalf("%d DeleteObjects and %d DeleteObject requests, want 3 and 0", b, s)
			}
			if got := keys(t, st, ""); len(got) != 1 || got[0] != "kept" {
				t.Fatalf("left after DeleteAll: %d keys, first %v", len(got), got[:min(len(got), 3)])
			}
		})
	}
}

// perKeyErrors answers every DeleteObjects request as the server did, plus an error
// entry for each object whose name ends with a key of codes.
type perKeyErrors struct {
	base  http.RoundTripper
	codes map[string]string // key suffix → S3 error code
}

func (p *perKeyErrors) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !req.URL.Query().Has("delete") {
		return p.base.RoundTrip(req)
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	resp, err := p.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	_ = resp.Body.Close()
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`)
	for suffix, code := range p.codes {
		for _, part := range strings.Split(string(body), "<Key>")[1:] {
			obj, _, _ := strings.Cut(part, "</Key>")
			if strings.HasSuffix(obj, suffix) {
				fmt.Fprintf(&b, "<Error><Key>%s</Key><Code>%s</Code><Message>injected</Message></Error>", obj, code)
			}
		}
	}
	b.WriteString(`</DeleteResult>`)
	resp.Body = io.NopCloser(strings.NewReader(b.String()))
	resp.ContentLength = int64(b.Len())
	resp.Header.Del("Content-Length")
	return resp, nil
}

// A DeleteObjects answer that names keys it could not delete fails the batch, naming
// them: a partial failure is never taken for success. NoSuchKey is a key already gone.
func TestDeleteBatchReportsTheKeysTheStoreCouldNotDelete(t *testing.T) {
	cfg := versityConfig(t)
	codes := &perKeyErrors{}
	cfg.WrapTransport = func(base http.RoundTripper) http.RoundTripper { codes.base = base; return codes }
	st := newStore(t, cfg)
	ks := putMany(t, st, 5)
	for _, tc := range []struct {
		codes     map[string]string
		failed    []string
		permanent bool
	}{
		{map[string]string{"000003": "AccessDenied"}, []string{"wal/000003"}, true},
		{map[string]string{"000001": "InternalError", "000004": "SlowDown"}, []string{"wal/000001", "wal/000004"}, false},
		{map[string]string{"000002": "NoSuchKey"}, nil, false},
	} {
		codes.codes = tc.codes
		err := st.DeleteBatch(t.Context(), ks)
		if tc.failed == nil {
			if err != nil {
				t.Fatalf("codes %v: %v", tc.codes, err)
			}
			continue
		}
		var be *storage.BatchError
		if !errors.As(err, &be) || len(be.Failed) != len(tc.failed) {
			t.Fatalf("codes %v: error %v, want a BatchError for %v", tc.codes, err, tc.failed)
		}
		for _, k := range tc.failed {
			if be.Failed[k] == nil || !strings.Contains(err.Error(), tc.failed[0]) {
				t.Fatalf("codes %v: error %v does not name %s", tc.codes, err, k)
			}
		}
		if retry.Retryable(err) == tc.permanent {
			t.Fatalf("codes %v: Retryable(%v) = %v", tc.codes, err, !tc.permanent)
		}
	}
}
