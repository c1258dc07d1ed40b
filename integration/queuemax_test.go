package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// repoOutage makes the filesystem repository unreachable — its directory moved
// away and a file in its place, which no user, root included, can store into — and
// returns what brings it back.
func repoOutage(t *testing.T, repo string) (back func()) {
	t.Helper()
	away := repo + ".away"
	if err := os.Rename(repo, away); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(repo, []byte("not a repository\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(repo); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(away, repo); err != nil {
			t.Fatal(err)
		}
	}
}

// readyAndDropped counts the .ready files in pg_wal/archive_status and the local
// drop records in pg_wal/pgb/dropped.
func readyAndDropped(t *testing.T, c *pgtest.Cluster) (ready, dropped []string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.DataDir(), "pg_wal", "archive_status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".ready"); ok {
			ready = append(ready, n)
		}
	}
	ents, err = os.ReadDir(filepath.Join(c.DataDir(), "pg_wal", "pgb", "dropped"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && len(n) == 24 {
			dropped = append(dropped, n)
		}
	}
	return ready, dropped
}

// A user who chose wal-push-queue-max (32 MiB: two segments) loses the repository
// for a while: PostgreSQL's archiver fails, then wal-push drops segments rather than
// let pg_wal fill, logging an error for each; once the repository is back the next
// push records the drops as a gap, pgb status shows it with its cause, and a restore
// to a time after it is refused with that cause, before anything is written.
func TestArchiveOutageWithQueueMaxDropsWALAndRecordsTheGap(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo, "--wal-push-queue-max", "32MiB")
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	before := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 60*time.Second)

	// Within the limit a failed push fails: PostgreSQL keeps the segment and retries.
	back := repoOutage(t, repo)
	c.GenerateWAL(t, 1)
	c.WaitFor(t, "the archiver to fail", 2*time.Minute, func() (bool, string, error) {
		s, err := c.TryArchiverStats()
		return err == nil && s.FailedCount > 0, s.String(), err
	})
	if _, dropped := readyAndDropped(t, c); len(dropped) != 0 {
		t.Fatalf("dropped within the limit: %v", dropped)
	}
	// Beyond it, segments are dropped until the backlog is back within the limit.
	c.GenerateWAL(t, 5)
	c.WaitFor(t, "wal-push-queue-max to drop WAL down to the limit", 3*time.Minute, func() (bool, string, error) {
		ready, dropped := readyAndDropped(t, c)
		return len(dropped) >= 4 && len(ready) <= 2, fmt.Sprintf("%d ready, %d dropped", len(ready), len(dropped)), nil
	})
	ready, dropped := readyAndDropped(t, c)
	stats := c.ArchiverStats(t)
	if len(ready) > 2 {
		t.Errorf("pg_wal holds %d segments waiting, beyond the 32 MiB limit: %v", len(ready), ready)
	}
	log := mustRead(t, c.LogFile())
	for _, seg := range dropped {
		line := ""
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "WAL DROPPED") && strings.Contains(l, "segment="+seg) {
				line = l
			}
		}
		for _, w := range []string{"level=ERROR", "point-in-time recovery across this segment is no longer possible", `limit="32.0 MiB"`, "backlog="} {
			if !strings.Contains(line, w) {
				t.Errorf("the log line of dropped %s lacks %q: %q", seg, w, line)
			}
		}
	}
	t.Logf("dropped %v; %d waiting; %s", dropped, len(ready), stats)

	// Status on the database host shows the backlog and the drops not yet recorded in
	// the repository (read where it was moved: the archiver must not see it yet).
	local := pgb(t, c.DataDir(), nil, "status", "--repo", repo+".away")
	for _, w := range []string{fmt.Sprintf("Archiver:    %d files", len(ready)), fmt.Sprintf("%d DROPPED segments not yet recorded in the repository", len(dropped))} {
		if !strings.Contains(local.stdout, w) {
			t.Errorf("status in the data directory lacks %q:\n%s", w, local)
		}
	}
	back()

	c.GenerateWAL(t, 1)
	late := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 2*time.Minute)
	if _, left := readyAndDropped(t, c); len(left) != 0 {
		t.Fatalf("drop records left after pushes succeeded: %v\n%s", left, c.LogTail(20))
	}
	var gaps []string
	for _, f := range repoFiles(t, repo) {
		if strings.HasPrefix(f, "gaps/") {
			gaps = append(gaps, f)
		}
	}
	want := fmt.Sprintf("gaps/%s/%s-%s.json", dropped[0][:8], dropped[0], dropped[len(dropped)-1])
	if len(gaps) != 1 || gaps[0] != want {
		t.Fatalf("gap records %v, want %s", gaps, want)
	}

	s, r := statusJSON(t, repo)
	if r.code != 0 || len(s.Windows) != 1 || !s.Windows[0].CutByGap || len(s.Gaps) != 1 || s.Gaps[0].From != dropped[0] || s.Gaps[0].To != dropped[len(dropped)-1] {
		t.Fatalf("status: %s", r)
	}
	if !strings.Contains(r.stdout, `"dropped": true`) || !strings.Contains(r.stdout, `"cause": "WAL dropped by wal-push-queue-max on `) {
		t.Fatalf("status --json does not give the cause: %s", r.stdout)
	}
	human := mustPGB(t, "", nil, "status", "--repo", repo)
	for _, w := range []string{"CUT by DROPPED WAL", "DROPPED " + dropped[0], "WAL dropped by wal-push-queue-max on"} {
		if !strings.Contains(human.stdout, w) {
			t.Errorf("status lacks %q:\n%s", w, human.stdout)
		}
	}
	t.Logf("pgb status:\n%s", human.stdout)

	at := late.Add(-time.Millisecond).Format(time.RFC3339Nano)
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	for _, extra := range [][]string{nil, {"--dry-run"}, {"--target-beyond-archive"}} {
		args := append([]string{"restore", "--repo", repo, "--pgdata", dir, "--target-time", at}, extra...)
		r := pgb(t, "", nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "dropped "+dropped[0]) || !strings.Contains(r.stderr, "WAL dropped by wal-push-queue-max") {
			t.Fatalf("restore %v across the dropped WAL: %s", extra, r)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("restore refused but wrote %s: %v", dir, err)
		}
	}
	// Restore to the end of the archive (no target) would stop at the drop and promote,
	// never replaying the WAL archived after it: refused, saying so, nothing written.
	for _, extra := range [][]string{nil, {"--dry-run"}} {
		r := pgb(t, "", nil, append([]string{"restore", "--repo", repo, "--pgdata", dir}, extra...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "dropped "+dropped[0]) || !strings.Contains(r.stderr, "WAL dropped by wal-push-queue-max") ||
			!strings.Contains(r.stderr, "never replaying the archived") || !strings.Contains(r.stderr, "--target-lsn") {
			t.Fatalf("restore %v to the end of the archive across the dropped WAL: %s", extra, r)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("restore refused but wrote %s: %v", dir, err)
		}
	}
	// A backup taken after the drop starts a window that reaches the end: restore to
	// the end starts from it.
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	s, r = statusJSON(t, repo)
	if r.code != 0 || len(s.Backups) != 2 {
		t.Fatalf("status after a backup past the drop: %s", r)
	}
	if r := mustPGB(t, "", nil, "restore", "--repo", repo, "--dry-run"); !strings.Contains(r.stdout, "would restore backup "+s.Backups[1].Name) {
		t.Fatalf("restore --dry-run to the end after a backup past the drop: %s", r)
	}
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--target-time", before.Format(time.RFC3339Nano))
}

