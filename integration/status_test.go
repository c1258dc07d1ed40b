package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// statusReport is the part of pgb status --json these tests read.
type statusReport struct {
	Windows []struct {
		Backup     string `json:"from_backup"`
		LastCommit *struct {
			Xid  uint32    `json:"xid"`
			Time time.Time `json:"time"`
		} `json:"last_commit"`
		CutByGap    bool   `json:"cut_by_gap"`
		LastSegment string `json:"last_segment"`
	} `json:"windows"`
	Gaps []struct {
		From  string `json:"from"`
		To    string `json:"to"`
		Count int    `json:"count"`
	} `json:"gaps"`
	NewestWAL *struct {
		Segment string `json:"segment"`
	} `json:"newest_wal"`
	SystemIdentifier string `json:"system_identifier"`
	PGVersion        int    `json:"pg_version"`
	Backups          []struct {
		Name      string `json:"name"`
		Permanent bool   `json:"permanent"`
		Usable    bool   `json:"usable"`
	} `json:"backups"`
	Target *struct {
		Reachable bool   `json:"reachable"`
		Backup    string `json:"backup"`
		Reason    string `json:"reason"`
	} `json:"target"`
}

func statusJSON(t *testing.T, repo string, args ...string) (statusReport, result) {
	t.Helper()
	r := pgb(t, "", nil, append([]string{"status", "--repo", repo, "--json"}, args...)...)
	var s statusReport
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("pgb status --json: %v\n%s", err, r)
	}
	return s, r
}

// commitAt commits one row and returns the time taken inside the committing
// transaction: its commit record's timestamp is a few milliseconds later.
func commitAt(t *testing.T, c *pgtest.Cluster) time.Time {
	t.Helper()
	s := c.QueryString(t, "INSERT INTO ticks (pad) VALUES ('x') RETURNING to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func TestStatusShowsTheLastArchivedCommitAsTheEndOfTheWindow(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	c.GenerateWAL(t, 2)
	last := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	s, r := statusJSON(t, repo)
	if r.code != 0 || len(s.Windows) != 1 || len(s.Gaps) != 0 {
		t.Fatalf("status: %s", r)
	}
	w := s.Windows[0]
	if w.LastCommit == nil || w.LastCommit.Time.Before(last) || w.LastCommit.Time.Sub(last) > time.Second {
		t.Fatalf("window ends at %+v, want the last commit at %s (within 1 s)\n%s", w.LastCommit, last, r)
	}
	if s.SystemIdentifier == "" || s.PGVersion != 15 || len(s.Backups) != 1 || !s.Backups[0].Usable {
		t.Fatalf("status: %s", r)
	}
	human := mustPGB(t, "", nil, "status", "--repo", repo)
	for _, line := range strings.Split(human.stdout, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line wider than 80 columns: %q", line)
		}
	}
	if !strings.HasPrefix(human.stdout, "Recoverable window") {
		t.Errorf("the window does not come first:\n%s", human.stdout)
	}
	t.Logf("pgb status:\n%s", human.stdout)

	// status --at and restore agree: just before the last commit is reachable, at it
	// and after it are not.
	before := w.LastCommit.Time.Add(-time.Millisecond).Format(time.RFC3339Nano)
	after := w.LastCommit.Time.Add(time.Second).Format(time.RFC3339Nano)
	if s, r := statusJSON(t, repo, "--at", before); r.code != 0 || s.Target == nil || !s.Target.Reachable || s.Target.Backup != s.Backups[0].Name {
		t.Fatalf("status --at %s: %s", before, r)
	}
	if s, r := statusJSON(t, repo, "--at", after); r.code != 2 || s.Target == nil || s.Target.Reachable || !strings.Contains(s.Target.Reason, "after the last archived commit") {
		t.Fatalf("status --at %s: %s", after, r)
	}
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--target-time", after); r.code != 1 ||
		!strings.Contains(r.stderr, "after the last archived commit") || !strings.Contains(r.stderr, w.LastCommit.Time.Format(time.RFC3339Nano)) {
		t.Fatalf("restore --target-time %s: %s", after, r)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("restore refused but wrote %s: %v", dir, err)
	}
	c2 := filepath.Join(pgtest.TempDir(t), "restored2")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", c2, "--target-time", before)
}

func TestStatusShowsAMissingWALSegmentAndRestoreAfterItIsRefused(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	commitAt(t, c)
	mid := c.GenerateWAL(t, 3)
	c.GenerateWAL(t, 2)
	late := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	// The middle segment is lost.
	key := filepath.Join(repo, "wal", mid[:16], mid)
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	s, r := statusJSON(t, repo)
	if r.code != 0 || len(s.Gaps) != 1 || s.Gaps[0].From != mid || s.Gaps[0].Count != 1 || len(s.Windows) != 1 || !s.Windows[0].CutByGap {
		t.Fatalf("status after losing %s: %s", mid, r)
	}
	human := mustPGB(t, "", nil, "status", "--repo", repo)
	if !strings.Contains(human.stdout, "CUT by missing WAL") || !strings.Contains(human.stdout, "missing "+mid) {
		t.Fatalf("status does not say the window is cut:\n%s", human.stdout)
	}
	t.Logf("pgb status:\n%s", human.stdout)

	at := late.Add(-time.Millisecond).Format(time.RFC3339Nano)
	if s, r := statusJSON(t, repo, "--at", at); r.code != 2 || s.Target.Reachable || !strings.Contains(s.Target.Reason, "gap") {
		t.Fatalf("status --at %s (after the gap): %s", at, r)
	}
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	for _, extra := range [][]string{nil, {"--target-beyond-archive"}} {
		args := append([]string{"restore", "--repo", repo, "--pgdata", dir, "--target-time", at}, extra...)
		if r := pgb(t, "", nil, args...); r.code != 1 || !strings.Contains(r.stderr, "gap") || !strings.Contains(r.stderr, mid) {
			t.Fatalf("restore %v: %s", extra, r)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("restore refused but wrote %s: %v", dir, err)
		}
	}
	// To the end of the archive too: recovery would promote at the gap, the WAL
	// archived after it never replayed.
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir); r.code != 1 || !strings.Contains(r.stderr, "missing "+mid) || !strings.Contains(r.stderr, "never replaying the archived") {
		t.Fatalf("restore to the end of the archive across the gap: %s", r)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("restore refused but wrote %s: %v", dir, err)
	}
}
