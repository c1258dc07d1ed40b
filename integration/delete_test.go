package integration

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

type listedBackup struct {
	Name     string `json:"name"`
	StartWAL string `json:"start_wal"`
}

func deleteTestBackups(t *testing.T, s *scenario) []listedBackup {
	t.Helper()
	var rows []listedBackup
	out := mustPGB(t, "", nil, s.cmd("backup-list", "--json")...)
	if err := json.Unmarshal([]byte(out.stdout), &rows); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out.stdout)
	}
	return rows
}

// archivedWAL lists the WAL file names in a filesystem repository.
func archivedWAL(t *testing.T, repo string) []string {
	t.Helper()
	return archivedWALBefore(repoFiles(t, repo))
}

// The policy comes from the config file, as under cron.
func TestDeleteKeepingTwoBackupsThenRestoreInsideTheWindow(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	deleteKeepingTwoOn(t, repo, configFile(t, "repo: "+repo+"\nretain-full: 2\n"), nil)
}

func TestDeleteKeepingTwoBackupsOnS3ThenRestoreInsideTheWindow(t *testing.T) {
	pgtest.RequireParallel(t)
	sel, _ := s3Repo(t, 0, "")
	deleteKeepingTwoOn(t, "", sel, []string{"--retain-full", "2"})
}

// deleteKeepingTwoOn takes three backups, deletes the oldest with the policy (a dry
// run first), and restores to a point between the two that are kept. repo is the
// filesystem repository's directory, whose files are checked; "" for object stores.
func deleteKeepingTwoOn(t *testing.T, repo string, sel, policy []string) {
	t.Helper()
	s := &scenario{repo: repo, sel: sel}
	s.src = archivingClusterWith(t, s.sel)
	s.src.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)")
	s.tick(t, 5)
	s.backup(t)
	s.tick(t, 5)
	s.backup(t)
	s.tick(t, 10)
	want := s.src.QueryInt(t, "SELECT count(*) FROM ticks")
	last := s.src.QueryString(t, "SELECT max(ts) FROM ticks")
	s.waitClockPast(t, last)
	target := s.src.QueryString(t, "SELECT clock_timestamp()")
	s.waitClockPast(t, target)
	s.tick(t, 10)
	s.backup(t)
	s.tick(t, 5)
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 30*time.Second)

	before := deleteTestBackups(t, s)
	if len(before) != 3 {
		t.Fatalf("backups %v, want 3", before)
	}
	var files []string
	if repo != "" {
		files = repoFiles(t, repo)
	}
	dry := mustPGB(t, "", nil, s.cmd("delete", policy...)...)
	t.Logf("pgb delete (dry run):\n%s", dry.stdout)
	if !strings.Contains(dry.stdout, "would delete backup "+before[0].Name) || !strings.Contains(dry.stdout, "WAL file(s)") ||
		!strings.Contains(dry.stdout, "dry run") {
		t.Fatalf("dry run output: %s", dry)
	}
	if got := deleteTestBackups(t, s); !reflect.DeepEqual(got, before) {
		t.Fatalf("the dry run deleted backups: %v", got)
	}
	if repo != "" {
		if got := repoFiles(t, repo); !reflect.DeepEqual(got, files) {
			t.Fatalf("the dry run changed the repository:\nbefore %v\nafter  %v", files, got)
		}
	}

	mustPGB(t, "", nil, s.cmd("delete", append(policy, "--confirm")...)...)
	after := deleteTestBackups(t, s)
	if !reflect.DeepEqual(after, before[1:]) {
		t.Fatalf("backups after delete %v, want %v", after, before[1:])
	}
	// Nothing more to delete: the confirmed delete did all the dry run said.
	again := mustPGB(t, "", nil, s.cmd("delete", policy...)...)
	if strings.Contains(again.stdout, "would delete") {
		t.Fatalf("left to delete after --confirm: %s", again)
	}
	if repo != "" {
		checkRepoAfterDelete(t, repo, files, before[0].Name, after[0].StartWAL)
	}

	// A point between the two kept backups: restored from the older one, replaying
	// the WAL that remains.
	c := s.restore(t, "--target-time", target, "--target-action", "promote")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != want {
		t.Fatalf("rows = %d, want every row committed before the target: %d", got, want)
	}
}

// checkRepoAfterDelete checks that nothing of the deleted backup is left and exactly
// the WAL from the oldest kept backup's start segment on.
func checkRepoAfterDelete(t *testing.T, repo string, files []string, deleted, keptStartWAL string) {
	t.Helper()
	for _, f := range repoFiles(t, repo) {
		// A path element, not a substring: a backup started in the same second as the
		// deleted one is named after it with a suffix (NAME-2), and is kept.
		if slices.ContainsFunc(strings.Split(f, "/"), func(e string) bool { return e == deleted || strings.HasPrefix(e, deleted+".") }) {
			t.Errorf("left of the deleted backup: %s", f)
		}
	}
	// Exactly the WAL from the oldest kept backup's start segment on is left.
	wantWAL := wantWALFrom(archivedWALBefore(files), keptStartWAL)
	if len(wantWAL) == len(archivedWALBefore(files)) {
		t.Fatalf("no WAL is older than the oldest kept backup (%s): the test proves nothing", keptStartWAL)
	}
	if got := archivedWAL(t, repo); !reflect.DeepEqual(got, wantWAL) {
		t.Fatalf("WAL after delete %v, want %v", got, wantWAL)
	}
}

