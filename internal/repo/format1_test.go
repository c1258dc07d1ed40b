package repo

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/wal"
)

// The repository layer reads a repository written by the previous release (frozen in
// testdata/format1, envelope version 1, no summaries, no file offsets): identity,
// backups (listed from their manifests), restore points, WAL and timeline histories.
func TestTheRepositoryLayerReadsARepositoryOfThePreviousRelease(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "format1"))); err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := New(st, Options{})
	defer r.Close()
	id, err := r.Identity(ctx)
	if err != nil || id.SystemID != 7714491390052392431 || id.PGVersion != 15 {
		t.Fatalf("Identity = %+v, %v", id, err)
	}
	list, damaged, err := r.ListBackups(ctx)
	if err != nil || len(list) != 1 || len(damaged) != 0 {
		t.Fatalf("ListBackups = %v, %v, %v", list, damaged, err)
	}
	s := list[0]
	if s.Name != "20261202T000644Z" || s.FileCount != 967 || s.PartCount != 2 || s.Compression != "zstd" || s.Parent != "" {
		t.Errorf("summary = %+v", s)
	}
	m, err := r.Manifest(ctx, s)
	if err != nil || len(m.Files) != 967 || m.Parts[0].FileOffsets {
		t.Fatalf("Manifest = %v (%d files), want 967 files without offsets", err, len(m.Files))
	}
	for _, pt := range m.Parts {
		o, err := r.OpenPart(ctx, m.Name, pt)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, o)
		_ = o.Close()
		if err != nil || o.Sum().Size != n {
			t.Errorf("part %d: %d bytes, %v", pt.N, n, err)
		}
	}
	rps, err := r.ListRestorePoints(ctx)
	if err != nil || len(rps) != 1 || rps[0].Name != "before_upgrade" || rps[0].LSN != 0x30002F0 {
		t.Errorf("restore points = %+v, %v", rps, err)
	}
	var names []string
	if err := r.ListWALRange(ctx, 1, 0, 0, func(o WALObject) error { names = append(names, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 5 {
		t.Errorf("WAL of timeline 1, log 0: %v", names)
	}
	f, _ := wal.Parse("000000010000000000000003")
	o, err := r.OpenWAL(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, o)
	_ = o.Close()
	if err != nil || n != 16<<20 {
		t.Errorf("segment 3: %d bytes, %v", n, err)
	}
	h, err := r.ReadHistory(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if spans, err := wal.ParseHistory(2, h); err != nil || len(spans) != 2 || spans[0].End != 0x5000000 {
		t.Errorf("history of timeline 2 = %+v, %v", spans, err)
	}
}
