package metrics

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgb-project/pgb/internal/status"
	"github.com/pgb-project/pgb/internal/window"
)

var t0 = time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)

func report() *status.Report {
	rpo := 2.5
	return &status.Report{
		Repository: "s3://bucket/db",
		Windows: []*window.Window{
			{Backup: "b1", Start: window.Point{Time: t0.Add(-48 * time.Hour)}, LastCommit: &window.Commit{Time: t0.Add(-30 * time.Hour)}},
			{Backup: "b2", Start: window.Point{Time: t0.Add(-24 * time.Hour)}, LastCommit: &window.Commit{Time: t0.Add(-time.Minute)}},
		},
		Gaps:      []window.Gap{{From: "a", To: "b", Count: 3}},
		NewestWAL: &status.NewestWAL{Segment: "x", Stored: t0.Add(-45 * time.Second), AgeSeconds: 45},
		Backups: []status.Backup{
			{Name: "b1", StartTime: t0.Add(-49 * time.Hour), StopTime: t0.Add(-48 * time.Hour), Usable: true, StoredSize: 1000},
			{Name: "b2", StartTime: t0.Add(-25 * time.Hour), StopTime: t0.Add(-24 * time.Hour), Usable: true, StoredSize: 200, Parent: "b1"},
			{Name: "b3", StartTime: t0.Add(-2 * time.Hour), StopTime: t0.Add(-90 * time.Minute), Usable: false, StoredSize: 50},
		},
		Verifies: &status.Verifies{
			Last:        &status.Verify{Finished: t0.Add(-2 * time.Hour), Problems: 4, Scope: "backups"},
			LastSuccess: &status.Verify{Finished: t0.Add(-26 * time.Hour), OK: true},
		},
		Drills: &status.Drills{
			LastSuccess: &status.Drill{Finished: t0.Add(-72 * time.Hour), RTOSeconds: 120, RPOSeconds: &rpo},
			LastFailed:  &status.Drill{Finished: t0.Add(-time.Hour), Error: "boom"},
		},
	}
}

func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return mfs
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range mf.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if match {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s with %v", name, labels)
	return 0
}

func TestMetricsSayWhatStatusSays(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []Repo{{URL: "s3://bucket/db", Report: report(), Gathered: t0, RetentionPromise: 14 * 24 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b.Bytes())
	sec := func(d time.Duration) float64 { return float64(t0.Add(d).Unix()) }
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pgb_repository_up", nil, 1},
		{"pgb_status_timestamp_seconds", nil, sec(0)},
		{"pgb_recovery_windows", nil, 2},
		{"pgb_recovery_window_start_timestamp_seconds", nil, sec(-48 * time.Hour)},
		// The end is the last archived commit, never the newest backup.
		{"pgb_recovery_window_end_timestamp_seconds", nil, sec(-time.Minute)},
		{"pgb_last_archived_commit_timestamp_seconds", nil, sec(-time.Minute)},
		{"pgb_recovery_window_end_exact", nil, 1},
		{"pgb_wal_newest_timestamp_seconds", nil, sec(-45 * time.Second)},
		{"pgb_wal_newest_age_seconds", nil, 45},
		{"pgb_wal_gaps", nil, 1},
		{"pgb_wal_missing_segments", nil, 3},
		// The newest usable backup: b3 is newer but unusable.
		{"pgb_backup_last_end_timestamp_seconds", nil, sec(-24 * time.Hour)},
		{"pgb_backup_last_duration_seconds", nil, 3600},
		{"pgb_backup_last_size_bytes", nil, 200},
		{"pgb_backup_last_info", []string{"backup", "b2", "type", "incremental"}, 1},
		{"pgb_backups", []string{"type", "full"}, 2},
		{"pgb_backups", []string{"type", "incremental"}, 1},
		{"pgb_backups_unusable", nil, 1},
		{"pgb_backups_stored_bytes", nil, 1250},
		{"pgb_last_drill_timestamp_seconds", nil, sec(-time.Hour)},
		{"pgb_last_drill_success", nil, 0},
		{"pgb_last_successful_drill_timestamp_seconds", nil, sec(-72 * time.Hour)},
		{"pgb_last_successful_drill_rto_seconds", nil, 120},
		{"pgb_last_successful_drill_rpo_seconds", nil, 2.5},
		{"pgb_retention_promise_seconds", nil, 14 * 86400},
		{"pgb_last_verify_timestamp_seconds", nil, sec(-2 * time.Hour)},
		{"pgb_last_verify_success", nil, 0},
		{"pgb_last_verify_problems", nil, 4},
		{"pgb_last_successful_verify_timestamp_seconds", nil, sec(-26 * time.Hour)},
	} {
		if got := value(t, mfs, c.name, append([]string{"repo", "s3://bucket/db"}, c.labels...)...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(b.Bytes())).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
}

// A repository that cannot be read is pgb_repository_up 0, with the last figures read
// (none here); another repository's metrics are unaffected.
func TestAnUnreadableRepositoryIsDown(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []Repo{{URL: "/gone", Err: errors.New("no")}, {URL: "s3://bucket/db", Report: report(), Gathered: t0}}); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b.Bytes())
	if v := value(t, mfs, "pgb_repository_up", "repo", "/gone"); v != 0 {
		t.Errorf("up of an unreadable repository = %v", v)
	}
	if v := value(t, mfs, "pgb_repository_up", "repo", "s3://bucket/db"); v != 1 {
		t.Errorf("up of the other = %v", v)
	}
	if strings.Contains(b.String(), `pgb_recovery_windows{repo="/gone"}`) {
		t.Error("a window is reported for the unreadable repository")
	}
}

