package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// metricValue reads one sample of the Prometheus text format: name{repo="REPO"...}.
func metricValue(t *testing.T, text, name, repo string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{[^}]*repo="` + regexp.QuoteMeta(repo) + `"[^}]*\} (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no %s for %s in:\n%s", name, repo, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A monitoring system watching pgb sees the recoverable window end at the last
// archived commit — not at the newest backup — in the textfile pgb status --prom
// writes, on pgb metrics' /metrics and on the page pgb status --html draws, and sees a
// repository that cannot be read as down.
func TestMonitoringSeesTheWindowEndAtTheLastArchivedCommit(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := ticksCluster(t, repo)
	last := commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	s, r := statusJSON(t, repo)
	if r.code != 0 || len(s.Windows) != 1 || s.Windows[0].LastCommit == nil {
		t.Fatalf("status: %s", r)
	}
	end := float64(s.Windows[0].LastCommit.Time.UnixMilli()) / 1000
	if d := s.Windows[0].LastCommit.Time.Sub(last); d < 0 || d > 5*time.Second {
		t.Fatalf("status: last commit %s, committed at %s", s.Windows[0].LastCommit.Time, last)
	}

	// The textfile, for node_exporter.
	dir := pgtest.TempDir(t)
	prom := filepath.Join(dir, "pgb.prom")
	mustPGB(t, "", nil, "status", "--repo", repo, "--prom", prom)
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	label := "file://" + repo // the repository as status names it
	if got := metricValue(t, text, "pgb_recovery_window_end_timestamp_seconds", label); got != end {
		t.Errorf("textfile: window end %v, want the last archived commit %v", got, end)
	}
	backupEnd := metricValue(t, text, "pgb_backup_last_end_timestamp_seconds", label)
	if !(backupEnd < end) {
		t.Errorf("textfile: the last backup ended at %v, not before the last commit %v", backupEnd, end)
	}
	if got := metricValue(t, text, "pgb_repository_up", label); got != 1 {
		t.Errorf("textfile: up %v", got)
	}
	if got := metricValue(t, text, "pgb_backups", label); got != 1 {
		t.Errorf("textfile: backups %v", got)
	}

	// The page says the same in words (internal/statushtml's tests check the drawing).
	page := filepath.Join(dir, "status.html")
	mustPGB(t, "", nil, "status", "--repo", repo, "--html", page)
	h, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	lastText := s.Windows[0].LastCommit.Time.UTC().Format("2006-01-02 15:04:05.000 UTC")
	if !strings.Contains(string(h), "The latest recoverable point is the last archived commit, "+lastText) {
		t.Errorf("the page does not name the last archived commit %s as the latest recoverable point", lastText)
	}

	// A repository that is gone: the file says so (up 0), and status fails.
	gone := filepath.Join(dir, "gone")
	if r := pgb(t, "", nil, "status", "--repo", gone, "--prom", prom); r.code == 0 {
		t.Errorf("status of a missing repository: %s", r)
	}
	b, err = os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, string(b), "pgb_repository_up", "file://"+gone); got != 0 {
		t.Errorf("textfile for a missing repository: up %v", got)
	}

	// The endpoint.
	srv := startPGBReading(t, nil, "metrics", "--repo", repo, "--listen", "127.0.0.1:0", "--log-format", "json")
	line := srv.until(t, "metrics: serving", "that it serves metrics")
	addr := regexp.MustCompile(`http://[0-9.:]+/metrics`).FindString(line)
	if addr == "" {
		t.Fatalf("no address in %q", line)
	}
	resp, err := http.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %v %d %s\n%s", addr, err, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if got := metricValue(t, string(body), "pgb_recovery_window_end_timestamp_seconds", label); got != end {
		t.Errorf("/metrics: window end %v, want the last archived commit %v", got, end)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.wait(); err != nil {
		t.Errorf("pgb metrics after SIGTERM: %v\n%s", err, out)
	}
}
