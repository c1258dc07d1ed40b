package walsum_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/wal/waldumptest"
	"github.com/pgb-project/pgb/internal/walsum"
)

// The segments of internal/wal/testdata/pg15 (1 MiB each): 6 ends with a switch, a
// 1.5 MiB logical message starts in 7 and ends in 8, 8 holds the last commits, the
// restore point "the end" and a switch.
const segSize = 1 << 20

var names = []string{"000000010000000000000006", "000000010000000000000007", "000000010000000000000008"}

func testdata(t testing.TB) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, n := range names {
		m[n] = waldumptest.Unzstd(t, filepath.Join("..", "wal", "testdata", "pg15", n+".zst"))
	}
	return m
}

func file(t testing.TB, name string) wal.File {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// nextFrom yields the given segments in turn, then ErrNoMore.
func nextFrom(segs ...[]byte) walsum.Next {
	return func() (io.Reader, error) {
		if len(segs) == 0 {
			return nil, walsum.ErrNoMore
		}
		s := segs[0]
		segs = segs[1:]
		return bytes.NewReader(s), nil
	}
}

func TestSummariesAgreeWithPgWaldump(t *testing.T) {
	segs := testdata(t)
	entries, err := waldumptest.Parse(string(waldumptest.Unzstd(t, filepath.Join("..", "wal", "testdata", "pg15", "pg_waldump.txt.zst"))))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		var rest [][]byte
		for _, m := range names[i+1:] {
			rest = append(rest, segs[m])
		}
		s, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(segs[n]), nextFrom(rest...))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		start := wal.LSN(uint64(6+i) * segSize)
		var want walsum.Summary
		var lastCommit wal.LSN
		var points []string
		for _, e := range entries {
			if e.LSN < start || e.LSN >= start+segSize {
				continue
			}
			want.Records++
			if want.FirstLSN == 0 {
				want.FirstLSN = e.LSN
			}
			want.LastLSN = e.LSN
			switch {
			case strings.HasPrefix(e.Desc, "COMMIT"):
				want.Commits++
				lastCommit = e.LSN
			case strings.HasPrefix(e.Desc, "ABORT"):
				want.Aborts++
			case strings.HasPrefix(e.Desc, "RESTORE_POINT "):
				points = append(points, strings.TrimSpace(strings.TrimPrefix(e.Desc, "RESTORE_POINT ")))
			case strings.HasPrefix(e.Desc, "SWITCH"):
				want.SegmentSwitch = true
			}
		}
		if s.Open || s.Records != want.Records || s.FirstLSN != want.FirstLSN || s.LastLSN != want.LastLSN ||
			s.Commits != want.Commits || s.Aborts != want.Aborts || s.SegmentSwitch != want.SegmentSwitch {
			t.Errorf("%s: summary %+v, pg_waldump says %+v", n, s, want)
		}
		if (lastCommit == 0) != (s.LastCommit == nil) || (s.LastCommit != nil && s.LastCommit.LSN != lastCommit) {
			t.Errorf("%s: last commit %+v, pg_waldump says at %s", n, s.LastCommit, lastCommit)
		}
		var got []string
		for _, p := range s.RestorePoints {
			got = append(got, p.Name)
		}
		if strings.Join(got, ",") != strings.Join(points, ",") {
			t.Errorf("%s: restore points %q, pg_waldump says %q", n, got, points)
		}
		if s.SystemID == 0 || s.PGMajor != 15 {
			t.Errorf("%s: system id %d, major %d", n, s.SystemID, s.PGMajor)
		}
	}
}

func TestLastSegmentSummaryKnowsTheLastCommit(t *testing.T) {
	segs := testdata(t)
	n := names[2]
	s, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(segs[n]), nextFrom())
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 12, 2, 1, 53, 3, 93490000, time.UTC)
	if s.LastCommit == nil || s.LastCommit.Xid != 736 || !s.LastCommit.Time.Equal(want) || s.LastCommit.LSN != 0x8D6520 {
		t.Fatalf("last commit %+v, want xid 736 at %s, LSN 0/8D6520", s.LastCommit, want)
	}
	if s.MinXid != 735 || s.MaxXid != 736 || len(s.RestorePoints) != 1 || s.RestorePoints[0].Name != "the end" {
		t.Fatalf("summary %+v", s)
	}
}

// A record that continues into a segment that is not archived is left out, and the
// summary is open: the commits before it count, nothing after.
func TestSummaryOfASegmentWhoseLastRecordIsNotWhollyArchivedIsOpen(t *testing.T) {
	segs := testdata(t)
	n := names[1]
	s, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(segs[n]), nextFrom())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Open || s.LastCommit == nil || s.LastCommit.Xid != 734 || s.LastLSN != 0x7546D8 {
		t.Fatalf("summary %+v: want open, last commit 734 the last record", s)
	}
	if _, err := walsum.Encode(s); err == nil {
		t.Fatal("an open summary was encoded for the cache")
	}
	closed, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(segs[n]), nextFrom(segs[names[2]]))
	if err != nil {
		t.Fatal(err)
	}
	if closed.Open || closed.Records != s.Records+1 || closed.EndLSN <= wal.LSN(8*segSize) {
		t.Fatalf("with the next segment: %+v", closed)
	}
}

