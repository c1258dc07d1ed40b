package status

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/open"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// httpCount counts the S3 requests that pass: LIST pages (ListObjectsV2), GETs, HEADs.
type httpCount struct {
	mu                 sync.Mutex
	on                 bool
	lists, gets, heads int
	base               http.RoundTripper
}

func (c *httpCount) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.on {
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
			c.lists++
		case r.Method == http.MethodGet:
			c.gets++
		case r.Method == http.MethodHead:
			c.heads++
		}
	}
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

// The same bound over real S3 requests (an in-process S3 server): the LIST pages of
// one listing of wal/ grow with the segments, nothing else does.
func TestStatusRequestsOnS3(t *testing.T) {
	if testing.Short() {
		t.Skip("fills an S3 bucket with 1,200 segments")
	}
	endpoint, bucket := s3test.NewGoFakeS3(t)
	cnt := &httpCount{}
	st, err := open.Open(t.Context(), "s3://"+bucket+"/repo", open.Options{
		Timeout: time.Minute, Retry: retry.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		WrapTransport: func(b http.RoundTripper) http.RoundTripper { cnt.base = b; return cnt },
		S3: config.S3{Endpoint: endpoint, Region: "us-east-1", ForcePathStyle: true, AccessKeyID: "a", SecretAccessKey: "s",
			PartSize: 5 << 20, Concurrency: 1, RequestTimeout: time.Minute, Conditional: "enforced", MaxParts: 10000, Checksum: "when-supported"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	const segments, backups = 1200, 30
	bigRepo(t, st, segments, backups)
	cnt.mu.Lock()
	cnt.on = true
	cnt.mu.Unlock()
	r, err := Gather(context.Background(), repo.New(st, repo.Options{}), Options{Now: time.Now(), Drills: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("S3, %d segments, %d backups: %d LIST pages, %d GET, %d HEAD", segments, backups, cnt.lists, cnt.gets, cnt.heads)
	// wal/: 2 pages of 1,000 keys; backups/ twice, restore-points/, drills/, verifies/, gaps/
	// and encryption/ once: 1 page each. pgb.json, a summary per backup, one WAL summary, the
	// drills read.
	if len(r.Windows) != 1 || cnt.lists != 2+7 || cnt.gets != 1+backups+1+drillReads || cnt.heads != 0 {
		t.Fatalf("%d LIST pages, %d GET, %d HEAD; windows %d", cnt.lists, cnt.gets, cnt.heads, len(r.Windows))
	}
}
