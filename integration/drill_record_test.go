package integration

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// statusDrills is the drills part of pgb status --json.
type statusDrills struct {
	Drills struct {
		LastSuccess *struct {
			Finished       time.Time `json:"finished"`
			Backup         string    `json:"backup"`
			RTOSeconds     float64   `json:"rto_seconds"`
			RPOSeconds     *float64  `json:"rpo_seconds"`
			RestoreSeconds float64   `json:"restore_seconds"`
			ReplaySeconds  float64   `json:"replay_seconds"`
			BytesRestored  int64     `json:"bytes_restored"`
			BytesReplayed  int64     `json:"bytes_replayed"`
		} `json:"last_success"`
		LastFailed *struct {
			Error string `json:"error"`
		} `json:"last_failed"`
		Warning string `json:"warning"`
	} `json:"drills"`
	Warnings []string `json:"warnings"`
	Target   *struct {
		Reachable   bool `json:"reachable"`
		RTOEstimate *struct {
			RestoreBytes          int64   `json:"restore_bytes"`
			WALBytes              int64   `json:"wal_bytes"`
			RestoreBytesPerSecond float64 `json:"restore_bytes_per_second"`
			ReplayBytesPerSecond  float64 `json:"replay_bytes_per_second"`
			TotalSeconds          float64 `json:"total_seconds"`
			Drills                int     `json:"drills"`
			Note                  string  `json:"note"`
		} `json:"rto_estimate"`
	} `json:"target"`
}

func drillStatus(t *testing.T, repo string, args ...string) (statusDrills, string) {
	t.Helper()
	r := mustPGB(t, "", nil, append([]string{"status", "--repo", repo, "--json"}, args...)...)
	var s statusDrills
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("pgb status --json: %v\n%s", err, r)
	}
	return s, mustPGB(t, "", nil, append([]string{"status", "--repo", repo}, args...)...).stdout
}

// promValue is the value of metric in a --prom file ("" when absent).
func promValue(t *testing.T, file, metric string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, metric+"{") {
			return l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	return ""
}

