package cmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// smallRepo is a filesystem repository with segments 2..4 (a commit a minute) and one
// backup at the start of segment 2 holding size bytes.
func smallRepo(t *testing.T, size int64) (string, *repo.Repo) {
	t.Helper()
	ctx := context.Background()
	dir, rp := fsRepo(t, true)
	const seg = 16 << 20
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for n := uint64(2); n <= 4; n++ {
		f, _ := wal.Parse(wal.SegmentFileName(1, n, seg))
		if _, err := rp.PutWAL(ctx, f, strings.NewReader("wal"), 3); err != nil {
			t.Fatal(err)
		}
		start := wal.LSN(n * seg)
		c := &walsum.Commit{Xid: uint32(100 * n), Time: t0.Add(time.Duration(n) * time.Minute), LSN: start + 0x1000}
		js, _ := walsum.Encode(&walsum.Summary{Version: walsum.Version, Segment: f.Name, SegSize: seg, Records: 2, SystemID: testSystemID,
			FirstLSN: start + 0x28, LastLSN: start + 0x2000, EndLSN: start + 0x2100, Commits: 1, FirstCommit: c, LastCommit: c, MinXid: c.Xid, MaxXid: c.Xid})
		if err := rp.PutWALSummary(ctx, f, js); err != nil {
			t.Fatal(err)
		}
	}
	m := &repo.Manifest{Summary: repo.Summary{Name: "20261201T100200Z", Timeline: 1, StartLSN: 2 * seg, StopLSN: 2*seg + 0x800,
		StartTime: t0.Add(2 * time.Minute), StopTime: t0.Add(2*time.Minute + time.Second), NextXID: 201, WALSegSize: seg, Size: size}}
	if err := rp.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	return dir, rp
}

// restore --dry-run writes nothing and estimates the RTO from the drills recorded:
// the backup's bytes at their restore throughput, the WAL to the target at theirs.
func TestRestoreDryRunEstimatesTheRTOFromTheDrills(t *testing.T) {
	isolate(t)
	dir, rp := smallRepo(t, 100<<20)
	pgdata := filepath.Join(t.TempDir(), "pgdata")
	args := []string{"restore", "--repo", dir, "--pgdata", pgdata, "--dry-run", "--target-lsn", "0/3001000"}
	if os.Geteuid() == 0 {
		// As the restore: the backup records no owner and the directory's parent is root's.
		args = append(args, "--owner", "nobody")
	}

	r := pgb(t, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "would restore backup 20261201T100200Z") ||
		!strings.Contains(r.stdout, "RTO estimate: none") || !strings.Contains(r.stdout, "no drill recorded: run pgb drill to measure") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// Drills that restored at 10 MiB/s and replayed at 4 MiB/s: 100 MiB in 10 s, and
	// the WAL to the target, segments 2 and 3 (32 MiB), in 8 s.
	for i := 0; i < 3; i++ {
		fin := time.Now().Add(-time.Duration(i) * time.Hour)
		d := repo.DrillRecord{Started: fin.Add(-time.Minute), Finished: fin, OK: true, Backup: "20261201T100200Z",
			RTO: repo.DrillRTO{RestoreSeconds: 1, BytesRestored: 10 << 20, ReplaySeconds: 2, BytesReplayed: 8 << 20, TotalSeconds: 3}}
		if _, err := rp.PutDrill(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	r = pgb(t, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "RTO estimate: 18.0 s (restore 10.0 s, replay 8.0 s)") ||
		!strings.Contains(r.stdout, "restore 100.0 MiB at 10.0 MiB/s, replay 32.0 MiB of WAL at 4.0 MiB/s") ||
		!strings.Contains(r.stdout, "nothing was written") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(pgdata); !os.IsNotExist(err) {
		t.Fatalf("--dry-run wrote %s: %v", pgdata, err)
	}
	// To the end of the archive: segments 2 to 4, from the backup's start to the
	// window's end.
	r = pgb(t, "restore", "--repo", dir, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "replay 32.0 MiB of WAL") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// restore --dry-run --json is one document; --json without --dry-run is a usage error.
func TestRestoreDryRunJSON(t *testing.T) {
	isolate(t)
	dir, _ := smallRepo(t, 100<<20)
	r := pgb(t, "restore", "--repo", dir, "--dry-run", "--json", "--target-lsn", "0/3001000")
	var doc restoreDryRunJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
		t.Fatalf("exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if !doc.DryRun || doc.Backup != "20261201T100200Z" || doc.Size != 100<<20 || doc.RTOEstimate == nil || !strings.Contains(doc.Target, "0/3001000") {
		t.Errorf("restore --dry-run --json: %+v", doc)
	}
	if r := pgb(t, "restore", "--repo", dir, "--pgdata", t.TempDir(), "--json"); r.code != exitUsage || !strings.Contains(r.stderr, "--json goes with --dry-run") {
		t.Errorf("restore --json: exit %d %s", r.code, r.stderr)
	}
}
