package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// drillReport is the part of pgb drill --json these tests read.
type drillReport struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Reached struct {
		Promoted   bool       `json:"promoted"`
		LastCommit *time.Time `json:"last_commit"`
	} `json:"reached"`
	RPO struct {
		GapSeconds         *float64   `json:"gap_seconds"`
		LastArchivedCommit *time.Time `json:"last_archived_commit"`
	} `json:"rpo"`
	RTO struct {
		TotalSeconds  float64 `json:"total_seconds"`
		BytesRestored int64   `json:"bytes_restored"`
	} `json:"rto"`
	Checks []struct {
		Name   string `json:"name"`
		Passed bool   `json:"passed"`
		Detail string `json:"detail"`
	} `json:"checks"`
	Warnings []string `json:"warnings"`
}

// ticksCluster is an archiving cluster with a table ticks and a backup of it.
func ticksCluster(t *testing.T, repo string) *pgtest.Cluster {
	t.Helper()
	c := archivingCluster(t, repo)
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	return c
}

// writingCluster is an archiving cluster with a backup and commits after it, all
// archived; it returns the cluster and the time of its last commit.
func writingCluster(t *testing.T, repo string) (*pgtest.Cluster, time.Time) {
	t.Helper()
	c := archivingCluster(t, repo)
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	commitAt(t, c)
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	c.GenerateWAL(t, 1)
	last := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	return c, last
}

// assertNoDrillLeft fails when a postgres process runs on a data directory inside
// scratch, or scratch still exists.
func assertNoDrillLeft(t *testing.T, scratch string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasSuffix(args[0], "postgres") && strings.Contains(string(b), scratch) {
			t.Errorf("a postgres is left running on the scratch directory: %s %q", p, args)
		}
	}
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Errorf("scratch directory %s left behind: %v", scratch, err)
	}
}

func TestDrillReachesTheEndOfTheArchiveOfAClusterThatKeptWriting(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	_, last := writingCluster(t, repo)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--json")
	var rep drillReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.OK {
		t.Fatalf("pgb drill: %v\n%s", err, r)
	}
	if !rep.Reached.Promoted || rep.Reached.LastCommit == nil || rep.Reached.LastCommit.Before(last) {
		t.Fatalf("the drill did not reach the last commit at %s: %s", last, r)
	}
	if rep.RPO.GapSeconds == nil || *rep.RPO.GapSeconds < 0 || *rep.RPO.GapSeconds > 3 {
		t.Fatalf("RPO gap, want a few seconds at most: %s", r)
	}
	if rep.RTO.TotalSeconds <= 0 || rep.RTO.BytesRestored <= 0 || len(rep.Checks) == 0 {
		t.Fatalf("RTO or checks missing: %s", r)
	}
	for _, c := range rep.Checks {
		if !c.Passed {
			t.Fatalf("check %s failed: %s", c.Name, r)
		}
	}
	assertNoDrillLeft(t, scratch)

	human := mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch)
	for _, line := range strings.Split(human.stdout, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line wider than 80 columns: %q", line)
		}
	}
	t.Logf("pgb drill:\n%s", human.stdout)
	assertNoDrillLeft(t, scratch)
}

func TestDrillWhoseCheckSQLFailsExitsNonZeroAndNamesTheStatement(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	writingCluster(t, repo)
	dir := pgtest.TempDir(t)
	checks := filepath.Join(dir, "checks.sql")
	sql := "-- the table is there\nSELECT count(*) > 0 FROM ticks;\n\nSELECT count(*) = 0\n  FROM ticks;\n"
	if err := os.WriteFile(checks, []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(dir, "scratch")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--check-sql", checks)
	if r.code != 3 || !strings.Contains(r.stderr, "check-sql line 4: SELECT count(*) = 0") || !strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("pgb drill --check-sql with a failing statement: %s", r)
	}
	if !strings.Contains(r.stdout, "ok   check-sql line 2") {
		t.Errorf("the passing statement is not reported as passed: %s", r)
	}
	assertNoDrillLeft(t, scratch)
}

// serverPid is the pid in a drill's "server started, pid N, …" line.
func serverPid(line string) int {
	_, after, _ := strings.Cut(line, "pid ")
	f := strings.Fields(after)
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSuffix(f[0], ","))
	return pid
}