// Without wal-push-queue-max the same outage makes archiving fail — PostgreSQL keeps
// every segment and retries — and nothing is dropped: once the repository is back,
// every segment reaches it and the window has no gap.
func TestArchiveOutageWithoutQueueMaxFailsAndDropsNothing(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	c.WaitArchived(t, c.SwitchWAL(t), 60*time.Second)
	failed := c.ArchiverStats(t).FailedCount

	back := repoOutage(t, repo)
	first := c.GenerateWAL(t, 4)
	c.WaitFor(t, "the archiver to fail", 2*time.Minute, func() (bool, string, error) {
		s, err := c.TryArchiverStats()
		return err == nil && s.FailedCount > failed, s.String(), err
	})
	ready, dropped := readyAndDropped(t, c)
	if len(dropped) != 0 || len(ready) < 4 {
		t.Fatalf("without wal-push-queue-max: %d waiting, dropped %v", len(ready), dropped)
	}
	if log := mustRead(t, c.LogFile()); strings.Contains(log, "WAL DROPPED") {
		t.Fatalf("a drop was logged:\n%s", c.LogTail(30))
	}

	back()
	c.WaitArchived(t, c.SwitchWAL(t), 3*time.Minute)
	s, r := statusJSON(t, repo)
	if r.code != 0 || len(s.Gaps) != 0 || len(s.Windows) != 1 || s.Windows[0].CutByGap {
		t.Fatalf("status after the outage (first segment written during it: %s): %s", first, r)
	}
	for _, f := range repoFiles(t, repo) {
		if strings.HasPrefix(f, "gaps/") {
			t.Fatalf("a gap was recorded: %s", f)
		}
	}
}