// The nightly drill as cron runs it: status warns until a drill passed, then shows
// it; a drill that fails is recorded and shown as failed, its --prom file says
// success 0 and keeps the time of the last success.
func TestNightlyDrillIsRecordedAndStatusShowsTheLastSuccessfulOne(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	_, last := writingCluster(t, repo)
	at := last.UTC().Format(time.RFC3339Nano)
	dir := pgtest.TempDir(t)
	prom := filepath.Join(dir, "pgb_drill.prom")

	s, text := drillStatus(t, repo)
	if s.Drills.LastSuccess != nil || !strings.Contains(s.Drills.Warning, "no successful drill") || len(s.Warnings) != 1 ||
		!strings.Contains(text, "Last successful drill: none recorded") || !strings.Contains(text, "WARNING: no successful drill") {
		t.Fatalf("before any drill: %+v\n%s", s, text)
	}

	s, text = drillStatus(t, repo, "--at", at)
	if e := s.Target.RTOEstimate; e == nil || e.Note != "no drill recorded: run pgb drill to measure" || e.TotalSeconds != 0 ||
		!strings.Contains(text, "no drill recorded: run pgb drill to measure") {
		t.Fatalf("RTO estimate before any drill: %+v\n%s", s.Target, text)
	}

	r := mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", filepath.Join(dir, "scratch"), "--prom", prom)
	if !strings.Contains(r.stdout, "Recorded as drills/") {
		t.Errorf("the report does not say where the drill was recorded:\n%s", r)
	}
	if v := promValue(t, prom, "pgb_drill_success"); v != "1" {
		t.Fatalf("pgb_drill_success %q after a drill that passed", v)
	}
	passedAt := promValue(t, prom, "pgb_drill_timestamp_seconds")
	if promValue(t, prom, "pgb_drill_last_success_timestamp_seconds") != passedAt || promValue(t, prom, "pgb_drill_rto_seconds") == "" {
		t.Fatalf("prom file after a drill that passed:\n%s", mustRead(t, prom))
	}
	s, text = drillStatus(t, repo)
	if ls := s.Drills.LastSuccess; ls == nil || ls.Backup == "" || ls.RTOSeconds <= 0 || ls.RPOSeconds == nil || s.Drills.Warning != "" || len(s.Warnings) != 0 {
		t.Fatalf("after a drill that passed: %+v\n%s", s, text)
	}
	if !strings.Contains(text, "Last successful drill: ") || strings.Contains(text, "WARNING") || strings.Contains(text, "FAILED") {
		t.Fatalf("status after a drill that passed:\n%s", text)
	}
	for _, line := range strings.Split(text, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line wider than 80 columns: %q", line)
		}
	}
	t.Logf("pgb status after a drill:\n%s", text)

	// The estimate is the drill's throughput applied to the bytes the target needs.
	ls := s.Drills.LastSuccess
	s, text = drillStatus(t, repo, "--at", at)
	e := s.Target.RTOEstimate
	if e == nil || e.Note != "" || e.Drills != 1 || e.RestoreBytes <= 0 || e.WALBytes <= 0 {
		t.Fatalf("RTO estimate after a drill: %+v\n%s", s.Target, text)
	}
	restoreRate, replayRate := float64(ls.BytesRestored)/ls.RestoreSeconds, float64(ls.BytesReplayed)/ls.ReplaySeconds
	want := float64(e.RestoreBytes)/restoreRate + float64(e.WALBytes)/replayRate
	if !near(e.RestoreBytesPerSecond, restoreRate) || !near(e.ReplayBytesPerSecond, replayRate) || !near(e.TotalSeconds, want) {
		t.Fatalf("RTO estimate %+v, want %.0f B/s, %.0f B/s, %.3f s from the drill %+v", e, restoreRate, replayRate, want, ls)
	}
	if !strings.Contains(text, "RTO estimate: ") || !strings.Contains(text, "(throughput: the last drill on this repository)") {
		t.Fatalf("status --at after a drill:\n%s", text)
	}
	dry := mustPGB(t, "", nil, "restore", "--repo", repo, "--dry-run", "--target-time", at)
	if !strings.Contains(dry.stdout, "RTO estimate: ") || !strings.Contains(dry.stdout, "nothing was written") {
		t.Fatalf("restore --dry-run after a drill:\n%s", dry)
	}
	t.Logf("pgb status --at %s:\n%s\npgb restore --dry-run:\n%s", at, text, dry.stdout)

	checks := filepath.Join(dir, "checks.sql")
	if err := os.WriteFile(checks, []byte("SELECT false;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, "", nil, "drill", "--repo", repo, "--scratch", filepath.Join(dir, "scratch"), "--check-sql", checks, "--prom", prom)
	if r.code != 3 || !strings.Contains(r.stdout, "Recorded as drills/") || !strings.Contains(r.stdout, "-failed.json") {
		t.Fatalf("a drill whose check fails: %s", r)
	}
	if v := promValue(t, prom, "pgb_drill_success"); v != "0" {
		t.Fatalf("pgb_drill_success %q after a failed drill", v)
	}
	if v := promValue(t, prom, "pgb_drill_last_success_timestamp_seconds"); v != passedAt {
		t.Fatalf("pgb_drill_last_success_timestamp_seconds %q after a failed drill, want the passed one's %s", v, passedAt)
	}
	if f, _ := strconv.ParseFloat(promValue(t, prom, "pgb_drill_timestamp_seconds"), 64); f <= 0 {
		t.Fatalf("prom file:\n%s", mustRead(t, prom))
	}
	s, text = drillStatus(t, repo)
	if s.Drills.LastSuccess == nil || s.Drills.LastFailed == nil || !strings.Contains(s.Drills.LastFailed.Error, "check-sql line 1") {
		t.Fatalf("after a failed drill: %+v\n%s", s, text)
	}
	if !strings.Contains(text, "Last drill FAILED:") || !strings.Contains(text, "check-sql line 1") {
		t.Fatalf("status after a failed drill:\n%s", text)
	}
}

// near says whether a and b agree to a millionth (JSON round trips of floats).
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b)) }

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A drill that passed but could not record its result prints its report, says so and
// exits 1: cron must not take it for a drill on record.
func TestDrillThatCannotRecordItsResultPrintsTheReportAndExitsOne(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	writingCluster(t, repo)
	if err := os.WriteFile(filepath.Join(repo, "drills"), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := filepath.Join(pgtest.TempDir(t), "pgb_drill.prom")
	r := pgb(t, "", nil, "drill", "--repo", repo, "--prom", prom)
	if r.code != 1 || !strings.Contains(r.stdout, "Drill PASSED") || strings.Contains(r.stdout, "Recorded as") ||
		!strings.Contains(r.stderr, "was not recorded in the repository") {
		t.Fatalf("pgb drill with drills/ unwritable: %s", r)
	}
	if v := promValue(t, prom, "pgb_drill_success"); v != "1" {
		t.Fatalf("pgb_drill_success %q: the drill itself passed", v)
	}
}

// The same on S3 (versitygw): the drill record is written with the store's own
// "only if absent", and status reads it back.
func TestDrillOnS3IsRecordedAndStatusShowsIt(t *testing.T) {
	pgtest.Require(t)
	sel, _ := s3Repo(t, 0, "")
	c := archivingClusterWith(t, sel)
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	commitAt(t, c)
	mustPGB(t, "", c.Env(), append([]string{"backup-push", "--fast"}, sel...)...)
	c.GenerateWAL(t, 1)
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	prom := filepath.Join(pgtest.TempDir(t), "pgb_drill.prom")
	r := mustPGB(t, "", nil, append([]string{"drill", "--prom", prom}, sel...)...)
	if !strings.Contains(r.stdout, "Recorded as drills/") || promValue(t, prom, "pgb_drill_success") != "1" {
		t.Fatalf("pgb drill on S3: %s\n%s", r, mustRead(t, prom))
	}
	st := mustPGB(t, "", nil, append([]string{"status", "--json"}, sel...)...)
	var s statusDrills
	if err := json.Unmarshal([]byte(st.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Drills.LastSuccess == nil || s.Drills.LastSuccess.RTOSeconds <= 0 || len(s.Warnings) != 0 {
		t.Fatalf("pgb status on S3 after a drill: %s", st)
	}
}
