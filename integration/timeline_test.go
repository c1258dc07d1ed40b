package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// forked is a repository whose history forked: production archives timeline 1, and a
// restored copy, promoted with --archive-mode preserve, archived timeline 2 into the
// same repository.
type forked struct {
	*scenario
	atFork int64 // production rows when the copy branched off
	after  int64 // production rows at the end
}

// forkRepository plays it: a backup, rows, the copy (restored with copyArgs and
// promoted, it creates a table on timeline 2 and archives it), then production commits
// more rows and, with backupAfter, takes a second backup after the fork.
func forkRepository(t *testing.T, backupAfter bool, copyArgs ...string) *forked {
	t.Helper()
	pgtest.Require(t)
	repo := newRepo(t)
	f := &forked{scenario: &scenario{repo: repo, sel: []string{"--repo", repo}}}
	f.src = archivingCluster(t, repo)
	f.src.Exec(t, "CREATE TABLE orders (id bigserial PRIMARY KEY, phase text)")
	f.src.Exec(t, "INSERT INTO orders (phase) SELECT 'before the backup' FROM generate_series(1, 100)")
	f.backup(t)
	f.src.Exec(t, "INSERT INTO orders (phase) SELECT 'before the fork' FROM generate_series(1, 50)")
	mustPGB(t, "", f.src.Env(), f.cmd("restore-point", "fork")...)
	f.atFork = f.src.QueryInt(t, "SELECT count(*) FROM orders")

	// The copy: no server-side override, so what pgb wrote decides whether it archives.
	cp := f.restoreWith(t, nil, append([]string{"--archive-mode", "preserve"}, copyArgs...)...)
	cp.WaitRecoveryDone(t, 120*time.Second)
	cp.Exec(t, "CREATE TABLE on_the_copy AS SELECT 1 AS marker")
	cp.WaitArchived(t, cp.SwitchWAL(t), 60*time.Second)
	if tli := cp.QueryInt(t, "SELECT timeline_id FROM pg_control_checkpoint()"); tli < 1 {
		t.Fatalf("copy timeline %d", tli)
	}
	cp.Stop(t)

	// Production goes on, on timeline 1.
	f.src.Exec(t, "INSERT INTO orders (phase) SELECT 'after the fork' FROM generate_series(1, 30)")
	if backupAfter {
		f.backup(t)
	}
	f.src.Exec(t, "INSERT INTO orders (phase) SELECT 'last' FROM generate_series(1, 5)")
	f.after = f.src.QueryInt(t, "SELECT count(*) FROM orders")
	f.src.GenerateWAL(t, 2)
	f.src.WaitArchived(t, f.src.SwitchWAL(t), 60*time.Second)
	return f
}

// The report of issue 7 item 18: a restore to a point, promoted, archived timeline 2;
// production took a backup after the fork; a restore following timeline 2 chose that
// backup and PostgreSQL refused to start ("requested timeline 2 is not a child of this
// server's history").
func TestRestoreFollowingAPromotedTimelineSkipsBackupsTakenAfterTheFork(t *testing.T) {
	f := forkRepository(t, true, "--target-name", "fork", "--target-action", "promote")
	if len(f.backupNames) != 2 {
		t.Fatalf("backups: %v", f.backupNames)
	}
	c := f.restore(t, "--target-timeline", "2")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM orders"); got != f.atFork {
		t.Fatalf("rows on timeline 2 = %d, want the %d committed before the fork", got, f.atFork)
	}
	if got := c.QueryInt(t, "SELECT count(*) FROM on_the_copy"); got != 1 {
		t.Fatalf("the table made on timeline 2 has %d rows", got)
	}

	// Timeline 1 itself can still be followed to its end, from the newer backup.
	c = f.restore(t, "--target-timeline", "1")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM orders"); got != f.after {
		t.Fatalf("rows on timeline 1 = %d, want %d", got, f.after)
	}
	if got := c.QueryString(t, "SELECT to_regclass('on_the_copy')::text"); got != "" {
		t.Fatalf("timeline 1 has the copy's table: %q", got)
	}
}

// Issue 7 item 3: a promoted drill copy archived timeline 2 into production's
// repository while production went on archiving timeline 1; a default restore followed
// timeline 2 and silently dropped production's later commits. Now it is refused, and
// --target-timeline 1 recovers every production row.
func TestDefaultRestoreRefusesAHistoryForkedByAPromotedCopy(t *testing.T) {
	f := forkRepository(t, false)
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r := pgb(t, "", nil, f.cmd("restore", "--pgdata", dir)...)
	if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("a default restore of a forked repository: want a one-line refusal, got %s", r)
	}
	for _, s := range []string{"timeline 1 kept being archived after timeline 2 branched from it", "timeline 2 (branched from 1 at LSN",
		"--target-timeline N"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("refusal does not say %q: %s", s, r.stderr)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created %s: %v", dir, err)
	}

	c := f.restore(t, "--target-timeline", "1")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM orders"); got != f.after {
		t.Fatalf("rows = %d, want every production row: %d", got, f.after)
	}

	// backup-fetch sets up no recovery: the fork does not concern it.
	mustPGB(t, "", nil, f.cmd("backup-fetch", "LATEST", filepath.Join(pgtest.TempDir(t), "files"))...)
}

// A restored copy that is promoted does not archive unless asked to.
func TestPromotedRestoredCopyDoesNotArchiveByDefault(t *testing.T) {
	s := newScenario(t)
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r := mustPGB(t, "", nil, s.cmd("restore", "--pgdata", dir)...)
	if !strings.Contains(r.stdout, "does not archive into the repository") || !strings.Contains(r.stdout, "ALTER SYSTEM RESET archive_mode") {
		t.Errorf("restore does not say that the copy does not archive, and how to turn it on:\n%s", r.stdout)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{}) // postgresql.conf still says archive_mode = on
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryString(t, "SHOW archive_mode"); got != "off" {
		t.Fatalf("archive_mode of the promoted copy = %q, want off", got)
	}
	c.Exec(t, "CREATE TABLE on_the_copy AS SELECT 1 AS marker")
	c.SwitchWAL(t)
	c.Exec(t, "CHECKPOINT")
	if n := c.QueryInt(t, "SELECT archived_count + failed_count FROM pg_stat_archiver"); n != 0 {
		t.Fatalf("the copy tried to archive %d files", n)
	}
	for _, f := range repoFiles(t, s.repo) {
		if strings.HasPrefix(f, "wal/00000002") {
			t.Fatalf("the copy archived %s into the source's repository", f)
		}
	}
}
