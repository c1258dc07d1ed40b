package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// putTestBackup stores a complete backup with one part.
func putTestBackup(t *testing.T, r *Repo, name string, stop wal.LSN) {
	t.Helper()
	ctx := context.Background()
	w, err := r.CreatePart(ctx, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("tar bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.PutBackup(ctx, testManifest(name, stop)); err != nil {
		t.Fatal(err)
	}
}

func TestMarkPermanentShowsInPermanentBackupsAndUnmarkLiftsIt(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := New(mem.New(), Options{})
	putTestBackup(t, r, "b1", 0x2000100)
	putTestBackup(t, r, "b2", 0x3000100)
	if err := r.MarkPermanent(ctx, "b1", now); err != nil {
		t.Fatal(err)
	}
	if err := r.MarkPermanent(ctx, "b1", now.Add(time.Hour)); err != nil {
		t.Fatalf("marking twice: %v", err)
	}
	if err := r.MarkPermanent(ctx, "nope", now); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("marking a missing backup: %v, want ErrNoBackup", err)
	}
	perm, err := r.PermanentBackups(ctx)
	if err != nil || !perm["b1"] || perm["b2"] || len(perm) != 1 {
		t.Fatalf("PermanentBackups = %v, %v", perm, err)
	}
	// The mark is not a backup document: listing is unchanged.
	bs, damaged, err := r.ListBackups(ctx)
	if err != nil || len(bs) != 2 || len(damaged) != 0 {
		t.Fatalf("ListBackups = %d, %v, %v", len(bs), damaged, err)
	}
	if err := r.DeleteBackup(ctx, "b1"); !errors.Is(err, ErrPermanent) {
		t.Fatalf("DeleteBackup of a permanent backup: %v, want ErrPermanent", err)
	}
	if err := r.UnmarkPermanent(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := r.UnmarkPermanent(ctx, "b1"); err != nil {
		t.Fatalf("unmarking twice: %v", err)
	}
	if perm, _ := r.PermanentBackups(ctx); len(perm) != 0 {
		t.Fatalf("after unmark: %v", perm)
	}
	if err := r.DeleteBackup(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteBackupRemovesEveryObject(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	putTestBackup(t, r, "b1", 0x2000100)
	putTestBackup(t, r, "b2", 0x3000100)
	if err := r.DeleteBackup(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	var left []string
	_ = st.List(ctx, BackupPrefix("b1"), func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil })
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	bs, _, _ := r.ListBackups(ctx)
	if len(bs) != 1 || bs[0].Name != "b2" {
		t.Fatalf("ListBackups after delete: %v", bs)
	}
	if err := r.DeleteBackup(ctx, "b1"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
}

// A delete killed after the manifest: the backup is gone for every reader, the rest
// is listed as an interrupted delete, and a second DeleteBackup finishes it.
func TestDeleteBackupInterruptedAfterManifestIsFinishedByARerun(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	st := faulty.New(inner, faulty.Rule{Op: faulty.Delete, Skip: 1})
	r := New(st, Options{})
	putTestBackup(t, r, "b1", 0x2000100)
	putTestBackup(t, r, "b2", 0x3000100)
	if err := r.DeleteBackup(ctx, "b1"); err == nil {
		t.Fatal("the injected failure was not reported")
	}
	bs, damaged, err := r.ListBackups(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "b2" || len(damaged) != 0 {
		t.Fatalf("ListBackups after an interrupted delete = %v, %v, %v", bs, damaged, err)
	}
	inc, err := r.IncompleteBackups(ctx)
	if err != nil || len(inc) != 1 || inc[0].Name != "b1" || !inc[0].HasSummary {
		t.Fatalf("IncompleteBackups = %+v, %v", inc, err)
	}
	st.Reset()
	if err := r.DeleteBackup(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if inc, _ := r.IncompleteBackups(ctx); len(inc) != 0 {
		t.Fatalf("after the rerun: %+v", inc)
	}
}

func TestDeleteWALKeepsHistoryFiles(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	for _, n := range []string{"000000010000000000000001", "00000002.history"} {
		f, _ := wal.Parse(n)
		if _, err := r.PutWAL(ctx, f, bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	var objs []WALObject
	_ = r.ListWAL(ctx, func(o WALObject) error { objs = append(objs, o); return nil })
	for _, o := range objs {
		err := r.DeleteWAL(ctx, o)
		if (o.Kind == wal.History) != (err != nil) {
			t.Errorf("DeleteWAL(%s) = %v", o.Name, err)
		}
	}
	objs = nil
	_ = r.ListWAL(ctx, func(o WALObject) error { objs = append(objs, o); return nil })
	if len(objs) != 1 || objs[0].Kind != wal.History {
		t.Fatalf("left: %+v", objs)
	}
}

func TestDeleteRestorePoint(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	if err := r.PutRestorePoint(ctx, RestorePoint{Name: "p", LSN: 5, Timeline: 1}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRestorePoint(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if rps, _ := r.ListRestorePoints(ctx); len(rps) != 0 {
		t.Fatalf("left: %v", rps)
	}
	if err := r.DeleteRestorePoint(ctx, "../x"); err == nil {
		t.Fatal("a bad name was accepted")
	}
}

// On a store that deletes in batches, a backup's parts go in one batch, between the
// manifest (first, alone) and the summary (last, alone).
func TestDeleteBackupRemovesThePartsInOneBatchBetweenManifestAndSummary(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	inner.Batch = 1000
	r := New(inner, Options{})
	for n := 1; n <= 3; n++ {
		w, err := r.CreatePart(ctx, "b1", n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("tar")); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PutBackup(ctx, testManifest("b1", 0x2000100)); err != nil {
		t.Fatal(err)
	}
	failing := New(faulty.New(inner, faulty.Rule{Op: faulty.Delete, Key: SummaryKey("b1")}), Options{})
	if err := failing.DeleteBackup(ctx, "b1"); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("DeleteBackup failing at the summary: %v", err)
	}
	var left []string
	_ = inner.List(ctx, BackupPrefix("b1"), func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil })
	if len(left) != 1 || left[0] != SummaryKey("b1") || inner.Batches() != 1 {
		t.Fatalf("left %v after %d batches, want only the summary after 1", left, inner.Batches())
	}
	if err := r.DeleteBackup(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	left = nil
	_ = inner.List(ctx, BackupPrefix("b1"), func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil })
	if len(left) != 0 {
		t.Fatalf("left %v", left)
	}
}
