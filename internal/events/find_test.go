package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// The committed test segments of internal/wal: three 1 MiB segments of a
// PostgreSQL 15 cluster in which DROP TABLE doomed commits (xid 733) and one
// transaction updates 50 rows of kept.
const testSegSize = 1 << 20

func testSegments(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "wal", "testdata", "pg15", "0*.zst"))
	if err != nil || len(paths) != 3 {
		t.Fatalf("test segments: %v %v", paths, err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if out[strings.TrimSuffix(filepath.Base(p), ".zst")], err = dec.DecodeAll(b, nil); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// testRepo holds the segments and one backup starting at the first, with
// relation names for kept (16384) and doomed (16391).
func testRepo(t *testing.T, segs map[string][]byte) *repo.Repo {
	t.Helper()
	return testRepoOn(t, mem.New(), segs)
}

func testRepoOn(t *testing.T, st storage.Store, segs map[string][]byte) *repo.Repo {
	t.Helper()
	ctx := context.Background()
	rp := repo.New(st, repo.Options{})
	names := make([]string, 0, len(segs))
	for n := range segs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := wal.Parse(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.PutWAL(ctx, f, bytes.NewReader(segs[n]), int64(len(segs[n]))); err != nil {
			t.Fatal(err)
		}
	}
	const name = "20261202T000000Z"
	if err := rp.PutRelMap(ctx, name, &repo.RelMap{Databases: []repo.RelDatabase{{OID: 5, Name: "postgres", Relations: []repo.Relation{
		{OID: 16384, Filenode: 16384, Schema: "public", Name: "kept", Kind: "r"},
		{OID: 16391, Filenode: 16391, Schema: "public", Name: "doomed", Kind: "r"},
	}}}}); err != nil {
		t.Fatal(err)
	}
	m := &repo.Manifest{Summary: repo.Summary{Name: name, WALSegSize: testSegSize, Timeline: 1, StartLSN: 0x600028, StopLSN: 0x600100,
		StartTime: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), StopTime: time.Date(2026, 12, 2, 0, 0, 1, 0, time.UTC)}}
	if err := rp.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	return rp
}

func TestFindNamesTheDropAndTheUpdatesOfTheCommittedSegments(t *testing.T) {
	res, err := Find(context.Background(), testRepo(t, testSegments(t)), Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 || res.Segments != 3 {
		t.Fatalf("problems %v, %d segments read", res.Problems, res.Segments)
	}
	var drop, rows *Event
	for i, e := range res.Events {
		switch e.Kind {
		case TableDropped:
			drop = &res.Events[i]
		case RowsChanged:
			rows = &res.Events[i]
		}
	}
	if drop == nil || drop.Xid != 733 || drop.Relations[0].QualifiedName() != "public.doomed" || drop.DatabaseName != "postgres" ||
		drop.NamesFrom != "20261202T000000Z" || drop.Restore != "pgb restore --pgdata DIR --target-lsn 0/7475D0 --target-exclusive --target-timeline 1" {
		t.Fatalf("drop event %+v", drop)
	}
	if rows == nil || rows.Relations[0].QualifiedName() != "public.kept" || rows.Updated != 50 {
		t.Fatalf("rows event %+v (events %+v)", rows, res.Events)
	}
	res, err = Find(context.Background(), testRepo(t, testSegments(t)), Options{MinRows: 50, Table: "public.kept"})
	if err != nil || len(res.Events) != 1 || res.Events[0].Kind != RowsChanged {
		t.Fatalf("--table public.kept: %+v %v", res, err)
	}
}

func TestFindSaysWhichWALItCouldNotRead(t *testing.T) {
	ctx := context.Background()
	segs := testSegments(t)
	delete(segs, "000000010000000000000007")
	res, err := Find(ctx, testRepo(t, segs), Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "000000010000000000000006 up to 000000010000000000000008 is not in the repository") {
		t.Fatalf("a missing segment must be a problem: %q", res.Problems)
	}

	segs = testSegments(t)
	seg := segs["000000010000000000000007"]
	seg[len(seg)/2] ^= 0xFF // inside a record: its CRC no longer holds
	res, err = Find(ctx, testRepo(t, segs), Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "000000010000000000000007") || !strings.Contains(res.Problems[0], "corrupt WAL") {
		t.Fatalf("a damaged segment must be a problem naming it: %q", res.Problems)
	}
	if res.Segments < 3 {
		t.Fatalf("the scan must go on after the damaged segment: %d segments", res.Segments)
	}

	if _, err := Find(ctx, repo.New(mem.New(), repo.Options{}), Options{}); !errors.Is(err, ErrNoBackups) {
		t.Fatalf("an empty repository: %v, want ErrNoBackups", err)
	}
}

// A timeline branched off after the DROP holds a copy of the WAL before its
// switch point: the DROP is listed once, on the timeline it happened on.
func TestFindListsAnEventOnceWhenATimelineBranchedAfterIt(t *testing.T) {
	ctx := context.Background()
	segs := testSegments(t)
	// Timeline 2 branched at 0/780000, after the DROP's commit (0/746…): its
	// first segments start with timeline 1's WAL, as after a promotion.
	segs["000000020000000000000007"] = segs["000000010000000000000007"]
	segs["000000020000000000000008"] = segs["000000010000000000000008"]
	rp := testRepo(t, segs)
	hist := []byte("1\t0/780000\tno recovery target specified\n")
	f, err := wal.Parse("00000002.history")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PutWAL(ctx, f, bytes.NewReader(hist), int64(len(hist))); err != nil {
		t.Fatal(err)
	}
	for _, tli := range []uint32{0, 2} {
		res, err := Find(ctx, rp, Options{MinRows: 50, Timeline: tli})
		if err != nil {
			t.Fatal(err)
		}
		var drops []Event
		for _, e := range res.Events {
			if e.Kind == TableDropped {
				drops = append(drops, e)
			}
		}
		if len(drops) != 1 || drops[0].Timeline != 1 || len(res.Problems) != 0 {
			t.Fatalf("--timeline %d: drops %+v, problems %v", tli, drops, res.Problems)
		}
	}
}

// After a promotion the parent timeline's last segment is archived only as
// .partial: the WAL before the switch point in it is read from the new
// timeline's first segment, and an event there is listed on the new timeline.
func TestFindListsAnEventInThePromotedTimelinesFirstSegment(t *testing.T) {
	ctx := context.Background()
	segs := testSegments(t)
	segs["000000020000000000000007"] = segs["000000010000000000000007"]
	segs["000000020000000000000008"] = segs["000000010000000000000008"]
	delete(segs, "000000010000000000000007")
	delete(segs, "000000010000000000000008")
	rp := testRepo(t, segs)
	hist := []byte("1\t0/780000\tno recovery target specified\n")
	f, err := wal.Parse("00000002.history")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PutWAL(ctx, f, bytes.NewReader(hist), int64(len(hist))); err != nil {
		t.Fatal(err)
	}
	res, err := Find(ctx, rp, Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	var drops []Event
	for _, e := range res.Events {
		if e.Kind == TableDropped {
			drops = append(drops, e)
		}
	}
	if len(drops) != 1 || drops[0].Timeline != 2 || !strings.HasSuffix(drops[0].Restore, "--target-timeline 2") {
		t.Fatalf("drops %+v, problems %v", drops, res.Problems)
	}
}

// vanishingStore loses one WAL object between the listing and the read, as a
// concurrent pgb delete would.
type vanishingStore struct {
	storage.Store
	key string
}

func (v vanishingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if key == v.key {
		return nil, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
	}
	return v.Store.Get(ctx, key, off, length)
}

func TestFindGoesOnWhenASegmentVanishesDuringTheScan(t *testing.T) {
	st := mem.New()
	testRepoOn(t, st, testSegments(t))
	f, err := wal.Parse("000000010000000000000007")
	if err != nil {
		t.Fatal(err)
	}
	rp := repo.New(vanishingStore{st, repo.WALKey(f)}, repo.Options{})
	res, err := Find(context.Background(), rp, Options{MinRows: 50})
	if err != nil {
		t.Fatalf("a vanished segment must not stop the scan: %v", err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "000000010000000000000007") {
		t.Fatalf("problems %q", res.Problems)
	}
}

// A damaged relation map is not a warning on the side with exit 0: the events
// it should name show files only, and the result says so.
func TestFindReportsADamagedRelationMap(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	testRepoOn(t, st, testSegments(t))
	if err := st.Delete(ctx, repo.RelMapKey("20261202T000000Z")); err != nil {
		t.Fatal(err)
	}
	junk := []byte("{not json")
	if err := st.Put(ctx, repo.RelMapKey("20261202T000000Z"), bytes.NewReader(junk), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := Find(ctx, repo.New(st, repo.Options{}), Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "20261202T000000Z") {
		t.Fatalf("problems %q, want one naming the backup whose relation map is damaged", res.Problems)
	}
}

// An event before the end of the oldest backup cannot be restored to (a
// backup is consistent only from its stop LSN): no restore command is
// printed for it, and it says why.
func TestFindMarksAnEventBeforeTheOldestBackupsEndNotRecoverable(t *testing.T) {
	ctx := context.Background()
	segs := testSegments(t)
	rp := repo.New(mem.New(), repo.Options{})
	for _, n := range []string{"000000010000000000000006", "000000010000000000000007", "000000010000000000000008"} {
		f, _ := wal.Parse(n)
		if _, err := rp.PutWAL(ctx, f, bytes.NewReader(segs[n]), int64(len(segs[n]))); err != nil {
			t.Fatal(err)
		}
	}
	// A backup from before the DROP (0/7475D0) to after it.
	m := &repo.Manifest{Summary: repo.Summary{Name: "20261202T000000Z", WALSegSize: testSegSize, Timeline: 1, StartLSN: 0x600028, StopLSN: 0x750000,
		StartTime: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), StopTime: time.Date(2026, 12, 2, 0, 0, 1, 0, time.UTC)}}
	if err := rp.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	res, err := Find(ctx, rp, Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Events {
		if e.Xid == 733 {
			if e.Restore != "" || !strings.Contains(e.NotRecoverable, "0/750000") {
				t.Fatalf("the DROP before the backup's end: restore %q, not recoverable %q", e.Restore, e.NotRecoverable)
			}
			return
		}
	}
	t.Fatalf("the DROP (xid 733) is not listed: %+v", res.Events)
}
