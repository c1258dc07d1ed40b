package retention

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// fill stores three backups (segments 2-3, 5-6, 8-9 of timeline 1, a day apart),
// segments 2..10 and a restore point in segment 3.
func fill(t *testing.T, r *repo.Repo) {
	t.Helper()
	ctx := context.Background()
	for _, b := range []Backup{backup("b1", 1, 2, 3, 1, false), backup("b2", 1, 5, 6, 2, false), backup("b3", 1, 8, 9, 3, false)} {
		s := *b.Summary
		s.StartWAL = wal.SegmentFileName(1, uint64(s.StartLSN)/seg, seg)
		s.StopWAL = wal.SegmentFileName(1, uint64(s.StopLSN)/seg, seg)
		w, err := r.CreatePart(ctx, s.Name, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte("tar"))
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m := &repo.Manifest{Summary: s, Parts: []repo.Part{{N: 1, Files: 0}}}
		if err := r.PutBackup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range segs(1, 2, 10) {
		if _, err := r.PutWAL(ctx, o.File, bytes.NewReader([]byte("wal")), 3); err != nil {
			t.Fatal(err)
		}
		// The body is a stand-in: its summary (no record begins in it) is cached.
		js, err := walsum.Encode(&walsum.Summary{Version: walsum.Version, Segment: o.Name, SegSize: seg, SystemID: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.PutWALSummary(ctx, o.File, js); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PutRestorePoint(ctx, repo.RestorePoint{Name: "old", LSN: 3 * seg, Timeline: 1}); err != nil {
		t.Fatal(err)
	}
}

func listWAL(t *testing.T, r *repo.Repo) []string {
	t.Helper()
	out := []string{}
	if err := r.ListWAL(context.Background(), func(o repo.WALObject) error { out = append(out, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func backupNames(t *testing.T, r *repo.Repo) []string {
	t.Helper()
	bs, damaged, err := r.ListBackups(context.Background())
	if err != nil || len(damaged) != 0 {
		t.Fatalf("ListBackups: %v, %v", damaged, err)
	}
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func TestDeleteDryRunChangesNothingAndConfirmDeletes(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := repo.New(st, repo.Options{})
	fill(t, r)
	opt := Options{Policy: Policy{RetainFull: 2}, Now: t0.Add(10 * 24 * time.Hour)}
	res, err := Delete(ctx, r, opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted || !reflect.DeepEqual(names(res.Delete), []string{"b1"}) || !reflect.DeepEqual(walNames(res.WAL), segNames(1, 2, 4)) {
		t.Fatalf("dry run: deleted %v, would delete %v and %v", res.Deleted, names(res.Delete), walNames(res.WAL))
	}
	if got := backupNames(t, r); len(got) != 3 || len(listWAL(t, r)) != 9 {
		t.Fatalf("the dry run changed the repository: %v", got)
	}
	opt.Confirm = true
	if _, err := Delete(ctx, r, opt); err != nil {
		t.Fatal(err)
	}
	if got := backupNames(t, r); !reflect.DeepEqual(got, []string{"b2", "b3"}) {
		t.Fatalf("backups left %v", got)
	}
	if got := listWAL(t, r); !reflect.DeepEqual(got, segNames(1, 5, 10)) {
		t.Fatalf("WAL left %v", got)
	}
	if rps, _ := r.ListRestorePoints(ctx); len(rps) != 0 {
		t.Fatalf("restore points left %v", rps)
	}
	if inc, _ := r.IncompleteBackups(ctx); len(inc) != 0 {
		t.Fatalf("left behind %+v", inc)
	}
}

// A delete killed at every step: the repository it leaves is one that listing and
// restore planning understand, and a rerun finishes the job.
func TestDeleteInterruptedAtEachStepIsFinishedByARerun(t *testing.T) {
	for _, batch := range []int{0, 2} { // one by one (fs), and in batches (S3, GCS)
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) { deleteInterruptedAtEachStep(t, batch) })
	}
}

func deleteInterruptedAtEachStep(t *testing.T, batch int) {
	ctx := context.Background()
	for skip := 0; skip < 12; skip++ {
		inner := mem.New()
		inner.Batch = batch
		r0 := repo.New(inner, repo.Options{})
		fill(t, r0)
		st := faulty.New(inner, faulty.Rule{Op: faulty.Delete, Skip: skip, Key: "backups/"}, faulty.Rule{Op: faulty.Delete, Skip: 0, Key: "wal/"})
		if skip >= 4 { // b1 has four objects: interrupt in the restore points and WAL instead
			st = faulty.New(inner, faulty.Rule{Op: faulty.Delete, Skip: skip - 4, Key: "wal/"})
		}
		r := repo.New(st, repo.Options{})
		opt := Options{Policy: Policy{RetainFull: 2}, Now: t0.Add(10 * 24 * time.Hour), Confirm: true}
		if _, err := Delete(ctx, r, opt); !errors.Is(err, faulty.ErrInjected) {
			if skip < 7 {
				t.Fatalf("skip %d: %v, want the injected failure", skip, err)
			}
		}
		// What the interrupted delete left is understood.
		if got := backupNames(t, r0); !reflect.DeepEqual(got, []string{"b2", "b3"}) && !reflect.DeepEqual(got, []string{"b1", "b2", "b3"}) {
			t.Fatalf("skip %d: backups %v", skip, got)
		}
		if _, _, err := restore.Plan(ctx, r0, slog.New(slog.DiscardHandler), "", nil); err != nil {
			t.Fatalf("skip %d: restore planning after an interrupted delete: %v", skip, err)
		}
		if _, err := Delete(ctx, r0, opt); err != nil {
			t.Fatalf("skip %d: rerun: %v", skip, err)
		}
		if got := backupNames(t, r0); !reflect.DeepEqual(got, []string{"b2", "b3"}) {
			t.Fatalf("skip %d: after the rerun backups %v", skip, got)
		}
		if got := listWAL(t, r0); !reflect.DeepEqual(got, segNames(1, 5, 10)) {
			t.Fatalf("skip %d: after the rerun WAL %v", skip, got)
		}
		var left []string
		_ = inner.List(ctx, "backups/b1/", func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil })
		if len(left) != 0 {
			t.Fatalf("skip %d: after the rerun b1 left %v", skip, left)
		}
	}
}

func TestDeleteKeepsAPermanentBackup(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	fill(t, r)
	if err := r.MarkPermanent(ctx, "b1", t0); err != nil {
		t.Fatal(err)
	}
	opt := Options{Policy: Policy{RetainFull: 1}, Now: t0.Add(10 * 24 * time.Hour), Confirm: true}
	if _, err := Delete(ctx, r, opt); err != nil {
		t.Fatal(err)
	}
	if got := backupNames(t, r); !reflect.DeepEqual(got, []string{"b1", "b3"}) {
		t.Fatalf("backups left %v", got)
	}
	if got := listWAL(t, r); !reflect.DeepEqual(got, append(segNames(1, 2, 3), segNames(1, 8, 10)...)) {
		t.Fatalf("WAL left %v", got)
	}
}

func TestGarbageRemovesOldLeftoversButNotBackupsOrRecentOnes(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := repo.New(st, repo.Options{})
	fill(t, r)
	// A backup that failed before its manifest: one part.
	w, err := r.CreatePart(ctx, "failed", 1)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("x"))
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	g, err := CollectGarbage(ctx, r, now, time.Hour, true, repo.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Backups) != 0 {
		t.Fatalf("a fresh leftover was collected: %+v", g.Backups)
	}
	g, err = CollectGarbage(ctx, r, now.Add(2*time.Hour), time.Hour, false, repo.LockOptions{})
	if err != nil || len(g.Backups) != 1 || g.Backups[0].Name != "failed" || g.Deleted {
		t.Fatalf("dry run: %+v, %v", g, err)
	}
	if _, err := CollectGarbage(ctx, r, now.Add(2*time.Hour), time.Hour, true, repo.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	if inc, _ := r.IncompleteBackups(ctx); len(inc) != 0 {
		t.Fatalf("left %+v", inc)
	}
	if got := backupNames(t, r); len(got) != 3 {
		t.Fatalf("complete backups touched: %v", got)
	}
}

func TestGarbageRemovesOldSummariesWhoseSegmentIsGone(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	kept, gone := segs(1, 5, 5)[0].File, segs(1, 6, 6)[0].File
	if _, err := r.PutWAL(ctx, kept, bytes.NewReader([]byte("wal")), 3); err != nil {
		t.Fatal(err)
	}
	for _, f := range []wal.File{kept, gone} {
		if err := r.PutWALSummary(ctx, f, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if g, err := CollectGarbage(ctx, r, now, time.Hour, true, repo.LockOptions{}); err != nil || len(g.Summaries) != 0 {
		t.Fatalf("fresh summaries: %+v, %v", g.Summaries, err)
	}
	g, err := CollectGarbage(ctx, r, now.Add(2*time.Hour), time.Hour, true, repo.LockOptions{})
	if err != nil || len(g.Summaries) != 1 || g.Summaries[0].Key != repo.WALSummaryKey(gone) {
		t.Fatalf("collected %+v, %v; want the summary of %s only", g.Summaries, err, gone.Name)
	}
	if _, err := r.ReadWALSummary(ctx, gone); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("the orphan summary is still there: %v", err)
	}
	if _, err := r.ReadWALSummary(ctx, kept); err != nil {
		t.Fatalf("the summary of an archived segment was removed: %v", err)
	}
}

func TestDeleteRefusesWhileABackupRuns(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	fill(t, r)
	lock, err := r.AcquireBackupLock(ctx, "backup-push", repo.LockOptions{Host: repo.Host{Name: "other-host"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Release(ctx) }()
	_, err = Delete(ctx, r, Options{Policy: Policy{RetainFull: 1}, Now: t0, Confirm: true})
	if !errors.Is(err, repo.ErrLocked) {
		t.Fatalf("delete during a backup: %v, want ErrLocked", err)
	}
	if got := backupNames(t, r); len(got) != 3 {
		t.Fatalf("deleted during a backup: %v", got)
	}
}

// walRepo stores one backup at segments 2502-2503 of timeline 1 and segments 2..2503:
// a policy that keeps the backup deletes the 2,500 segments before it.
func walRepo(t *testing.T, st storage.Store) *repo.Repo {
	t.Helper()
	ctx := context.Background()
	r := repo.New(st, repo.Options{})
	b := backup("b1", 1, 2502, 2503, 1, false)
	s := *b.Summary
	s.StartWAL = wal.SegmentFileName(1, 2502, seg)
	s.StopWAL = wal.SegmentFileName(1, 2503, seg)
	if err := r.PutBackup(ctx, &repo.Manifest{Summary: s}); err != nil {
		t.Fatal(err)
	}
	for _, o := range segs(1, 2, 2503) {
		if _, err := r.PutWAL(ctx, o.File, bytes.NewReader([]byte("wal")), 3); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// On a store that deletes in batches of 1000 keys (S3's DeleteObjects), 2,500 WAL
// segments and their cached summaries go in 5 requests, oldest first: a failure in the second batch leaves the
// first batch deleted and the third untouched, and a rerun finishes.
func TestDeleteRemovesWALOldestFirstInBatches(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	inner.Batch = 1000
	r := walRepo(t, inner)
	opt := Options{Policy: Policy{RetainFull: 1}, Now: t0.Add(10 * 24 * time.Hour), Confirm: true}
	res, err := Delete(ctx, r, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.WAL) != 2500 || inner.Batches() != 5 {
		t.Fatalf("deleted %d WAL files in %d batches, want 2500 (and their summaries) in 5", len(res.WAL), inner.Batches())
	}
	if got := listWAL(t, r); !reflect.DeepEqual(got, segNames(1, 2502, 2503)) {
		t.Fatalf("WAL left %v", got)
	}

	inner = mem.New()
	inner.Batch = 1000
	walRepo(t, inner)
	failing := repo.New(faulty.New(inner, faulty.Rule{Op: faulty.Delete, Key: "wal/", Skip: 1500}), repo.Options{})
	if _, err := Delete(ctx, failing, opt); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("delete failing at the 1501st segment: %v", err)
	}
	r = repo.New(inner, repo.Options{})
	if got := listWAL(t, r); !reflect.DeepEqual(got, segNames(1, 1502, 2503)) {
		t.Fatalf("after a failure in the second batch, WAL left from %v to %v, want from %s", got[0], got[len(got)-1], segNames(1, 1502, 1502)[0])
	}
	if _, err := Delete(ctx, r, opt); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if got := listWAL(t, r); !reflect.DeepEqual(got, segNames(1, 2502, 2503)) {
		t.Fatalf("WAL left after the rerun %v", got)
	}
}

// A backup-push killed mid-part on a filesystem repository leaves a temp file in a
// directory of its own, which nothing writes again: delete --garbage removes it and
// the directory (the kill test's long run filled gigabytes with them); the same for a
// wal-push's in an old WAL directory.
func TestGarbageRemovesTheTempFilesOfKilledBackups(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st, repo.Options{})
	dir := filepath.Join(root, "backups", "20261203T035758Z")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".tmp-660862890"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	// A wal-push killed in a timeline directory it never writes again (the next 4 GiB
	// of WAL go to the next one) leaves its temp file there for good too.
	walDir := filepath.Join(root, "wal", "0000000100000007")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(walDir, ".tmp-17"), make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if g, err := CollectGarbage(ctx, r, now, time.Hour, true, repo.LockOptions{}); err != nil || g.TempFiles != 0 {
		t.Fatalf("a young temp file: %+v, %v", g, err)
	}
	g, err := CollectGarbage(ctx, r, now.Add(2*time.Hour), time.Hour, false, repo.LockOptions{})
	if err != nil || g.TempFiles != 2 || g.Bytes != 5096 || g.Deleted {
		t.Fatalf("dry run: %+v, %v", g, err)
	}
	if g, err = CollectGarbage(ctx, r, now.Add(2*time.Hour), time.Hour, true, repo.LockOptions{}); err != nil || g.TempFiles != 2 {
		t.Fatalf("collected %+v, %v", g, err)
	}
	for _, d := range []string{dir, walDir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("the killed writer's directory %s: %v, want it gone", d, err)
		}
	}
}

// refusingSweeper is a store that does not allow looking for unfinished uploads (an S3
// policy without the multipart permissions).
type refusingSweeper struct{ *fs.Store }

func (refusingSweeper) RemoveStaleTemps(context.Context, string, time.Time, bool) (int, int64, error) {
	return 0, 0, fmt.Errorf("%w: s3: list incomplete uploads: AccessDenied", storage.ErrUnsupported)
}

// A store that refuses the sweep of unfinished uploads does not stop delete --garbage:
// the rest is removed, and the report says what was skipped.
func TestGarbageGoesOnWhenTheStoreRefusesTheUploadSweep(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(refusingSweeper{st}, repo.Options{})
	g, err := CollectGarbage(ctx, r, time.Now(), time.Hour, true, repo.LockOptions{})
	if err != nil || !g.Deleted || !strings.Contains(g.TempsSkipped, "AccessDenied") {
		t.Fatalf("garbage with a refused sweep: %+v, %v", g, err)
	}
}

// pgb wal-stream's chunks go with the WAL before the window, and, by delete --garbage,
// where the segment was stored whole since; the chunks of the segment being streamed
// stay.
func TestDeleteRemovesStreamedChunksThatNothingReads(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	fill(t, r)
	chunks := func(n uint64) wal.File {
		f, err := wal.Parse(wal.SegmentFileName(1, n, seg))
		if err != nil {
			t.Fatal(err)
		}
		for _, start := range []int64{0, 100} {
			if err := r.PutWALChunk(ctx, f, start, []byte(strings.Repeat("w", 100))); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	before, old, kept, streaming := chunks(3), chunks(4), chunks(7), chunks(11)
	res, err := Delete(ctx, r, Options{Policy: Policy{RetainFull: 2}, Now: t0.Add(10 * 24 * time.Hour), Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Streamed) != 2 || res.Streamed[0].Name != before.Name || res.Streamed[1].Name != old.Name {
		t.Fatalf("delete planned the chunks of %+v, want segments 3 and 4", res.Streamed)
	}
	left := func() []string {
		ss, err := r.ListStreamedSegments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	if got, want := left(), []string{kept.Name, streaming.Name}; !reflect.DeepEqual(got, want) {
		t.Fatalf("chunks left of %v, want %v", got, want)
	}
	// Segment 7 is stored whole: its chunks are garbage; segment 11 is being streamed.
	g, err := CollectGarbage(ctx, r, time.Now().Add(time.Hour), time.Minute, true, repo.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Streamed) != 1 || g.Streamed[0].Name != kept.Name || g.Bytes == 0 {
		t.Fatalf("garbage: streamed %+v, %d bytes", g.Streamed, g.Bytes)
	}
	if got, want := left(), []string{streaming.Name}; !reflect.DeepEqual(got, want) {
		t.Fatalf("chunks left of %v, want %v", got, want)
	}
}
