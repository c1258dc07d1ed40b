package status

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// counting counts the requests a store would make: a List is one request per page
// of pageSize keys (S3 ListObjectsV2 and GCS both return up to 1000 per page).
type counting struct {
	storage.Store
	mu                        sync.Mutex
	lists, pages, gets, stats int
}

const pageSize = 1000

// drillReads are the drill records bigRepo makes status read: the newest (failed)
// and the 5 newest successful ones.
const drillReads = 6

func (c *counting) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	n := 0
	err := c.Store.List(ctx, prefix, func(o storage.ObjectInfo) error { n++; return fn(o) })
	c.mu.Lock()
	c.lists++
	c.pages += max(1, (n+pageSize-1)/pageSize)
	c.mu.Unlock()
	return err
}

func (c *counting) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.gets++
	c.mu.Unlock()
	return c.Store.Get(ctx, key, off, length)
}

func (c *counting) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	c.mu.Lock()
	c.stats++
	c.mu.Unlock()
	return c.Store.Stat(ctx, key)
}

// bigRepo fills st with segments WAL segments (stand-ins: only listed) of timeline 1,
// each with its cached summary (a commit a minute), and backups backups spread over them.
func bigRepo(t testing.TB, st storage.Store, segments, backups int) {
	t.Helper()
	ctx := context.Background()
	rp := repo.New(st, repo.Options{})
	if _, err := rp.EnsureIdentity(ctx, repo.Identity{Format: 1, SystemID: 7440292914373421110, PGVersion: 15, Created: t0}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < segments; i++ {
		n := uint64(i + 2)
		f, err := wal.Parse(wal.SegmentFileName(1, n, segSize))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.PutWAL(ctx, f, strings.NewReader("wal"), 3); err != nil {
			t.Fatal(err)
		}
		start := wal.LSN(n * segSize)
		c := &walsum.Commit{Xid: uint32(100 * n), Time: t0.Add(time.Duration(n) * time.Minute), LSN: start + 0x1000}
		js, err := walsum.Encode(&walsum.Summary{Version: walsum.Version, Segment: f.Name, SegSize: segSize, SystemID: 7440292914373421110, Records: 2,
			FirstLSN: start + 0x28, LastLSN: start + 0x2000, EndLSN: start + 0x2100, Commits: 1, FirstCommit: c, LastCommit: c, MinXid: c.Xid, MaxXid: c.Xid})
		if err != nil {
			t.Fatal(err)
		}
		if err := rp.PutWALSummary(ctx, f, js); err != nil {
			t.Fatal(err)
		}
	}
	// 40 nightly drills, every third failed, the newest failed: status reads the
	// newest and the 5 newest successful ones.
	for i := 0; i < 40; i++ {
		fin := t0.Add(time.Duration(i-40) * time.Hour) // before now: later ones are passed over as dated in the future
		d := repo.DrillRecord{Started: fin.Add(-time.Minute), Finished: fin, OK: i%3 != 0 && i != 39, Backup: "20260101T000000Z",
			RTO: repo.DrillRTO{RestoreSeconds: 1, ReplaySeconds: 2, TotalSeconds: 3, BytesRestored: 100, BytesReplayed: 200}}
		if !d.OK {
			d.Error = "drill failed"
		}
		if _, err := rp.PutDrill(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < backups; i++ {
		n := uint64(2 + i*segments/backups)
		at := t0.Add(time.Duration(n) * time.Minute)
		start := wal.LSN(n * segSize)
		m := &repo.Manifest{Summary: repo.Summary{Name: at.Format("20060102T150405Z"), Timeline: 1, StartLSN: start + 0x28, StopLSN: start + 0x800,
			StartTime: at, StopTime: at.Add(time.Second), NextXID: 100*n + 1, WALSegSize: segSize}}
		if err := rp.PutBackup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTree writes every object of src to the directory dir, as the filesystem store
// lays them out (without its fsyncs: this only builds a fixture).
func copyTree(t testing.TB, src storage.Store, dir string) {
	t.Helper()
	ctx := context.Background()
	err := src.List(ctx, "", func(o storage.ObjectInfo) error {
		rc, err := src.Get(ctx, o.Key, 0, -1)
		if err != nil {
			return err
		}
		defer func() { _ = rc.Close() }()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(o.Key))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The requests status makes do not grow with the number of segments beyond the pages
// of one listing of wal/.
func TestStatusRequestsAreBounded(t *testing.T) {
	for _, segments := range []int{500, 2500} {
		st := mem.New()
		bigRepo(t, st, segments, 30)
		c := &counting{Store: st}
		r, err := Gather(context.Background(), repo.New(c, repo.Options{}), Options{Now: time.Now(), Drills: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Windows) != 1 || r.Summaries.Read != 1 {
			t.Fatalf("%d segments: windows %d, summaries %+v", segments, len(r.Windows), r.Summaries)
		}
		walPages := (segments + pageSize - 1) / pageSize
		// LIST: wal/ (walPages pages), backups/ twice (backups and permanent marks),
		// restore-points/, drills/, verifies/, gaps/, encryption/. GET: pgb.json, one summary per
		// backup, the WAL summaries read, the newest drill and the 5 newest successful ones
		// (no verify records here).
		wantPages, wantGets := walPages+7, 1+30+r.Summaries.Read+drillReads
		t.Logf("%d segments, 30 backups: %d LIST calls (%d pages), %d GET, %d HEAD", segments, c.lists, c.pages, c.gets, c.stats)
		if c.pages != wantPages || c.gets != wantGets || c.stats != 0 {
			t.Errorf("%d segments: %d list pages, %d gets, %d stats; want %d pages, %d gets, 0 stats", segments, c.pages, c.gets, c.stats, wantPages, wantGets)
		}
	}
}

// BenchmarkStatusOnTenThousandSegments is pgb status on a filesystem repository with
// 10,000 WAL segments and 30 backups, summaries cached.
func BenchmarkStatusOnTenThousandSegments(b *testing.B) {
	st := mem.New()
	bigRepo(b, st, 10000, 30)
	dir := b.TempDir()
	copyTree(b, st, dir)
	fsst, err := fs.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	rp := repo.New(fsst, repo.Options{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Gather(context.Background(), rp, Options{Now: time.Now(), Drills: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Windows) != 1 || r.Summaries.Computed != 0 {
			b.Fatalf("%+v", r.Summaries)
		}
	}
}

// status with a target lists wal/ once and reads each history file and WAL summary
// once: restore's check runs on what status gathered, not on a listing of its own.
func TestStatusOfATargetListsTheArchiveOnce(t *testing.T) {
	st := mem.New()
	bigRepo(t, st, 1500, 30)
	c := &counting{Store: st}
	at := t0.Add(800 * time.Minute)
	r, err := Gather(context.Background(), repo.New(c, repo.Options{}), Options{Now: time.Now(), Drills: true, Target: &restore.Target{Kind: restore.ToTime, Time: at, Timeline: "latest", Action: "pause"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Target == nil || !r.Target.Reachable {
		t.Fatalf("target %+v", r.Target)
	}
	// LIST: wal/ (2 pages), backups/ twice, restore-points/, drills/, verifies/, gaps/, encryption/.
	// GET: pgb.json, a summary per backup, the WAL summaries the window needs, read once, the drills.
	wantPages, wantGets := 2+7, 1+30+r.Summaries.Read+drillReads
	t.Logf("%d LIST calls (%d pages), %d GET, %d HEAD", c.lists, c.pages, c.gets, c.stats)
	if c.pages != wantPages || c.gets != wantGets || c.stats != 0 {
		t.Errorf("%d list pages, %d gets, %d stats; want %d pages, %d gets, 0 stats", c.pages, c.gets, c.stats, wantPages, wantGets)
	}
}
