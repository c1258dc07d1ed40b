package integration

import (
	"encoding/json"
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
			Finished   time.Time `json:"finished"`
			Backup     string    `json:"backup"`
			RTOSeconds float64   `json:"rto_seconds"`
			RPOSeconds *float64  `json:"rpo_seconds"`
		} `json:"last_success"`
		LastFailed *struct {
			Error string `json:"error"`
		} `json:"last_failed"`
		Warning string `json:"warning"`
	} `json:"drills"`
	Warnings []string `json:"warnings"`
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
	writingCluster(t, repo)
	dir := pgtest.TempDir(t)
	prom := filepath.Join(dir, "pgb_drill.prom")

	s, text := drillStatus(t, repo)
	if s.Drills.LastSuccess != nil || !strings.Contains(s.Drills.Warning, "no successful drill") || len(s.Warnings) != 1 ||
		!strings.Contains(text, "Last successful drill: none recorded") || !strings.Contains(text, "WARNING: no successful drill") {
		t.Fatalf("before any drill: %+v\n%s", s, text)
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

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
