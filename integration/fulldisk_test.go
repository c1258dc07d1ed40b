package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/testenv"
)

// smallDisk mounts a tmpfs of size (e.g. "16m") on a fresh directory for the test.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "mounting a small tmpfs needs root")
	}
	dir := pgtest.TempDir(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill takes the rest of the space of the filesystem dir is on.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			return // full
		}
	}
}

// Restoring onto a disk that fills up fails with one line saying so and leaves no
// directory PostgreSQL would start (no global/pg_control); backup-fetch likewise; and
// wal-fetch during archive recovery exits 255, so that recovery stops rather than take
// a full disk for the end of the archive, and leaves no file at the destination.
func TestRestoringOntoAFullDiskFailsClearlyAndLeavesNothingHalfWritten(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	if out, err := src.Command(t, "pgbench", "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	disk := smallDisk(t, "16m") // the cluster is some 40 MB

	oneLine := func(what string, r result) {
		t.Helper()
		var errs []string // the progress log lines before it are no error
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if strings.HasPrefix(l, "pgb: error:") {
				errs = append(errs, l)
			}
		}
		if r.code == 0 || len(errs) != 1 || !strings.Contains(errs[0], "no space left on device") {
			t.Errorf("%s onto a full disk: want one error line saying the disk is full and a non-zero exit: %s", what, r)
		}
	}
	dir := filepath.Join(disk, "restored")
	oneLine("restore", pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir))
	if fileExists(filepath.Join(dir, "global", "pg_control")) {
		t.Error("a restore that ran out of space left global/pg_control in place")
	}
	_ = os.RemoveAll(dir)
	fetched := filepath.Join(disk, "fetched")
	oneLine("backup-fetch", pgb(t, "", nil, "backup-fetch", "--repo", repo, "LATEST", fetched))
	if fileExists(filepath.Join(fetched, "global", "pg_control")) {
		t.Error("a backup-fetch that ran out of space left global/pg_control in place")
	}
	_ = os.RemoveAll(fetched)

	// A data directory in archive recovery on the full disk.
	dd := filepath.Join(disk, "recovering")
	if err := os.MkdirAll(filepath.Join(dd, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dd, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	seg := doneSegments(t, src)[0]
	fill(t, disk)
	r := pgb(t, dd, nil, "wal-fetch", "--repo", repo, seg, "pg_wal/RECOVERYXLOG")
	if r.code != 255 || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("wal-fetch onto a full disk during archive recovery: want exit 255 naming the full disk: %s", r)
	}
	if fileExists(filepath.Join(dd, "pg_wal", "RECOVERYXLOG")) {
		t.Error("a wal-fetch that ran out of space left its destination in place")
	}
}