func TestDrillStoppedBySIGTERMLeavesNoServerAndNoScratchDir(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	writingCluster(t, repo)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	// The test hook holds the drill once its server has started: SIGTERM comes mid-way.
	b := startPGBReading(t, []string{"PGB_TEST_DRILL_HANG_AFTER_START=1"}, "drill", "--repo", repo, "--scratch", scratch)
	pid := serverPid(b.until(t, "server started, pid", "the server started"))
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stderr, err := b.wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("pgb drill after SIGTERM: %v, want exit 143\n%s", err, stderr)
	}
	if pid > 0 {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("the drill's server (pid %d) still runs", pid)
		}
	}
	assertNoDrillLeft(t, scratch)
}

func TestDrillToARestorePointPausesThereAndKeepsTheServerForALook(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	c.Exec(t, "INSERT INTO ticks (pad) SELECT 'before' FROM generate_series(1, 5)")
	mustPGB(t, "", c.Env(), "restore-point", "--repo", repo, "before_more")
	c.Exec(t, "INSERT INTO ticks (pad) SELECT 'after' FROM generate_series(1, 7)")
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	dir := pgtest.TempDir(t)
	scratch, reportFile := filepath.Join(dir, "scratch"), filepath.Join(dir, "drill.json")
	r := mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--target", "before_more", "--keep", "--report", reportFile)
	b, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatalf("--report: %v\n%s", err, r)
	}
	var rep struct {
		OK      bool `json:"ok"`
		Reached struct {
			Promoted bool `json:"promoted"`
		} `json:"reached"`
		Kept *struct {
			Socket string `json:"socket_dir"`
			Port   int    `json:"port"`
			Pid    int    `json:"pid"`
		} `json:"kept"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || !rep.OK || rep.Reached.Promoted || rep.Kept == nil {
		t.Fatalf("report %s: %v\n%s", b, err, r)
	}
	if !strings.Contains(r.stdout, "Kept running") || !strings.Contains(r.stdout, "psql -h "+scratch) {
		t.Errorf("--keep does not say how to connect:\n%s", r.stdout)
	}
	out, err := exec.Command(filepath.Join(pgtest.Require(t), "psql"), "-h", rep.Kept.Socket, "-p", strconv.Itoa(rep.Kept.Port), "-U", "postgres",
		"-XAtc", "SELECT count(*) FROM ticks", "postgres").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "5" {
		t.Fatalf("the kept copy at the restore point: %v %q, want 5 rows", err, out)
	}
	if err := syscall.Kill(rep.Kept.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitUntil(t, "the kept server to stop", 60*time.Second, func() (bool, string) {
		_, err := os.Stat("/proc/" + strconv.Itoa(rep.Kept.Pid))
		return os.IsNotExist(err), "still running"
	})
	if err := os.RemoveAll(scratch); err != nil {
		t.Fatal(err)
	}
	assertNoDrillLeft(t, scratch)
}

func TestDrillOfAClusterWithATablespaceOnThisHostWritesOnlyInItsScratchDir(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	spc := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "spc"))
	src.Exec(t, "CREATE TABLESPACE fast LOCATION '"+spc+"'")
	src.Exec(t, "CREATE TABLE on_fast (v int) TABLESPACE fast")
	src.Exec(t, "INSERT INTO on_fast SELECT generate_series(1, 5000)")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	dir := pgtest.TempDir(t)
	checks := filepath.Join(dir, "checks.sql")
	if err := os.WriteFile(checks, []byte("SELECT count(*) = 5000 FROM on_fast;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(dir, "scratch")
	mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--check-sql", checks)
	if got := src.QueryInt(t, "SELECT count(*) FROM on_fast"); got != 5000 {
		t.Fatalf("the source's tablespace after the drill: %d rows, want 5000", got)
	}
	assertNoDrillLeft(t, scratch)
}

func TestDrillWithAWALSegmentLostFromTheMiddleFailsAndNamesIt(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	commitAt(t, c)
	mid := c.GenerateWAL(t, 3)
	c.GenerateWAL(t, 2)
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	if err := os.Remove(filepath.Join(repo, "wal", mid[:16], mid)); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch)
	if r.code != 3 || !strings.Contains(r.stdout+r.stderr, "missing "+mid) {
		t.Fatalf("a drill over an archive missing %s: want exit 3 naming it\n%s", mid, r)
	}
	assertNoDrillLeft(t, scratch)
}

// The drilled copy keeps the source's settings; an absolute external_pid_file among
// them must not make the copy overwrite (and, at its shutdown, delete) the source's.
func TestDrillOfAClusterWithAnExternalPidFileLeavesTheSourcesAlone(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	pidFile := filepath.Join(c.Dir(), "source.pid")
	c.Exec(t, "ALTER SYSTEM SET external_pid_file = '"+pidFile+"'")
	c.Restart(t)
	before, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the source wrote no external pid file: %v", err)
	}
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch)
	after, err := os.ReadFile(pidFile)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the source's external pid file after the drill: %q, %v; want it untouched (%q)", after, err, before)
	}
	assertNoDrillLeft(t, scratch)
}

// A cluster whose only superuser is not named after the OS user that runs it: the
// drill's default database user does not exist there. That is no "not ready yet": the
// drill says at once to pass --user (it used to retry until --timeout).
func TestDrillOfAClusterWithoutAPostgresRoleNamesUserAndPassesWithIt(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := pgtest.NewCluster(t, pgtest.Options{Superuser: "dba",
		ArchiveCommand: pgtest.BuildPGB(t) + " wal-push --repo " + repo + " %p"})
	c.Start(t)
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	// --timeout is only a safety net: the drill must not wait for it.
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--timeout", "2m")
	if r.code == 0 || !strings.Contains(r.stderr, "--user") || strings.Contains(r.stderr, "--timeout") {
		t.Fatalf("a drill connecting as a role the cluster lacks: want a failure naming --user\n%s", r)
	}
	assertNoDrillLeft(t, scratch)
	mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--user", "dba")
	assertNoDrillLeft(t, scratch)
}

// Debian's clusters keep postgresql.conf, pg_hba.conf and pg_ident.conf in
// /etc/postgresql/..., outside the data directory: the backup holds none of them. The
// drilled copy must start all the same, and the report say it ran without the source's
// settings.
func TestDrillOfAClusterConfiguredOutsideItsDataDirectoryPassesAndWarns(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	c.Stop(t)
	etc := pgtest.MkdirPG(t, filepath.Join(c.Dir(), "etc"))
	var conf []string
	for _, f := range []struct{ name, setting string }{{"postgresql.conf", "config_file"}, {"pg_hba.conf", "hba_file"}, {"pg_ident.conf", "ident_file"}} {
		if err := os.Rename(filepath.Join(c.DataDir(), f.name), filepath.Join(etc, f.name)); err != nil {
			t.Fatal(err)
		}
		conf = append(conf, f.setting+"="+filepath.Join(etc, f.name))
	}
	src := pgtest.OpenDataDir(t, c.DataDir(), pgtest.Options{Conf: conf})
	src.Start(t)
	src.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	commitAt(t, src)
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--timeout", "5m")
	if r.code != 0 || !strings.Contains(r.stdout, "warning: the backup holds no postgresql.conf") {
		t.Fatalf("a drill of a cluster configured outside its data directory: want it to pass with a warning\n%s", r)
	}
	assertNoDrillLeft(t, scratch)
}

// PostgreSQL pauses recovery by itself when the WAL raises a setting above the copy's
// (max_connections raised on the source after the backup): that pause is not the
// target, and the drill must not report it reached.
func TestDrillToARestorePointPastASettingRaisedAfterTheBackupFailsWhereRecoveryPaused(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	commitAt(t, c)
	c.Exec(t, "ALTER SYSTEM SET max_connections = 150")
	c.Restart(t)
	commitAt(t, c)
	mustPGB(t, "", c.Env(), "restore-point", "--repo", repo, "after_raise")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--target", "after_raise", "--timeout", "5m")
	if r.code != 3 || !strings.Contains(r.stdout+r.stderr, "paused before reaching the target") {
		t.Fatalf("a drill whose recovery paused at a raised setting, short of the restore point: want exit 3 saying so\n%s", r)
	}
	assertNoDrillLeft(t, scratch)
}

// A drill into a directory the user gave leaves it as it was (empty, its mode and
// owner); a kept server stops with the command the report gives, which waits for the
// shutdown before removing the scratch directory.
func TestDrillLeavesAGivenScratchDirAsItWasAndAKeptServerStopsWithItsStopCommand(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	writingCluster(t, repo)
	dir := pgtest.TempDir(t)
	given := filepath.Join(dir, "given")
	if err := os.Mkdir(given, 0o750); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(given)
	if err != nil {
		t.Fatal(err)
	}
	mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", given)
	after, err := os.Stat(given)
	if err != nil {
		t.Fatalf("the given scratch directory is gone: %v", err)
	}
	ents, _ := os.ReadDir(given)
	bst, ast := before.Sys().(*syscall.Stat_t), after.Sys().(*syscall.Stat_t)
	if after.Mode() != before.Mode() || ast.Uid != bst.Uid || ast.Gid != bst.Gid || len(ents) != 0 {
		t.Fatalf("the given scratch directory after the drill: mode %v owner %d:%d, %d entries; want mode %v owner %d:%d, empty",
			after.Mode(), ast.Uid, ast.Gid, len(ents), before.Mode(), bst.Uid, bst.Gid)
	}

	scratch, reportFile := filepath.Join(dir, "kept"), filepath.Join(dir, "drill.json")
	r := mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--keep", "--report", reportFile)
	b, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatalf("--report: %v\n%s", err, r)
	}
	var rep struct {
		Kept *struct {
			Pid  int    `json:"pid"`
			Stop string `json:"stop"`
		} `json:"kept"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.Kept == nil || !strings.Contains(rep.Kept.Stop, "pg_ctl") {
		t.Fatalf("--keep: want a stop command that waits for the shutdown (pg_ctl): %s, %v\n%s", b, err, r)
	}
	if out, err := exec.Command("sh", "-c", rep.Kept.Stop).CombinedOutput(); err != nil {
		t.Fatalf("the report's stop command %q: %v\n%s", rep.Kept.Stop, err, out)
	}
	if processRuns(rep.Kept.Pid) {
		t.Errorf("the kept server (pid %d) still runs after the stop command", rep.Kept.Pid)
	}
	assertNoDrillLeft(t, scratch)
}

