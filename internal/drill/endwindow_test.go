package drill

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// putSegment archives a stand-in 16 MiB segment of timeline 1 with its cached summary:
// one commit half way through it.
func putSegment(t *testing.T, st storage.Store, n uint64) {
	t.Helper()
	ctx := context.Background()
	const size = 16 << 20
	name := wal.SegmentFileName(1, n, size)
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := compress.New("zstd", 0)
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, codec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("wal")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, repo.WALKey(f), &buf, storage.PutOptions{Size: int64(buf.Len())}); err != nil {
		t.Fatal(err)
	}
	start := wal.LSN(n * size)
	c := &walsum.Commit{Xid: uint32(400 * n), Time: time.Date(2026, 11, 23, 10, int(n), 0, 0, time.UTC), LSN: start + 0x800000}
	s := &walsum.Summary{Version: walsum.Version, Segment: name, SegSize: size, SystemID: 7440292914373421110, Records: 3,
		FirstLSN: start + 0x28, LastLSN: start + 0xFFF000, EndLSN: start + 0xFFF100,
		Commits: 1, FirstCommit: c, LastCommit: c, MinXid: c.Xid, MaxXid: c.Xid}
	js, err := walsum.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.New(st, repo.Options{}).PutWALSummary(ctx, f, js); err != nil {
		t.Fatal(err)
	}
}

// putDroppedRepo is a repository with segments 02..04 archived, 05..06 dropped by
// wal-push-queue-max, and backup b in 02.
func putDroppedRepo(t *testing.T) (storage.Store, *repo.Repo) {
	t.Helper()
	ctx := context.Background()
	st := mem.New()
	for n := uint64(2); n <= 4; n++ {
		putSegment(t, st, n)
	}
	rp := repo.New(st, repo.Options{})
	dropped := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	if _, err := rp.PutGap(ctx, repo.GapRecord{Timeline: 1, First: "000000010000000000000005", Last: "000000010000000000000006",
		SegmentSize: 16 << 20, Segments: 2, Reason: repo.GapReasonQueueMax, DroppedFrom: dropped, DroppedTo: dropped, BacklogBytes: 5 << 30, LimitBytes: 4 << 30}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 10, 2, 30, 0, time.UTC)
	m := &repo.Manifest{Summary: repo.Summary{Name: "b", Timeline: 1, StartLSN: 0x2000028, StopLSN: 0x2000100, NextXID: 1000,
		StartTime: at.Add(-time.Minute), StopTime: at, WALSegSize: 16 << 20}}
	if err := rp.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	return st, rp
}

// A drill to the end of the archive across dropped WAL with WAL archived after it is a
// failed drill (not a refused request), found before anything is restored, with what
// restore says: the drop, its cause, and the WAL beyond that recovery would not replay.
func TestDrillToTheEndAcrossDroppedWALFails(t *testing.T) {
	st, rp := putDroppedRepo(t)
	putSegment(t, st, 7)
	putSegment(t, st, 8)
	d := &drill{rp: rp, rep: &Report{}, opt: Options{Target: &restore.Target{Kind: restore.ToEnd, Timeline: "latest"}, Log: slog.New(slog.DiscardHandler)}}
	err := d.run(context.Background())
	if !errors.Is(err, ErrFailed) || !errors.Is(err, restore.ErrArchiveCut) {
		t.Fatalf("drill = %v, want a failed drill: recovery would promote before the dropped WAL", err)
	}
	for _, w := range []string{"dropped 000000010000000000000005 to 000000010000000000000006", "WAL dropped by wal-push-queue-max",
		"never replaying the archived 000000010000000000000007 to 000000010000000000000008"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
}

// A drill to the end of the archive from a backup whose window ends at WAL dropped by
// wal-push-queue-max (nothing archived after it yet) fails before restoring, saying
// the segments were dropped, why, and what to do — not that they are "missing".
func TestDrillToTheEndNamesTheCauseOfDroppedWAL(t *testing.T) {
	ctx := context.Background()
	_, rp := putDroppedRepo(t)
	d := &drill{rp: rp, rep: &Report{}}
	_, err := d.endWindow(ctx, "b")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("endWindow = %v, want ErrFailed", err)
	}
	for _, w := range []string{"stops after 000000010000000000000004", "dropped 000000010000000000000005 to 000000010000000000000006",
		"WAL dropped by wal-push-queue-max on 2026-11-23T11:00:00Z", "take a new base backup"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "missing") {
		t.Errorf("dropped WAL called missing: %q", err)
	}
}
