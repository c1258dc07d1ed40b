package integration

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// droppedTableCluster is an archiving cluster where table t (one row) was dropped after
// the restore point rp.
func droppedTableCluster(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	c.Exec(t, `CREATE TABLE t (v int); INSERT INTO t VALUES (1)`)
	mustPGB(t, "", c.Env(), "restore-point", "--repo", repo, "rp")
	c.Exec(t, "DROP TABLE t")
	c.WaitArchived(t, c.SwitchWAL(t), time.Minute)
	return c, repo
}

// waitSyncRep waits until a backend of the live cluster waits for its synchronous
// standby to confirm a COMMIT.
func waitSyncRep(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.WaitFor(t, "a COMMIT waiting on SyncRep", 5*time.Minute, func() (bool, string, error) {
		n, err := c.TryQueryInt("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
		return n > 0, "no backend waits on SyncRep", err
	})
}

func requireSyncStandbyAbsent(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Exec(t, "ALTER SYSTEM SET synchronous_standby_names = 'standby'")
	c.Exec(t, "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		c.Exec(t, "ALTER SYSTEM RESET synchronous_standby_names")
		c.Exec(t, "SELECT pg_reload_conf()")
	})
}

// SIGTERM while the live server waits for a synchronous standby to confirm the load's
// COMMIT: the transaction commits, and pgb says so instead of "nothing was loaded".
func TestExtractInterruptedWhileTheLoadCommitsSaysItCommitted(t *testing.T) {
	pgtest.Require(t)
	c, repo := droppedTableCluster(t)
	requireSyncStandbyAbsent(t, c)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	cmd := exec.Command(pgtest.BuildPGB(t), "extract", "--repo", repo, "--scratch", scratch, "--table", "t", "--target-name", "rp", "--into", c.DSN())
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitSyncRep(t, c)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var all []string
	for l := range lines {
		all = append(all, l)
	}
	err = cmd.Wait()
	out := strings.Join(all, "\n")
	t.Logf("pgb: %v\n%s", err, out)
	if strings.Contains(out, "nothing was loaded") || !strings.Contains(out, "committed") {
		t.Errorf("pgb does not say that the load committed")
	}
	if cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("exit 0 though interrupted")
	}
	c.Exec(t, "ALTER SYSTEM RESET synchronous_standby_names")
	c.Exec(t, "SELECT pg_reload_conf()")
	c.WaitFor(t, "the loaded table", time.Minute, func() (bool, string, error) {
		n, err := c.TryQueryInt("SELECT count(*) FROM pg_class WHERE relname = 't'")
		return n == 1, "no table t in the live database", err
	})
}

// A load whose COMMIT is never confirmed stops at --load-timeout and says that its
// transaction committed.
func TestExtractWhoseLoadOutlastsLoadTimeoutSaysWhatHappened(t *testing.T) {
	pgtest.Require(t)
	c, repo := droppedTableCluster(t)
	requireSyncStandbyAbsent(t, c)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, "extract", "--repo", repo, "--scratch", scratch, "--table", "t", "--target-name", "rp", "--into", c.DSN(), "--load-timeout", "2s")
	t.Logf("%s", r)
	if r.code != 3 || !strings.Contains(r.stderr, "--load-timeout") || !strings.Contains(r.stderr, "committed") || strings.Contains(r.stderr, "nothing was loaded") {
		t.Errorf("want exit 3 naming --load-timeout and the commit")
	}
	assertNoDrillLeft(t, scratch)
}

// Loading as a superuser runs the repository's SQL with every right: pgb says so.
func TestExtractIntoTheLiveClusterAsASuperuserWarns(t *testing.T) {
	pgtest.Require(t)
	c, repo := droppedTableCluster(t)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, "extract", "--repo", repo, "--scratch", scratch, "--table", "t", "--target-name", "rp", "--into", c.DSN())
	t.Logf("%s", r)
	if r.code != 0 || !strings.Contains(r.stderr, "superuser") {
		t.Errorf("want exit 0 and a warning naming the superuser")
	}
}

// A transaction that never committed, and a --dump into a directory that does not
// exist: each is one line saying what to do; the --dump one before anything is restored.
func TestExtractBeforeATransactionThatNeverEndedOrIntoAMissingDirectorySaysWhatToDo(t *testing.T) {
	pgtest.Require(t)
	c, repo := droppedTableCluster(t)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	t.Run("an xid that never committed", func(t *testing.T) {
		xid := c.QueryString(t, "SELECT (txid_current() + 1000)::text")
		r := pgb(t, "", nil, "extract", "--repo", repo, "--scratch", scratch, "--table", "t", "--before-event", xid, "--dump", filepath.Join(pgtest.TempDir(t), "t.sql"))
		t.Logf("%s", r)
		_, line, _ := strings.Cut(r.stderr, "pgb: error")
		if r.code != 1 || !strings.Contains(line, "did not commit or abort") || !strings.Contains(line, "pgb events") || strings.Contains(line, "drill failed") {
			t.Errorf("want exit 1: the transaction did not end in the archive, check it with pgb events")
		}
		assertNoDrillLeft(t, scratch)
	})
	t.Run("--dump into a missing directory", func(t *testing.T) {
		r := pgb(t, "", nil, "extract", "--repo", repo, "--scratch", scratch, "--table", "t", "--target-name", "rp", "--dump", filepath.Join(pgtest.TempDir(t), "missing", "t.sql"))
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, "--dump") || strings.Contains(r.stderr, "restored backup") {
			t.Errorf("want exit 1 naming --dump before restoring")
		}
	})
}