// Nothing recoverable: no window start or end (absent, never 0 or 1970), and no backup.
func TestAnEmptyRepositoryHasNoWindow(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []Repo{{URL: "/r", Report: &status.Report{Repository: "/r"}, Gathered: t0}}); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b.Bytes())
	if v := value(t, mfs, "pgb_recovery_windows", "repo", "/r"); v != 0 {
		t.Errorf("windows = %v", v)
	}
	for _, absent := range []string{"pgb_recovery_window_start_timestamp_seconds", "pgb_recovery_window_end_timestamp_seconds", "pgb_backup_last_end_timestamp_seconds"} {
		if _, ok := mfs[absent]; ok {
			t.Errorf("%s is reported for an empty repository", absent)
		}
	}
}

func TestWriteFileIsAtomicAndReadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pgb.prom")
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []Repo{{URL: "/r", Report: report(), Gathered: t0}}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%v %v", err, fi.Mode())
	}
	b, _ := os.ReadFile(p)
	parse(t, b)
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".pgb-tmp-*"))
	if len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
	// An unwritable place fails, and says so.
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "pgb.prom"), nil); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

// A window whose last commit was not found ends where restore's check ends it (its
// start: a later target is refused), and says that the end is a lower bound.
func TestAWindowWithoutALastCommitEndsAtLeastWhereRestoreChecks(t *testing.T) {
	r := &status.Report{Repository: "/r",
		Windows: []*window.Window{{Backup: "b1", Start: window.Point{Time: t0.Add(-48 * time.Hour)}, Backups: []string{"b1", "b2"}, NoCommitIn: 64}},
		Backups: []status.Backup{
			{Name: "b1", StartTime: t0.Add(-49 * time.Hour), StopTime: t0.Add(-48 * time.Hour), Usable: true},
			{Name: "b2", StartTime: t0.Add(-2 * time.Hour), StopTime: t0.Add(-time.Hour), Usable: true},
		}}
	var b bytes.Buffer
	if err := Write(&b, []Repo{{URL: "/r", Report: r, Gathered: t0}}); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b.Bytes())
	if got, want := value(t, mfs, "pgb_recovery_window_end_timestamp_seconds", "repo", "/r"), float64(t0.Add(-48*time.Hour).Unix()); got != want {
		t.Errorf("window end %v, want the window's start %v (restore refuses later targets)", got, want)
	}
	if got := value(t, mfs, "pgb_recovery_window_end_exact", "repo", "/r"); got != 0 {
		t.Errorf("end exact = %v, want 0", got)
	}
	if _, ok := mfs["pgb_last_archived_commit_timestamp_seconds"]; ok {
		t.Error("a last archived commit is reported where none was found")
	}
}

// A repository that cannot be read keeps, in the textfile, the figures the file held
// for it (the alerts on them neither vanish nor resolve), but not the WAL's age of that
// moment; another repository's figures are new.
func TestTheTextfileKeepsTheLastFiguresOfAnUnreadableRepository(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pgb.prom")
	if err := WriteFile(p, []Repo{{URL: "s3://bucket/db", Report: report(), Gathered: t0}, {URL: "/other", Report: report(), Gathered: t0}}); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	for i := 0; i < 3; i++ { // three failed runs in a row: no series twice
		if err := WriteFile(p, []Repo{{URL: "s3://bucket/db", Err: errors.New("down"), RetentionPromise: 24 * time.Hour},
			{URL: "/other", Report: &status.Report{Repository: "/other"}, Gathered: later}}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	mfs := parse(t, b)
	for _, mf := range mfs {
		seen := map[string]bool{}
		for _, m := range mf.GetMetric() {
			if k := labelKey(m); seen[k] {
				t.Errorf("%s%v twice", mf.GetName(), m.GetLabel())
			} else {
				seen[k] = true
			}
		}
	}
	if v := value(t, mfs, "pgb_repository_up", "repo", "s3://bucket/db"); v != 0 {
		t.Errorf("up %v", v)
	}
	if v := value(t, mfs, "pgb_status_timestamp_seconds", "repo", "s3://bucket/db"); v != float64(t0.Unix()) {
		t.Errorf("the kept figures' timestamp %v, want the old read's %v", v, t0.Unix())
	}
	if v := value(t, mfs, "pgb_wal_gaps", "repo", "s3://bucket/db"); v != 1 {
		t.Errorf("kept gaps %v", v)
	}
	if v := value(t, mfs, "pgb_status_timestamp_seconds", "repo", "/other"); v != float64(later.Unix()) {
		t.Errorf("the other repository's figures are not new: %v", v)
	}
	if v := value(t, mfs, "pgb_recovery_windows", "repo", "/other"); v != 0 {
		t.Errorf("the other repository's old windows were kept: %v", v)
	}
	if strings.Contains(string(b), `pgb_wal_newest_age_seconds{repo="s3://bucket/db"}`) {
		t.Error("the WAL's age of an old read is kept")
	}
}
