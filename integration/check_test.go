package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

func TestCheckPassesOnAWorkingSetup(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	r := mustPGB(t, "", c.Env(), "check", "--repo", repo)
	for _, want := range []string{"ok    connected to PostgreSQL 15", "ok    archive_mode = on", "wal-push",
		"ok    WAL switch: segment", "check passed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("check printed a FAIL line:\n%s", r.stdout)
	}
}

func TestCheckFailsWhenWALDoesNotArrive(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "/bin/false"})
	c.Start(t)
	r := pgb(t, "", c.Env(), "check", "--repo", repo, "--archive-timeout", "3s")
	if r.code == 0 {
		t.Fatalf("check passed with a broken archive_command:\n%s", r)
	}
	for _, want := range []string{"FAIL  archive_command = '/bin/false' does not call pgb wal-push with %p", "FAIL  WAL switch: segment", "archive_command", "check FAILED"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestCheckRefusesARepositoryOfAnotherCluster(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	a := archivingCluster(t, repo)
	a.WaitArchived(t, a.SwitchWAL(t), 30*time.Second)
	b := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "/bin/true"})
	b.Start(t)
	r := pgb(t, "", b.Env(), "check", "--repo", repo)
	if r.code == 0 || !strings.Contains(r.stdout, "FAIL  repository") || !strings.Contains(r.stdout, "belongs to another cluster") {
		t.Fatalf("check against a foreign repository:\n%s", r)
	}
}

func TestCheckReportsUnreachablePostgreSQL(t *testing.T) {
	pgtest.RequireParallel(t)
	r := pgb(t, "", []string{"PGHOST=127.0.0.1", "PGPORT=1", "PGUSER=postgres", "PGCONNECT_TIMEOUT=3"}, "check", "--repo", newRepo(t))
	if r.code == 0 || !strings.Contains(r.stdout, "FAIL  connect to PostgreSQL") {
		t.Fatalf("check without a server:\n%s", r)
	}
}

// TestCheckFailsAsSoonAsArchiveCommandFails: with an archive_command that fails, check
// says so as soon as pg_stat_archiver shows the switched segment failing, quoting
// last_failed_wal, instead of waiting out --archive-timeout.
func TestCheckFailsAsSoonAsArchiveCommandFails(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "false"})
	c.Start(t)
	r := pgb(t, "", c.Env(), "check", "--repo", repo, "--archive-timeout", "2m")
	if r.code != 1 {
		t.Fatalf("check with archive_command = false:\n%s", r)
	}
	failed := c.ArchiverStats(t).LastFailedWAL
	for _, want := range []string{
		"FAIL  archive_command = 'false' does not call pgb wal-push with %p: set archive_command = 'pgb wal-push %p'",
		"FAIL  WAL switch: segment " + failed + " did not reach the repository: archive_command is failing",
		"last for " + failed + " (last_failed_wal): see the PostgreSQL log",
		"check FAILED",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "--archive-timeout") {
		t.Errorf("check waited out --archive-timeout instead of noticing the failure:\n%s", r.stdout)
	}
}

// TestCheckFlagsAnArchiveCommandThatIsNotPGB: an archive_command that copies WAL
// elsewhere is a FAIL line saying what to set.
func TestCheckFlagsAnArchiveCommandThatIsNotPGB(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	elsewhere := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "elsewhere"))
	for _, cmd := range []string{"cp %p " + elsewhere + "/%f", pgtest.BuildPGB(t) + " wal-push --repo " + repo + " pg_wal/%f"} {
		c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: cmd})
		c.Start(t)
		r := pgb(t, "", c.Env(), "check", "--repo", repo, "--archive-timeout", "2s")
		want := "FAIL  archive_command = '" + cmd + "' does not call pgb wal-push with %p: set archive_command = 'pgb wal-push %p'"
		if r.code != 1 || !strings.Contains(r.stdout, want) {
			t.Errorf("check with archive_command = '%s': want exit 1 and %q:\n%s", cmd, want, r)
		}
		c.Stop(t)
	}
}
