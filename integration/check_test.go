package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

func TestCheckPassesOnAWorkingSetup(t *testing.T) {
	pgtest.Require(t)
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
	pgtest.Require(t)
	repo := newRepo(t)
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "/bin/false"})
	c.Start(t)
	r := pgb(t, "", c.Env(), "check", "--repo", repo, "--archive-timeout", "3s")
	if r.code == 0 {
		t.Fatalf("check passed with a broken archive_command:\n%s", r)
	}
	for _, want := range []string{"WARN  archive_command = '/bin/false'", "FAIL  WAL switch: segment", "archive_command failed", "check FAILED"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestCheckRefusesARepositoryOfAnotherCluster(t *testing.T) {
	pgtest.Require(t)
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
	pgtest.Require(t)
	r := pgb(t, "", []string{"PGHOST=127.0.0.1", "PGPORT=1", "PGUSER=postgres", "PGCONNECT_TIMEOUT=3"}, "check", "--repo", newRepo(t))
	if r.code == 0 || !strings.Contains(r.stdout, "FAIL  connect to PostgreSQL") {
		t.Fatalf("check without a server:\n%s", r)
	}
}
