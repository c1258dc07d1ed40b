package cmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/wal/waldumptest"
)

// restore --dry-run says "nothing was written": it computes the WAL summaries it
// needs but stores none in the repository (walsum/), nor removes a stale one.
func TestRestoreDryRunWritesNothingIntoTheRepository(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	dir, rp := fsRepo(t, false)
	for _, n := range []string{"000000010000000000000006", "000000010000000000000007", "000000010000000000000008"} {
		b := waldumptest.Unzstd(t, filepath.Join("..", "internal", "wal", "testdata", "pg15", n+".zst"))
		f, _ := wal.Parse(n)
		if _, err := rp.PutWAL(ctx, f, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &repo.Manifest{Summary: repo.Summary{Name: "20200101T000000Z", Timeline: 1, StartLSN: 6 << 20, StopLSN: 6<<20 + 0x100,
		StartTime: t0, StopTime: t0.Add(time.Second), NextXID: 3, WALSegSize: 1 << 20, Size: 1}}
	if err := rp.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		_ = filepath.Walk(filepath.Join(dir, "walsum"), func(string, os.FileInfo, error) error { n++; return nil })
		return n
	}
	before := count()
	r := pgb(t, "restore", "--repo", dir, "--dry-run")
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if after := count(); after != before {
		t.Errorf("--dry-run wrote %d entries under walsum/", after-before)
	}
}