// archivedWALBefore is the WAL file names among repository files.
func archivedWALBefore(files []string) []string {
	var out []string
	for _, f := range files {
		if strings.HasPrefix(f, "wal"+string(filepath.Separator)) {
			out = append(out, filepath.Base(f))
		}
	}
	sort.Strings(out)
	return out
}

// wantWALFrom keeps the names whose 24-digit segment is not before start (one
// timeline here) and history files.
func wantWALFrom(names []string, start string) []string {
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ".history") || len(n) >= 24 && n[:24] >= start {
			out = append(out, n)
		}
	}
	return out
}

// permanentScenario is an archiving cluster with a table of ticks, five committed: the
// start of the tests of permanent backups.
func permanentScenario(t *testing.T) *scenario {
	t.Helper()
	repo := newRepo(t)
	s := &scenario{repo: repo, sel: []string{"--repo", repo}}
	s.src = archivingClusterWith(t, s.sel)
	s.src.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)")
	s.tick(t, 5)
	return s
}

// twoLaterBackups commits ticks and takes two full backups, then waits for the WAL:
// what comes after the permanent backup of these tests.
func (s *scenario) twoLaterBackups(t *testing.T) {
	t.Helper()
	for range 2 {
		s.tick(t, 5)
		s.backup(t)
	}
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 30*time.Second)
}

// retainOneFull runs delete --retain-full 1 on the scenario's n backups and returns
// the backups listed before and after.
func (s *scenario) retainOneFull(t *testing.T, n int) (before, after []listedBackup) {
	t.Helper()
	if before = deleteTestBackups(t, s); len(before) != n {
		t.Fatalf("backups %v, want %d", before, n)
	}
	mustPGB(t, "", nil, s.cmd("delete", "--retain-full", "1", "--confirm")...)
	return before, deleteTestBackups(t, s)
}

// ticksAtEnd restores backup name to its end (promoted) and counts the ticks there.
func (s *scenario) ticksAtEnd(t *testing.T, name string) int64 {
	t.Helper()
	c := s.restore(t, "--backup", name, "--target-immediate", "--target-action", "promote")
	c.WaitRecoveryDone(t, 120*time.Second)
	return c.QueryInt(t, "SELECT count(*) FROM ticks")
}

// A backup taken with --permanent outlives a policy that keeps only the newest one,
// and still restores: the WAL it needs to become consistent was kept.
func TestPermanentBackupSurvivesDeleteAndRestores(t *testing.T) {
	pgtest.RequireParallel(t)
	s := permanentScenario(t)
	mustPGB(t, "", s.src.Env(), s.cmd("backup-push", "--fast", "--permanent")...)
	atPermanent := s.src.QueryInt(t, "SELECT count(*) FROM ticks")
	s.twoLaterBackups(t)
	before, after := s.retainOneFull(t, 3)
	if want := []listedBackup{before[0], before[2]}; !reflect.DeepEqual(after, want) {
		t.Fatalf("backups after delete %v, want the permanent and the newest %v", after, want)
	}
	if got := s.ticksAtEnd(t, before[0].Name); got != atPermanent {
		t.Fatalf("rows in the permanent backup = %d, want %d", got, atPermanent)
	}
}

// A permanent incremental backup keeps its chain through a delete: the backups it
// builds on stay, with the WAL each needs to become consistent, verify finds nothing
// missing (it judges them by that WAL, not by WAL to the end of the archive), and the
// permanent backup still restores.
func TestPermanentIncrementalBackupKeepsItsChainThroughDelete(t *testing.T) {
	pgtest.RequireParallel(t)
	s := permanentScenario(t)
	s.backup(t)
	s.tick(t, 5)
	mustPGB(t, "", s.src.Env(), s.cmd("backup-push", "--fast", "--incremental", "--permanent")...)
	atPermanent := s.src.QueryInt(t, "SELECT count(*) FROM ticks")
	s.twoLaterBackups(t)
	before, after := s.retainOneFull(t, 4)
	if want := []listedBackup{before[0], before[1], before[3]}; !reflect.DeepEqual(after, want) {
		t.Fatalf("backups after delete %v, want the permanent incremental, its full backup and the newest %v", after, want)
	}
	if r := pgb(t, "", nil, s.cmd("verify", "--wal")...); r.code != 0 {
		t.Fatalf("verify --wal after delete kept a permanent incremental backup's chain: %s", r)
	}
	if got := s.ticksAtEnd(t, before[1].Name); got != atPermanent {
		t.Fatalf("rows in the permanent incremental backup = %d, want %d", got, atPermanent)
	}
}