// processRuns says whether process pid exists and is no zombie (an exited server
// whose parent, pgb, is gone waits for init to reap it).
func processRuns(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(after, "Z")
}

// A check that never ends (amcheck on a huge cluster, a runaway --check-sql) is
// cancelled at --check-timeout: the drill fails saying so, and cleans up.
func TestDrillWhoseCheckHangsFailsAtTheCheckTimeout(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	writingCluster(t, repo)
	dir := pgtest.TempDir(t)
	checks := filepath.Join(dir, "checks.sql")
	if err := os.WriteFile(checks, []byte("SELECT pg_sleep(36000) IS NOT NULL;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(dir, "scratch")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--check-sql", checks, "--check-timeout", "1s")
	// The check cancelled is the SQL, or pg_amcheck when the machine is slow enough
	// for it to take the whole second: either way the checks are bounded.
	if r.code != 3 || !strings.Contains(r.stderr, "did not finish within --check-timeout 1s") {
		t.Fatalf("a drill whose check outlasts --check-timeout: want exit 3 naming the timeout\n%s", r)
	}
	assertNoDrillLeft(t, scratch)
}

func TestDrillOnS3ReachesTheEndOfTheArchiveOfAClusterThatKeptWriting(t *testing.T) {
	pgtest.Require(t)
	sel, _ := s3Repo(t, 0, "")
	c := archivingClusterWith(t, sel)
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	commitAt(t, c)
	mustPGB(t, "", c.Env(), append([]string{"backup-push", "--fast"}, sel...)...)
	c.GenerateWAL(t, 1)
	last := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := pgb(t, "", nil, append([]string{"drill", "--scratch", scratch, "--json"}, sel...)...)
	var rep drillReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.OK {
		t.Fatalf("pgb drill on S3: %v\n%s", err, r)
	}
	if !rep.Reached.Promoted || rep.Reached.LastCommit == nil || rep.Reached.LastCommit.Before(last) {
		t.Fatalf("the drill did not reach the last commit at %s: %s", last, r)
	}
	if rep.RPO.GapSeconds == nil || *rep.RPO.GapSeconds < 0 || *rep.RPO.GapSeconds > 3 {
		t.Fatalf("RPO gap, want a few seconds at most: %s", r)
	}
	t.Logf("RPO gap %.3f s, RTO %.1f s", *rep.RPO.GapSeconds, rep.RTO.TotalSeconds)
	assertNoDrillLeft(t, scratch)
}

func TestDrillToATransactionPausesRightAfterItsCommit(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	c.Exec(t, "INSERT INTO ticks (pad) SELECT 'before' FROM generate_series(1, 4)")
	xid := c.QueryString(t, "INSERT INTO ticks (pad) VALUES ('target') RETURNING pg_current_xact_id()::text")
	c.Exec(t, "INSERT INTO ticks (pad) SELECT 'after' FROM generate_series(1, 7)")
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	dir := pgtest.TempDir(t)
	checks := filepath.Join(dir, "checks.sql")
	if err := os.WriteFile(checks, []byte("SELECT count(*) = 5 FROM ticks;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(dir, "scratch")
	r := mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--target-xid", xid, "--check-sql", checks)
	if !strings.Contains(r.stdout, "Drill PASSED: target transaction "+xid) {
		t.Fatalf("pgb drill --target-xid %s:\n%s", xid, r)
	}
	assertNoDrillLeft(t, scratch)
}

// A pgb drill killed outright (SIGKILL) cannot stop its server. The next drill says
// so, with the command that stops it, which works; it stops nothing itself.
func TestDrillAfterAKilledDrillWarnsOfItsServerAndHowToStopIt(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	writingCluster(t, repo)
	tmp := pgtest.TempDir(t)
	b := startPGBReading(t, []string{"TMPDIR=" + tmp, "PGB_TEST_DRILL_HANG_AFTER_START=1"}, "drill", "--repo", repo)
	started := b.until(t, "server started, pid", "the server started")
	pid := serverPid(started)
	// "server started" is said once postgres runs, before it has written its
	// postmaster.pid. A drill killed that early leaves a server the next drill
	// cannot find yet; this test is about one that is up.
	_, data, _ := strings.Cut(started, "data directory ")
	pgtest.WaitUntil(t, "the drill's server to write its postmaster.pid", 30*time.Second, func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
		first, _, _ := strings.Cut(string(b), "\n")
		return err == nil && first == strconv.Itoa(pid), fmt.Sprintf("%q %v", first, err)
	})
	_ = b.cmd.Process.Kill()
	_, _ = b.wait()
	t.Cleanup(func() { // when the test fails before the stop command stopped it
		if pid > 0 && processRuns(pid) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})
	left, _ := filepath.Glob(filepath.Join(tmp, "pgb-drill-*"))
	if len(left) != 1 || !processRuns(pid) {
		t.Fatalf("want the killed drill's server (pid %d) and scratch dir left behind, found %v", pid, left)
	}

	r := pgb(t, "", []string{"TMPDIR=" + tmp}, "drill", "--repo", repo, "--json")
	var rep struct {
		OK       bool     `json:"ok"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.OK {
		t.Fatalf("the next drill: %v\n%s", err, r)
	}
	var stop string
	for _, w := range rep.Warnings {
		if strings.Contains(w, "pid "+strconv.Itoa(pid)) && strings.Contains(w, left[0]) {
			_, stop, _ = strings.Cut(w, "stop it with: ")
		}
	}
	if stop == "" || !processRuns(pid) {
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		_, pidErr := os.Stat(filepath.Join(left[0], "data", "postmaster.pid"))
		t.Fatalf("the next drill does not warn of the server left running (pid %d on %s), or stopped it itself (stat %q, cwd %q, postmaster.pid: %v):\n%s",
			pid, left[0], stat, cwd, pidErr, r)
	}
	if out, err := exec.Command("sh", "-c", stop).CombinedOutput(); err != nil {
		t.Fatalf("the warning's stop command %q: %v\n%s", stop, err, out)
	}
	if processRuns(pid) {
		t.Errorf("the left server (pid %d) still runs after the stop command", pid)
	}
	assertNoDrillLeft(t, left[0])
}
