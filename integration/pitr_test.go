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

// scenario is the story pgb exists for: a table gets rows, a base backup is taken
// mid-way, a restore point is made, more rows commit, and then the table is dropped.
type scenario struct {
	repo        string   // the filesystem repository ("" for object stores)
	sel         []string // the flags that select the repository: --repo X or --config F
	src         *pgtest.Cluster
	atPoint     int64  // rows committed when the restore point was made
	beforeDrop  int64  // rows committed before the drop
	lastTS      string // timestamp of the last committed row
	dropTime    string // a time after the last commit and before the drop
	lsnBefore   string // an LSN after the last commit and before the drop
	lastXID     string // the transaction that committed the last row
	backupStop  time.Time
	backupNames []string
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	pgtest.Require(t)
	repo := newRepo(t)
	return newScenarioOn(t, repo, []string{"--repo", repo})
}

// newScenarioOn plays the scenario against the repository that sel selects.
func newScenarioOn(t *testing.T, repo string, sel []string) *scenario {
	t.Helper()
	pgtest.Require(t)
	s := &scenario{repo: repo, sel: sel}
	s.src = archivingClusterWith(t, sel)
	s.src.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)")
	s.tick(t, 20)
	s.backup(t)
	s.tick(t, 20)
	mustPGB(t, "", s.src.Env(), s.cmd("restore-point", "before_release")...)
	s.atPoint = s.src.QueryInt(t, "SELECT count(*) FROM ticks")
	s.tick(t, 20)
	s.lastXID = s.src.QueryString(t, "INSERT INTO ticks (pad) VALUES ('last') RETURNING pg_current_xact_id()")
	s.beforeDrop = s.src.QueryInt(t, "SELECT count(*) FROM ticks")
	s.lastTS = s.src.QueryString(t, "SELECT max(ts) FROM ticks")
	// dropTime is after the last commit and before the drop: the server's clock
	// is seen to pass each before the next step.
	s.waitClockPast(t, s.lastTS)
	s.dropTime = s.src.QueryString(t, "SELECT clock_timestamp()")
	s.lsnBefore = s.src.QueryString(t, "SELECT pg_current_wal_lsn()")
	s.waitClockPast(t, s.dropTime)
	s.src.Exec(t, "DROP TABLE ticks")
	s.src.Exec(t, "CREATE TABLE after_drop AS SELECT 1 AS marker")
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 30*time.Second)
	return s
}

// waitClockPast waits until the server's clock_timestamp() is later than ts.
func (s *scenario) waitClockPast(t *testing.T, ts string) {
	t.Helper()
	s.src.WaitFor(t, "the server clock to pass "+ts, 10*time.Second, func() (bool, string, error) {
		later, err := s.src.TryQueryString("SELECT clock_timestamp() > $1::timestamptz", ts)
		return later == "t", "clock_timestamp() > " + ts + " is " + later, err
	})
}

// cmd is a pgb command line against the scenario's repository.
func (s *scenario) cmd(name string, args ...string) []string {
	return append(append([]string{name}, s.sel...), args...)
}

// tick commits n rows, one transaction each, about 10 ms apart.
func (s *scenario) tick(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		s.src.Exec(t, "INSERT INTO ticks (pad) VALUES (repeat('x', 500))")
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *scenario) backup(t *testing.T) {
	t.Helper()
	r := mustPGB(t, "", s.src.Env(), s.cmd("backup-push", "--fast")...)
	if !strings.Contains(r.stdout, "complete") {
		t.Fatalf("backup-push summary: %s", r)
	}
	var rows []struct {
		Name     string    `json:"name"`
		StopTime time.Time `json:"stop_time"`
	}
	out := mustPGB(t, "", nil, s.cmd("backup-list", "--json")...)
	if err := json.Unmarshal([]byte(out.stdout), &rows); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out.stdout)
	}
	s.backupNames = nil
	for _, r := range rows {
		s.backupNames = append(s.backupNames, r.Name)
	}
	s.backupStop = rows[len(rows)-1].StopTime
}

// restore runs pgb restore into a fresh directory and starts PostgreSQL on it, with
// archiving off so the copy never archives into the scenario's repository.
func (s *scenario) restore(t *testing.T, args ...string) *pgtest.Cluster {
	t.Helper()
	return s.restoreWith(t, []string{"archive_mode = off"}, args...)
}

// restoreWith is restore with the given server settings on the command line.
func (s *scenario) restoreWith(t *testing.T, conf []string, args ...string) *pgtest.Cluster {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r := mustPGB(t, "", nil, s.cmd("restore", append([]string{"--pgdata", dir}, args...)...)...)
	if !strings.Contains(r.stdout, "every file verified") {
		t.Fatalf("restore output: %s", r)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: conf})
	c.Start(t)
	return c
}

