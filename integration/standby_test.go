package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// newStandby makes a hot standby of primary (pg_basebackup -R: it streams from it) and
// starts it, not archiving: the primary archives.
func newStandby(t *testing.T, primary *pgtest.Cluster) *pgtest.Cluster {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "standby")
	if out, err := primary.Command(t, "pg_basebackup", "-D", dir, "-X", "stream", "-c", "fast", "-R", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	s := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"hot_standby = on", "archive_mode = off"}})
	s.Start(t)
	return s
}

// A backup taken on a hot standby, while pgbench writes on the primary, reads the
// standby's data directory (a file only there is in it), says where it was taken, and
// restores to a time after it with every row committed until then; a paused standby,
// a --primary-dsn of another cluster, and a stop segment the primary never completes
// are refused with nothing stored.
func TestBackupFromAStandbyRestoresEveryCommittedRow(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	primary := archivingCluster(t, repo)
	pgbench(t, primary, "-i", "-q", "-s", "2")
	primary.Exec(t, "CREATE TABLE after_backup (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
	standby := newStandby(t, primary)
	only := filepath.Join(standby.DataDir(), "only_on_the_standby.conf")
	if err := os.WriteFile(only, []byte("# standby\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(standby.DataDir()); err != nil {
		t.Fatal(err)
	} else if st := fi.Sys().(*syscall.Stat_t); os.Chown(only, int(st.Uid), int(st.Gid)) != nil {
		t.Fatal("chown")
	}
	// The primary's connection string in the environment, as a secret should be.
	env := append(standby.Env(), "PGB_PRIMARY_DSN="+primary.DSN())

	// Refused, nothing stored: a paused standby; a primary of another cluster.
	standby.Exec(t, "SELECT pg_wal_replay_pause()")
	if r := pgb(t, "", env, "backup-push", "--repo", repo, "--fast"); r.code == 0 || !strings.Contains(r.stderr, "replay is paused") {
		t.Fatalf("backup-push on a paused standby: %s", r)
	}
	standby.Exec(t, "SELECT pg_wal_replay_resume()")
	other := pgtest.NewCluster(t, pgtest.Options{})
	other.Start(t)
	if r := pgb(t, "", append(standby.Env(), "PGB_PRIMARY_DSN="+other.DSN()), "backup-push", "--repo", repo, "--fast"); r.code == 0 || !strings.Contains(r.stderr, "point it at this standby's primary") {
		t.Fatalf("backup-push with the primary of another cluster: %s", r)
	}
	// Without the primary's connection, nothing completes the stop segment on an idle
	// primary (archive_timeout 0): the backup is not recorded, and the error says how.
	// (Some WAL into a new segment first, and a checkpoint, both replayed: the
	// backup's restartpoint then flushes the pages, so that the standby's minimum
	// recovery point, where its backup stops, is inside that segment.)
	primary.Exec(t, "CREATE TABLE replayed AS SELECT 1 AS one")
	primary.Exec(t, "CHECKPOINT")
	ckpt := primary.QueryString(t, "SELECT checkpoint_lsn::text FROM pg_control_checkpoint()")
	standby.WaitFor(t, "the standby to replay the primary's checkpoint", 60*time.Second, func() (bool, string, error) {
		s, err := standby.TryQueryString("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", ckpt)
		return s == "t", "replayed past " + ckpt + ": " + s, err
	})
	if r := pgb(t, "", standby.Env(), "backup-push", "--repo", repo, "--fast", "--archive-timeout", "2s"); r.code == 0 || !strings.Contains(r.stderr, "give --primary-dsn") {
		t.Fatalf("backup-push on a standby whose stop segment the primary does not complete: %s", r)
	}
	if names := listBackups(t, repo); len(names) != 0 {
		t.Fatalf("refused backups stored %v", names)
	}

	// pgbench writes on the primary while the standby is backed up.
	bench := primary.Command(t, "pgbench", "-n", "-c", "2", "-T", "5")
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	r := mustPGB(t, "", env, "backup-push", "--repo", repo, "--fast")
	if err := bench.Wait(); err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	if !strings.Contains(r.stdout, "complete") {
		t.Fatalf("backup-push on the standby: %s", r)
	}
	list := mustPGB(t, "", nil, "backup-list", "--repo", repo)
	if !strings.Contains(list.stdout, "full, from a standby") {
		t.Fatalf("backup-list does not say the backup was taken on a standby:\n%s", list.stdout)
	}
	if j := mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json"); !strings.Contains(j.stdout, `"from_standby": true`) {
		t.Fatalf("backup-list --json: %s", j.stdout)
	}

	// Rows committed after the backup, one by one; the target is after the 100th.
	for i := 1; i <= 100; i++ {
		primary.Exec(t, "INSERT INTO after_backup (id) VALUES ($1)", i)
	}
	target := primary.QueryString(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00')")
	history := primary.QueryInt(t, "SELECT count(*) FROM pgbench_history")
	primary.Exec(t, "SELECT pg_sleep(0.01)") // the next commit's time is after the target's
	primary.Exec(t, "INSERT INTO after_backup (id) VALUES (101)")
	primary.WaitArchived(t, primary.SwitchWAL(t), 60*time.Second)

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--target-time", target, "--target-action", "promote")
	if _, err := os.Stat(filepath.Join(dir, "only_on_the_standby.conf")); err != nil {
		t.Fatalf("the backup did not read the standby's data directory: %v", err)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if n := c.QueryInt(t, "SELECT count(*) FROM after_backup"); n != 100 {
		t.Fatalf("restored %d rows committed after the backup, want the 100 before the target", n)
	}
	if n := c.QueryInt(t, "SELECT count(*) FROM pgbench_history"); n != history {
		t.Fatalf("restored %d pgbench_history rows, the primary had %d at the target", n, history)
	}
}

// A standby that archives itself (archive_mode = always), into the same repository as
// its primary: each archives every segment, the second push of a segment an identical
// duplicate, never a conflict. A backup on it without --primary-dsn completes once the
// primary completes the stop segment (archive_timeout would; here the test switches
// WAL on the primary while the backup waits), and restores every committed row.
func TestBackupFromAStandbyThatArchivesItself(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	primary := archivingCluster(t, repo)
	primary.Exec(t, "CREATE TABLE rows (id int PRIMARY KEY)")
	dir := filepath.Join(pgtest.TempDir(t), "standby")
	if out, err := primary.Command(t, "pg_basebackup", "-D", dir, "-X", "stream", "-c", "fast", "-R", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	standby := pgtest.OpenDataDir(t, dir, pgtest.Options{ArchiveCommand: pgtest.BuildPGB(t) + " wal-push --repo " + repo + " %p",
		Conf: []string{"hot_standby = on", "archive_mode = always"}})
	standby.Start(t)
	if m := standby.QueryString(t, "SHOW archive_mode"); m != "always" {
		t.Fatalf("archive_mode = %s on the standby", m)
	}
	for i := 1; i <= 20; i++ {
		primary.Exec(t, "INSERT INTO rows VALUES ($1)", i)
	}

	cmd := exec.Command(pgtest.BuildPGB(t), "backup-push", "--repo", repo, "--archive-timeout", "5m")
	cmd.Env = append(cleanEnv(), standby.Env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	next := 21
	pgtest.WaitUntil(t, "the backup on the standby to complete", 4*time.Minute, func() (bool, string) {
		select {
		case waitErr = <-done:
			return true, ""
		default:
		}
		// What archive_timeout would do: complete the segment the primary writes.
		primary.Exec(t, "INSERT INTO rows VALUES ($1)", next)
		next++
		primary.SwitchWAL(t)
		return false, "still waiting for its stop segment"
	})
	if waitErr != nil || !strings.Contains(out.String(), "complete") {
		t.Fatalf("backup-push on the standby: %v\nstdout:\n%s\nstderr:\n%s", waitErr, out.String(), errb.String())
	}

	for i := 1000; i < 1100; i++ {
		primary.Exec(t, "INSERT INTO rows VALUES ($1)", i)
	}
	want := primary.QueryInt(t, "SELECT count(*) FROM rows")
	target := primary.QueryString(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00')")
	primary.Exec(t, "SELECT pg_sleep(0.01)") // the next commit's time is after the target's
	primary.Exec(t, "INSERT INTO rows VALUES (5000)")
	last := primary.SwitchWAL(t)
	primary.WaitArchived(t, last, 60*time.Second)
	standby.WaitArchived(t, last, 60*time.Second)
	for name, c := range map[string]*pgtest.Cluster{"primary": primary, "standby": standby} {
		if s := c.ArchiverStats(t); s.FailedCount != 0 || s.ArchivedCount == 0 {
			t.Fatalf("%s: archived %d, failed %d (last failed %s): both must archive every segment without a conflict", name, s.ArchivedCount, s.FailedCount, s.LastFailedWAL)
		}
	}

	restored := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", restored, "--target-time", target, "--target-action", "promote")
	c := pgtest.OpenDataDir(t, restored, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if n := c.QueryInt(t, "SELECT count(*) FROM rows"); n != want {
		t.Fatalf("restored %d rows, want the %d committed before the target", n, want)
	}
}
