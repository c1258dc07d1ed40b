package cmd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// status --name of a restore point the repository does not hold answers "not
// reachable" (exit 2, as for any target that cannot be reached), not "could not read
// the repository" (1).
func TestStatusOfAnUnknownRestorePointExitsTwo(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	rp := repo.New(st, repo.Options{})
	const size = 16 << 20
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for n := uint64(2); n <= 3; n++ {
		f, _ := wal.Parse(wal.SegmentFileName(1, n, size))
		if _, err := rp.PutWAL(ctx, f, strings.NewReader("wal"), 3); err != nil {
			t.Fatal(err)
		}
		start := wal.LSN(n * size)
		c := &walsum.Commit{Xid: uint32(100 * n), Time: t0.Add(time.Duration(n) * time.Minute), LSN: start + 0x1000}
		js, _ := walsum.Encode(&walsum.Summary{Version: walsum.Version, Segment: f.Name, SegSize: size, Records: 2,
			FirstLSN: start + 0x28, LastLSN: start + 0x2000, EndLSN: start + 0x2100, Commits: 1, FirstCommit: c, LastCommit: c, MinXid: c.Xid, MaxXid: c.Xid})
		if err := rp.PutWALSummary(ctx, f, js); err != nil {
			t.Fatal(err)
		}
	}
	m := &repo.Manifest{Summary: repo.Summary{Name: "20261201T100200Z", Timeline: 1, StartLSN: 2*size + 0x28, StopLSN: 2*size + 0x800,
		StartTime: t0.Add(2 * time.Minute), StopTime: t0.Add(2*time.Minute + time.Second), NextXID: 201, WALSegSize: size}}
	if err := rp.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	r := pgb(t, "status", "--repo", dir, "--name", "no-such-point")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "no-such-point") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
