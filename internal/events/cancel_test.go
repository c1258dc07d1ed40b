package events

import (
	"context"
	"io"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// cancelingStore cancels the command's context (a SIGTERM) when the scan reads key.
type cancelingStore struct {
	storage.Store
	key    string
	cancel context.CancelFunc
}

func (c cancelingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if key == c.key {
		c.cancel()
		return nil, ctx.Err()
	}
	return c.Store.Get(ctx, key, off, length)
}

// A scan cut short by SIGINT or SIGTERM (the command's context cancelled) must
// end in an error, never in a complete, successful result.
func TestFindStoppedByASignalIsAnErrorNotACompleteScan(t *testing.T) {
	st := mem.New()
	testRepoOn(t, st, testSegments(t))
	f, _ := wal.Parse("000000010000000000000007")
	silent := 0
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		rp := repo.New(cancelingStore{st, repo.WALKey(f), cancel}, repo.Options{})
		res, err := Find(ctx, rp, Options{MinRows: 50})
		if err == nil {
			silent++
			if silent == 1 {
				t.Logf("nil error after cancel: %d segments, problems %q, %d events", res.Segments, res.Problems, len(res.Events))
			}
		}
	}
	if silent > 0 {
		t.Fatalf("%d of 50 cancelled scans returned no error", silent)
	}
}