func TestRestoreToNamedPointAfterDropTable(t *testing.T) {
	s := newScenario(t)
	c := s.restore(t, "--target-name", "before_release")
	c.WaitRecoveryPaused(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.atPoint {
		t.Fatalf("rows at restore point = %d, want %d", got, s.atPoint)
	}
}

func TestRestoreToTimeJustBeforeTheDrop(t *testing.T) {
	s := newScenario(t)
	c := s.restore(t, "--target-time", s.dropTime, "--target-action", "promote")
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.beforeDrop {
		t.Fatalf("rows = %d, want every committed row: %d", got, s.beforeDrop)
	}
	if got := c.QueryString(t, "SELECT max(ts) FROM ticks"); got != s.lastTS {
		t.Fatalf("last row at %s, want %s", got, s.lastTS)
	}
	c.Exec(t, "INSERT INTO ticks (pad) VALUES ('after recovery')") // promoted: writable
}

func TestRestoreToLSNBeforeTheDrop(t *testing.T) {
	s := newScenario(t)
	// Paused right after the target, the startup process may hold the lock the DROP
	// took (its commit comes later): promote, which rolls the DROP back.
	c := s.restore(t, "--target-lsn", s.lsnBefore, "--target-action", "promote")
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.beforeDrop {
		t.Fatalf("rows = %d, want %d", got, s.beforeDrop)
	}
	if got := c.QueryString(t, "SELECT max(ts) FROM ticks"); got != s.lastTS {
		t.Fatalf("last row at %s, want %s", got, s.lastTS)
	}
}

func TestRestoreToTransactionID(t *testing.T) {
	s := newScenario(t)
	c := s.restore(t, "--target-xid", s.lastXID, "--target-action", "promote")
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.beforeDrop {
		t.Fatalf("rows = %d, want %d", got, s.beforeDrop)
	}
}

func TestRestoreToEndOfArchiveReplaysEverything(t *testing.T) {
	s := newScenario(t)
	// No server-side override here: pgb's own --archive-mode off must do it.
	c := s.restoreWith(t, nil, "--archive-mode", "off")
	if got := c.QueryString(t, "SHOW archive_mode"); got != "off" {
		t.Fatalf("archive_mode of the restored copy = %q, want off", got)
	}
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM after_drop"); got != 1 {
		t.Fatalf("after_drop rows = %d", got)
	}
	if got := c.QueryString(t, "SELECT to_regclass('ticks')::text"); got != "" {
		t.Fatalf("ticks still exists after replaying the drop: %q", got)
	}
}

func TestRestoreRefusesBadRequests(t *testing.T) {
	s := newScenario(t)
	full := pgtest.TempDir(t)
	if err := os.WriteFile(filepath.Join(full, "precious"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args []string
		want string
	}{
		"non-empty dir":        {[]string{"--pgdata", full}, "not empty"},
		"unknown point":        {[]string{"--pgdata", filepath.Join(full, "x"), "--target-name", "nope"}, "no such restore point"},
		"before oldest":        {[]string{"--pgdata", filepath.Join(full, "x"), "--target-time", s.backupStop.Add(-time.Hour).Format(time.RFC3339)}, "before the end of the oldest usable backup"},
		"future time":          {[]string{"--pgdata", filepath.Join(full, "x"), "--target-time", time.Now().Add(time.Hour).Format(time.RFC3339)}, "after the last archived commit"},
		"lsn past the archive": {[]string{"--pgdata", filepath.Join(full, "x"), "--target-lsn", "FF/0"}, "after the last archived commit"},
		"time without zone":    {[]string{"--pgdata", filepath.Join(full, "x"), "--target-time", "2026-01-02 03:04:05"}, "no time zone"},
		"two targets":          {[]string{"--pgdata", filepath.Join(full, "x"), "--target-lsn", "0/1", "--target-immediate"}, "at most one"},
		"unknown backup":       {[]string{"--pgdata", filepath.Join(full, "x"), "--backup", "19990101T000000Z"}, "no such backup"},
		"bad tablespace map":   {[]string{"--pgdata", filepath.Join(full, "x"), "--tablespace-map", "relative=/x"}, "absolute paths"},
		"repository missing":   {[]string{"--pgdata", filepath.Join(full, "x"), "--repo", filepath.Join(full, "norepo")}, "check --repo"},
	}
	for name, c := range cases {
		args := append([]string{"restore", "--repo", s.repo}, c.args...)
		r := pgb(t, "", nil, args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: want a one-line error mentioning %q, got %s", name, c.want, r)
		}
	}
	ents, _ := os.ReadDir(full)
	if len(ents) != 1 {
		t.Fatalf("refused restores wrote into %s: %v", full, ents)
	}
	if b, _ := os.ReadFile(filepath.Join(full, "precious")); string(b) != "keep me" {
		t.Fatal("existing file changed")
	}
}
