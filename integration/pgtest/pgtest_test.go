package pgtest_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

func TestArchiveWAL(t *testing.T) {
	pgtest.Require(t)
	archive := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "archive"))

	c := pgtest.NewCluster(t, pgtest.Options{
		ArchiveCommand: "cp %p " + archive + "/%f",
		InitDBArgs:     []string{"--data-checksums"},
	})
	c.Start(t)

	if got := c.QueryString(t, "SHOW archive_mode"); got != "on" {
		t.Fatalf("archive_mode = %q", got)
	}
	if got := c.QueryString(t, "SHOW wal_level"); got != "replica" {
		t.Fatalf("wal_level = %q", got)
	}
	if got := c.QueryInt(t, "SELECT $1::int + 1", 41); got != 42 {
		t.Fatalf("QueryInt = %d", got)
	}

	first := c.SwitchWAL(t)
	last := c.GenerateWAL(t, 3)
	if last <= first {
		t.Fatalf("GenerateWAL returned %s, not after %s", last, first)
	}
	c.WaitArchived(t, last, 30*time.Second)

	archived, err := os.ReadFile(filepath.Join(archive, last))
	if err != nil {
		t.Fatal(err)
	}
	const segSize = 16 << 20
	if len(archived) != segSize {
		t.Fatalf("archived %s has %d bytes, want %d", last, len(archived), segSize)
	}
	if orig, err := os.ReadFile(c.WALFile(last)); err == nil {
		if !bytes.Equal(orig, archived) {
			t.Fatalf("archived %s differs from pg_wal's copy", last)
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}

	c.WaitArchiverIdle(t, 30*time.Second)
	s := c.ArchiverStats(t)
	if s.ArchivedCount < 4 || s.FailedCount != 0 || s.LastArchivedWAL < last {
		t.Fatalf("unexpected archiver stats: %v", s)
	}
	if n := c.QueryInt(t, "SELECT count(*) FROM pgtest_wal"); n != 3000 {
		t.Fatalf("pgtest_wal has %d rows", n)
	}
	c.Stop(t)
	if c.Running() {
		t.Fatal("server still running after Stop")
	}
}

func TestOpenDataDirCopy(t *testing.T) {
	pgtest.Require(t)
	c := pgtest.NewCluster(t, pgtest.Options{})
	c.Start(t)
	c.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g")

	// Tools run as the postgres user with the cluster's environment.
	if out, err := c.Command(t, "psql", "-XAtc", "SELECT count(*) FROM items").CombinedOutput(); err != nil || string(bytes.TrimSpace(out)) != "100" {
		t.Fatalf("psql: %v: %q", err, out)
	}
	c.Stop(t)

	copyDir := filepath.Join(pgtest.TempDir(t), "copy")
	if out, err := exec.Command("cp", "-a", c.DataDir(), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(copyDir, "postmaster.pid")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}

	c2 := pgtest.OpenDataDir(t, copyDir, pgtest.Options{Conf: []string{"log_line_prefix = '%m [%p] it''s pgtest '  # comment"}})
	c2.Start(t)
	c2.WaitReady(t, 10*time.Second)
	c2.WaitRecoveryDone(t, 10*time.Second)
	if got := c2.QueryInt(t, "SELECT 1"); got != 1 {
		t.Fatalf("select 1 = %d", got)
	}
	if got := c2.QueryString(t, "SELECT current_setting('data_directory')"); got != copyDir {
		t.Fatalf("data_directory = %q, want %q", got, copyDir)
	}
	if got := c2.QueryString(t, "SELECT setting FROM pg_settings WHERE name = 'log_line_prefix' AND source = 'command line'"); got != "%m [%p] it's pgtest " {
		t.Fatalf("log_line_prefix from command line = %q", got)
	}
	rows := c2.QueryRows(t, "SELECT id, name FROM items WHERE id <= 2 ORDER BY id")
	if len(rows) != 2 || rows[1][0] != "2" || rows[1][1] != "item 2" {
		t.Fatalf("rows = %q", rows)
	}
	c2.Restart(t)
	if got := c2.QueryInt(t, "SELECT count(*) FROM items"); got != 100 {
		t.Fatalf("count after restart = %d", got)
	}
}

// TestPITRPause exercises OpenDataDir on a data directory in archive
// recovery: base backup, restore_command, a named recovery target with
// pause, then resume and promotion.
func TestPITRPause(t *testing.T) {
	pgtest.Require(t)
	base := pgtest.TempDir(t)
	archive := pgtest.MkdirPG(t, filepath.Join(base, "archive"))
	src := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "test ! -f " + archive + "/%f && cp %p " + archive + "/%f"})
	src.Start(t)
	src.Exec(t, "CREATE TABLE t (v int)")

	backup := filepath.Join(base, "backup")
	if out, err := src.Command(t, "pg_basebackup", "-D", backup, "-X", "none", "-c", "fast", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	src.Exec(t, "INSERT INTO t SELECT generate_series(1, 10)")
	src.Exec(t, "SELECT pg_create_restore_point('target')")
	src.Exec(t, "INSERT INTO t SELECT generate_series(11, 20)")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)
	src.Stop(t)

	if err := os.WriteFile(filepath.Join(backup, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := pgtest.OpenDataDir(t, backup, pgtest.Options{
		RestoreCommand: "cp " + archive + "/%f %p",
		Conf: []string{
			"archive_mode = off",
			"recovery_target_name = 'target'",
			"recovery_target_action = 'pause'",
		},
	})
	dst.Start(t)
	dst.WaitRecoveryPaused(t, 30*time.Second)
	if got := dst.QueryInt(t, "SELECT count(*) FROM t"); got != 10 {
		t.Fatalf("rows at restore point = %d, want 10", got)
	}
	dst.Exec(t, "SELECT pg_wal_replay_resume()")
	dst.WaitRecoveryDone(t, 30*time.Second)
	dst.Exec(t, "INSERT INTO t VALUES (100)")
	if got := dst.QueryInt(t, "SELECT count(*) FROM t"); got != 11 {
		t.Fatalf("rows after promotion = %d, want 11", got)
	}
}

func TestBuildPGB(t *testing.T) {
	p := pgtest.BuildPGB(t)
	if p2 := pgtest.BuildPGB(t); p2 != p {
		t.Fatalf("second build returned %s, first %s", p2, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s has mode %v", p, fi.Mode())
	}
}