func TestSummaryOfCorruptSegmentIsAnError(t *testing.T) {
	segs := testdata(t)
	n := names[2]
	b := bytes.Clone(segs[n])
	b[0xD6520+30] ^= 0xFF // inside the commit record of xid 736
	_, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(b), nextFrom())
	if !errors.Is(err, wal.ErrCorruptRecord) {
		t.Fatalf("got %v, want ErrCorruptRecord", err)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	segs := testdata(t)
	n := names[2]
	s, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(segs[n]), nextFrom())
	if err != nil {
		t.Fatal(err)
	}
	js, err := walsum.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := walsum.Decode(file(t, n), segSize, js)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastCommit.Xid != 736 || got.SystemID != s.SystemID || got.Records != s.Records {
		t.Fatalf("decoded %+v from %s", got, js)
	}
	for _, bad := range []string{
		strings.Replace(string(js), `"version":1`, `"version":2`, 1),
		strings.Replace(string(js), n, names[1], 1),
		`{}`, `[`, `null`,
	} {
		if _, err := walsum.Decode(file(t, n), segSize, []byte(bad)); !errors.Is(err, walsum.ErrBadSummary) {
			t.Errorf("Decode(%.60q…) = %v, want ErrBadSummary", bad, err)
		}
	}
}

func archive(t *testing.T, rp *repo.Repo, segs map[string][]byte, which ...string) {
	t.Helper()
	for _, n := range which {
		if _, err := rp.PutWAL(context.Background(), file(t, n), bytes.NewReader(segs[n]), int64(len(segs[n]))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCacheStoresClosedSummariesOnly(t *testing.T) {
	ctx := context.Background()
	segs := testdata(t)
	st := mem.New()
	rp := repo.New(st, repo.Options{})
	archive(t, rp, segs, names[0], names[1])
	c := walsum.NewCache(rp, segSize, nil)
	s7, err := c.Get(ctx, file(t, names[1]))
	if err != nil || !s7.Open {
		t.Fatalf("%+v %v: want an open summary", s7, err)
	}
	if _, err := rp.ReadWALSummary(ctx, file(t, names[1])); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("an open summary was cached: %v", err)
	}
	archive(t, rp, segs, names[2])
	for range 2 {
		s7, err = c.Get(ctx, file(t, names[1]))
		if err != nil || s7.Open {
			t.Fatalf("%+v %v: want a closed summary", s7, err)
		}
	}
	if c.Stats.Computed != 2 || c.Stats.Cached != 1 || c.Stats.Stored != 1 {
		t.Fatalf("stats %+v: want computed twice (open, then closed), cached once", c.Stats)
	}
}

func TestCacheRecomputesDamagedSummaries(t *testing.T) {
	ctx := context.Background()
	segs := testdata(t)
	st := mem.New()
	rp := repo.New(st, repo.Options{})
	archive(t, rp, segs, names[2])
	f := file(t, names[2])
	for _, bad := range [][]byte{[]byte("not sealed"), nil} {
		if bad == nil {
			// A sealed document of a future version.
			if err := rp.DeleteWALSummary(ctx, f); err != nil {
				t.Fatal(err)
			}
			if err := rp.PutWALSummary(ctx, f, []byte(`{"version":99}`)); err != nil {
				t.Fatal(err)
			}
		} else if err := st.Put(ctx, repo.WALSummaryKey(f), bytes.NewReader(bad), storage.PutOptions{Size: int64(len(bad))}); err != nil {
			t.Fatal(err)
		}
		c := walsum.NewCache(rp, segSize, nil)
		s, err := c.Get(ctx, f)
		if err != nil || s.LastCommit == nil || s.LastCommit.Xid != 736 || c.Stats.Computed != 1 || c.Stats.Stored != 1 {
			t.Fatalf("%+v %v %+v", s, err, c.Stats)
		}
		again := walsum.NewCache(rp, segSize, nil)
		if _, err := again.Get(ctx, f); err != nil || again.Stats.Cached != 1 {
			t.Fatalf("the recomputed summary was not cached: %v %+v", err, again.Stats)
		}
	}
}

func TestDeleteWALDeletesTheSummary(t *testing.T) {
	ctx := context.Background()
	segs := testdata(t)
	rp := repo.New(mem.New(), repo.Options{})
	archive(t, rp, segs, names[2])
	f := file(t, names[2])
	if _, err := walsum.NewCache(rp, segSize, nil).Get(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := rp.DeleteWAL(ctx, repo.WALObject{File: f}); err != nil {
		t.Fatal(err)
	}
	if _, err := rp.ReadWALSummary(ctx, f); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("summary after DeleteWAL: %v", err)
	}
}

func TestDeleteWALsDeletesTheSummaries(t *testing.T) {
	ctx := context.Background()
	segs := testdata(t)
	rp := repo.New(mem.New(), repo.Options{})
	for _, n := range names {
		archive(t, rp, segs, n)
	}
	var objs []repo.WALObject
	for _, n := range names[:2] {
		f := file(t, n)
		if _, err := walsum.NewCache(rp, segSize, nil).Get(ctx, f); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, repo.WALObject{File: f})
	}
	if err := rp.DeleteWALs(ctx, objs); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, err := rp.ReadWALSummary(ctx, o.File); !errors.Is(err, storage.ErrNotExist) {
			t.Fatalf("summary of %s after DeleteWALs: %v", o.Name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	segs := testdata(f)
	for _, n := range names {
		s, err := walsum.Compute(file(f, n), segSize, bytes.NewReader(segs[n]), nextFrom())
		if err != nil {
			f.Fatal(err)
		}
		s.Open = false
		js, _ := walsum.Encode(s)
		f.Add(js)
	}
	f.Add([]byte(`{"version":1,"segment":"000000010000000000000008","segment_size":1048576,"records":1,"first_lsn":"0/0"}`))
	sf := file(f, names[2])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := walsum.Decode(sf, segSize, b)
		if err != nil {
			if !errors.Is(err, walsum.ErrBadSummary) {
				t.Fatalf("error %v does not wrap ErrBadSummary", err)
			}
			return
		}
		if s.Records > 0 && (s.FirstLSN < 8*segSize || s.LastLSN >= 9*segSize) {
			t.Fatalf("accepted %+v", s)
		}
	})
}
