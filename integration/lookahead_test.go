package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// pushSpool is where wal-push's background archiver keeps its records and lock.
func pushSpool(c *pgtest.Cluster) string { return filepath.Join(c.DataDir(), "pg_wal", "pgb", "push") }

// restoreToTheEnd restores the newest backup of repo to the end of its archive and
// starts it, archiving off.
func restoreToTheEnd(t *testing.T, repo string) *pgtest.Cluster {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 180*time.Second)
	return c
}

func TestBurstOf200SegmentsWithLookAheadLosesNothing(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo) // default wal-push-concurrency: look-ahead on
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	last := c.GenerateWAL(t, 200)
	want := c.QueryInt(t, "SELECT count(*) FROM pgtest_wal")
	c.WaitArchived(t, last, 300*time.Second)
	if s := c.ArchiverStats(t); s.FailedCount != 0 {
		t.Errorf("archive_command failed during the burst: %s\n%s", s, c.LogTail(20))
	}
	if shipped := archiverShipped(t, c); shipped == 0 {
		t.Fatal("the background archiver shipped no segment: every call shipped its own, look-ahead never worked")
	}

	r := restoreToTheEnd(t, repo)
	if got := r.QueryInt(t, "SELECT count(*) FROM pgtest_wal"); got != want {
		t.Fatalf("restored %d rows, the source committed %d before its last archived segment", got, want)
	}
}

func TestSIGKILLOfTheBackgroundArchiverMidUploadLosesNothing(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	// The hook (a pgbtest build only) makes the first archiver's first WAL upload once
	// the marker's directory exists stop half-way, and say so in the marker file, with
	// its process id.
	armed := filepath.Join(pgtest.TempDir(t), "armed")
	marker := filepath.Join(armed, "hang")
	bin := pgtest.BuildPGB(t)
	c := pgtest.NewCluster(t, pgtest.Options{
		ArchiveCommand: "PGB_TEST_ARCHIVER_HANG=" + marker + " " + bin + " wal-push --repo " + repo + " %p",
	})
	c.Start(t)
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	pgtest.MkdirPG(t, armed)
	c.Exec(t, "CREATE TABLE kept (id int PRIMARY KEY)")
	c.Exec(t, "INSERT INTO kept SELECT generate_series(1, 1000)")
	c.SwitchWAL(t)

	var b []byte
	c.WaitFor(t, "the archiver to hang mid-upload", 120*time.Second, func() (bool, string, error) {
		var err error
		b, err = os.ReadFile(marker)
		return err == nil, "no marker " + marker, nil
	})
	fields := strings.Fields(string(b))
	pid, err := strconv.Atoi(fields[len(fields)-1])
	if err != nil {
		t.Fatalf("marker %q: %v", b, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the archiver %d: %v", pid, err)
	}
	t.Logf("killed the archiver (%d) uploading %s", pid, fields[0])

	c.Exec(t, "INSERT INTO kept SELECT generate_series(1001, 2000)")
	last := c.GenerateWAL(t, 5)
	want := c.QueryInt(t, "SELECT count(*) FROM kept")
	c.WaitArchived(t, last, 120*time.Second)
	// The call waiting for the killed archiver's segment ships it itself: PostgreSQL
	// sees no failure.
	if s := c.ArchiverStats(t); s.FailedCount != 0 {
		t.Errorf("pg_stat_archiver after the kill: %s\n%s", s, c.LogTail(20))
	}

	r := restoreToTheEnd(t, repo)
	if got := r.QueryInt(t, "SELECT count(*) FROM kept"); got != want {
		t.Fatalf("restored %d rows of kept, the source has %d", got, want)
	}
}

func TestWalPushToARecreatedRepositoryShipsAgainDespiteItsRecords(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	seg := c.SwitchWAL(t)
	c.WaitArchived(t, seg, 60*time.Second)
	c.StopImmediate(t) // no checkpoint: pg_wal keeps the segment
	pgtest.StopPGBWorkers(c.DataDir())
	record := filepath.Join(pushSpool(c), seg+".ok")
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("no record of an archived segment: %v", err)
	}

	// The repository is wiped and created again; PostgreSQL retries the segment.
	if err := os.RemoveAll(repo); err != nil {
		t.Fatal(err)
	}
	pgtest.MkdirPG(t, repo)
	status := filepath.Join(c.DataDir(), "pg_wal", "archive_status", seg)
	if err := os.Rename(status+".done", status+".ready"); err != nil {
		t.Fatal(err)
	}
	cmd := pgtest.RunAsPG(t, pgtest.BuildPGB(t), "wal-push", "--repo", repo, filepath.Join("pg_wal", seg))
	cmd.Dir = c.DataDir()
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("wal-push into the new repository: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(repo, "wal", seg[:16], seg)); err != nil {
		t.Fatalf("wal-push exited 0 but the new repository lacks %s: %v", seg, err)
	}
	if _, err := os.Stat(filepath.Join(repo, "pgb.json")); err != nil {
		t.Fatalf("the new repository was not bound to the cluster: %v", err)
	}
	pgtest.StopPGBWorkers(c.DataDir())
}

// archiverShipped stops c, waits until no background archiver runs for it any more, and
// returns how many segments its archivers shipped ahead of PostgreSQL's calls, as their
// log says when they exit.
func archiverShipped(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	c.Stop(t)
	lock := filepath.Join(pushSpool(c), "archiver.lock")
	deadline := time.Now().Add(2 * time.Minute) // a hang guard: an idle archiver exits in seconds
	for pgtest.LockHeld(lock) {
		if time.Now().After(deadline) {
			t.Fatal("the background archiver never exited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(pushSpool(c), "archiver.log"))
	if err != nil {
		t.Fatalf("no background archiver ever ran: %v", err)
	}
	total := 0
	for _, f := range strings.Fields(string(b)) {
		if n, ok := strings.CutPrefix(f, "shipped="); ok {
			v, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("archiver log: %q: %v", f, err)
			}
			total += v
		}
	}
	return total
}
