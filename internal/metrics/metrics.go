// Package metrics turns pgb status reports into Prometheus metrics: for a textfile
// (pgb status --prom, node_exporter's textfile collector) and for an HTTP endpoint
// (pgb metrics). The names and their meaning are documented in docs/metrics.md with
// example alert rules; every metric has the label repo, the repository's address.
//
// The metrics are built as metric families of the Prometheus data model
// (prometheus/client_model) and encoded by prometheus/common/expfmt, the exposition
// code client_golang's promhttp uses. client_golang's prometheus package is not linked
// into pgb: its package initialisation registers the Go and process collectors on a
// global registry, 1.8 million instructions (+9%) at the start of every pgb process,
// wal-push's included, which PostgreSQL starts once per WAL segment. Its linter
// (promlint) checks the names in the tests.
package metrics

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/status"
)

// Repo is what is known of one repository: its status report, or why it could not be
// read.
type Repo struct {
	URL    string
	Report *status.Report // nil when Err
	Err    error
	// RetentionPromise is how far back recovery is promised (retain-days), 0: none.
	RetentionPromise time.Duration
	// Gathered is when the report was made.
	Gathered time.Time
	// Stale: Report is an earlier read's, kept while the repository cannot be read
	// (Err): the newest WAL's age of that moment is left out.
	Stale bool
}

// desc is one metric: its name, help and extra labels (repo comes first, always).
type desc struct {
	name, help string
	labels     []string
}

func newDesc(name, help string, labels ...string) desc { return desc{name, help, labels} }

// descs are every metric pgb exports. Drill metrics are named pgb_last_drill_… so that
// they never collide with pgb drill --prom's pgb_drill_… in one textfile directory.
var descs = struct {
	up, gathered, windows, windowStart, windowEnd, lastCommit                desc
	newestWAL, newestWALAge, gaps, missing, damaged                          desc
	backupEnd, backupStart, backupDuration, backupSize, backupInfo           desc
	backups, backupsUnusable, backupsBytes                                   desc
	drillTime, drillSuccess, drillLastSuccess, drillRTO, drillRPO, retention desc
	verifyTime, verifySuccess, verifyProblems, verifyLastSuccess             desc
	windowEndExact                                                           desc
}{
	up:                newDesc("pgb_repository_up", "1 if pgb could read the repository's status at the last attempt, else 0 (the other metrics are then from the last read that worked)."),
	gathered:          newDesc("pgb_status_timestamp_seconds", "When the status these metrics come from was read."),
	windows:           newDesc("pgb_recovery_windows", "Stretches of time recovery can reach (more than one: a gap cuts the window)."),
	windowStart:       newDesc("pgb_recovery_window_start_timestamp_seconds", "Earliest point recovery can reach: where the oldest usable backup becomes consistent."),
	windowEnd:         newDesc("pgb_recovery_window_end_timestamp_seconds", "Latest point recovery reaches: the last archived commit; a lower bound, as pgb status's \"at least\", when the last commit was not found (pgb_recovery_window_end_exact 0)."),
	windowEndExact:    newDesc("pgb_recovery_window_end_exact", "1 if the window's end is its last archived commit, 0 if it is a lower bound (no commit found in the newest segments read, or their summaries could not be made)."),
	lastCommit:        newDesc("pgb_last_archived_commit_timestamp_seconds", "Time of the last commit found in the archived WAL (absent: none after the newest backup)."),
	newestWAL:         newDesc("pgb_wal_newest_timestamp_seconds", "When the newest archived WAL segment of the followed timeline was stored."),
	newestWALAge:      newDesc("pgb_wal_newest_age_seconds", "Age of the newest archived WAL segment when the status was read: the data lost if the primary died then (RPO)."),
	gaps:              newDesc("pgb_wal_gaps", "Gaps in the archived WAL of the followed timelines: recovery cannot cross them."),
	missing:           newDesc("pgb_wal_missing_segments", "WAL segments missing in those gaps."),
	damaged:           newDesc("pgb_wal_damaged_segments", "Archived WAL segments that do not decode."),
	backupEnd:         newDesc("pgb_backup_last_end_timestamp_seconds", "When the newest usable backup ended (became consistent)."),
	backupStart:       newDesc("pgb_backup_last_start_timestamp_seconds", "When the newest usable backup started."),
	backupDuration:    newDesc("pgb_backup_last_duration_seconds", "How long the newest usable backup took."),
	backupSize:        newDesc("pgb_backup_last_size_bytes", "Bytes the newest usable backup stores (its own parts: an incremental one's only)."),
	backupInfo:        newDesc("pgb_backup_last_info", "The newest usable backup: its name and type (full or incremental). Always 1.", "backup", "type"),
	backups:           newDesc("pgb_backups", "Backups in the repository, by type.", "type"),
	backupsUnusable:   newDesc("pgb_backups_unusable", "Backups that cannot start a recovery (off the timeline's history, or missing WAL)."),
	backupsBytes:      newDesc("pgb_backups_stored_bytes", "Bytes all backups store."),
	drillTime:         newDesc("pgb_last_drill_timestamp_seconds", "When the newest pgb drill recorded in the repository finished."),
	drillSuccess:      newDesc("pgb_last_drill_success", "1 if the newest recorded pgb drill passed, else 0."),
	drillLastSuccess:  newDesc("pgb_last_successful_drill_timestamp_seconds", "When the newest successful pgb drill finished (0: none recorded)."),
	drillRTO:          newDesc("pgb_last_successful_drill_rto_seconds", "RTO the newest successful drill measured: restore start to a queryable database."),
	drillRPO:          newDesc("pgb_last_successful_drill_rpo_seconds", "RPO the newest successful drill measured: last archived commit minus last commit recovered."),
	verifyTime:        newDesc("pgb_last_verify_timestamp_seconds", "When the newest pgb verify recorded in the repository finished."),
	verifySuccess:     newDesc("pgb_last_verify_success", "1 if the newest recorded pgb verify found everything sound, else 0 (problems, or it could not finish)."),
	verifyProblems:    newDesc("pgb_last_verify_problems", "Problems the newest recorded pgb verify found."),
	verifyLastSuccess: newDesc("pgb_last_successful_verify_timestamp_seconds", "When the newest pgb verify that passed finished (0: none recorded)."),
	retention:         newDesc("pgb_retention_promise_seconds", "How far back recovery is promised (retain-days): alert when the window starts later than now minus this."),
}

func unix(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// collect adds r's metrics to fams.
func collect(r Repo, fams *families) {
	g := func(d desc, v float64, labels ...string) { fams.add(d, v, append([]string{r.URL}, labels...)) }
	up := 1.0
	if r.Err != nil {
		up = 0
	}
	g(descs.up, up)
	if r.RetentionPromise > 0 {
		g(descs.retention, r.RetentionPromise.Seconds())
	}
	rep := r.Report
	if rep == nil {
		return
	}
	g(descs.gathered, unix(r.Gathered))
	g(descs.windows, float64(len(rep.Windows)))
	if n := len(rep.Windows); n > 0 {
		g(descs.windowStart, unix(rep.Windows[0].Start.Time))
		last := rep.Windows[n-1]
		end, exact := rep.WindowEnd(last)
		g(descs.windowEnd, unix(end))
		x := 0.0
		if exact {
			x = 1
		}
		g(descs.windowEndExact, x)
		if last.LastCommit != nil {
			g(descs.lastCommit, unix(last.LastCommit.Time))
		}
	}
	if w := rep.NewestWAL; w != nil {
		g(descs.newestWAL, unix(w.Stored))
		if !r.Stale {
			g(descs.newestWALAge, w.AgeSeconds)
		}
	}
	var missing uint64
	for _, gap := range rep.Gaps {
		missing += gap.Count
	}
	g(descs.gaps, float64(len(rep.Gaps)))
	g(descs.missing, float64(missing))
	g(descs.damaged, float64(len(rep.Damaged)))

	var full, incr, unusable int
	var bytes int64
	var newest *status.Backup
	for i := range rep.Backups {
		b := &rep.Backups[i]
		if b.Parent == "" {
			full++
		} else {
			incr++
		}
		bytes += b.StoredSize
		if !b.Usable {
			unusable++
			continue
		}
		if newest == nil || b.StopTime.After(newest.StopTime) {
			newest = b
		}
	}
	g(descs.backups, float64(full), "full")
	g(descs.backups, float64(incr), "incremental")
	g(descs.backupsUnusable, float64(unusable))
	g(descs.backupsBytes, float64(bytes))
	if newest != nil {
		kind := "full"
		if newest.Parent != "" {
			kind = "incremental"
		}
		g(descs.backupEnd, unix(newest.StopTime))
		g(descs.backupStart, unix(newest.StartTime))
		g(descs.backupDuration, newest.StopTime.Sub(newest.StartTime).Seconds())
		g(descs.backupSize, float64(newest.StoredSize))
		g(descs.backupInfo, 1, newest.Name, kind)
	}

	if d := rep.Drills; d != nil {
		last, ok := d.LastFailed, 0.0
		if last == nil {
			last, ok = d.LastSuccess, 1
		}
		if last != nil {
			g(descs.drillTime, unix(last.Finished))
			g(descs.drillSuccess, ok)
		}
		if s := d.LastSuccess; s != nil {
			g(descs.drillLastSuccess, unix(s.Finished))
			g(descs.drillRTO, s.RTOSeconds)
			if s.RPOSeconds != nil {
				g(descs.drillRPO, *s.RPOSeconds)
			}
		} else {
			g(descs.drillLastSuccess, 0)
		}
	}
	if v := rep.Verifies; v != nil {
		if l := v.Last; l != nil {
			ok := 0.0
			if l.OK {
				ok = 1
			}
			g(descs.verifyTime, unix(l.Finished))
			g(descs.verifySuccess, ok)
			g(descs.verifyProblems, float64(l.Problems))
		}
		last := 0.0
		if s := v.LastSuccess; s != nil {
			last = unix(s.Finished)
		}
		g(descs.verifyLastSuccess, last)
	}
}

// families gathers gauges by metric.
type families struct {
	order []string
	by    map[string]*dto.MetricFamily
}

func (f *families) add(d desc, v float64, values []string) {
	if f.by == nil {
		f.by = map[string]*dto.MetricFamily{}
	}
	mf, ok := f.by[d.name]
	if !ok {
		mf = &dto.MetricFamily{Name: proto.String(d.name), Help: proto.String(d.help), Type: dto.MetricType_GAUGE.Enum()}
		f.by[d.name] = mf
		f.order = append(f.order, d.name)
	}
	names := append([]string{"repo"}, d.labels...)
	m := &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(v)}}
	for i, n := range names {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(n), Value: proto.String(values[i])})
	}
	mf.Metric = append(mf.Metric, m)
}

// Gather returns the metric families of repos, sorted by name.
func Gather(repos []Repo) []*dto.MetricFamily {
	var f families
	for _, r := range repos {
		collect(r, &f)
	}
	sort.Strings(f.order)
	out := make([]*dto.MetricFamily, len(f.order))
	for i, n := range f.order {
		out[i] = f.by[n]
	}
	return out
}

// Encode writes the metrics of repos in format (expfmt.Negotiate picks it for an HTTP
// request: the text format, OpenMetrics or protobuf).
func Encode(w io.Writer, format expfmt.Format, repos []Repo) error {
	enc := expfmt.NewEncoder(w, format)
	for _, mf := range Gather(repos) {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		return c.Close()
	}
	return nil
}

// Write writes the metrics of repos in the Prometheus text format.
func Write(w io.Writer, repos []Repo) error {
	return Encode(w, expfmt.NewFormat(expfmt.TypeTextPlain), repos)
}

// WriteFile writes the metrics of repos to path atomically (a temp file beside it,
// synced, then renamed), readable by node_exporter (mode 0644): the textfile collector
// never reads a half-written file. For a repository that could not be read, the
// figures the file held for it before are kept (their timestamps say how old they
// are; the age of the newest WAL, a figure of that moment, is dropped), as pgb metrics
// keeps the last figures read: the series, and the alerts on them, do not vanish with
// a failed read.
func WriteFile(path string, repos []Repo) error {
	fams := Gather(repos)
	var failed []string
	for _, r := range repos {
		if r.Report == nil {
			failed = append(failed, r.URL)
		}
	}
	if len(failed) > 0 {
		fams = mergeKept(fams, keptFrom(path, failed))
	}
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(f, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			f.Abort()
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return f.Commit()
}

// keptMax bounds the textfile read back for the figures of a repository that could
// not be read: pgb writes a few kilobytes per repository.
const keptMax = 4 << 20

// keptFrom reads the families of the file at path and keeps the samples of the
// repositories named, but pgb_repository_up (written anew) and the newest WAL's age.
// A file that is missing, too large or does not parse keeps nothing.
func keptFrom(path string, urls []string) []*dto.MetricFamily {
	fd, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer func() { _ = fd.Close() }() // read-only
	b, err := io.ReadAll(io.LimitReader(fd, keptMax+1))
	if err != nil || len(b) > keptMax {
		return nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	old, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	var out []*dto.MetricFamily
	for name, mf := range old {
		// Not what is written anew for a repository that cannot be read (up, the
		// retention promise), nor the WAL's age of that moment, nor what pgb does not
		// write (another type, another name).
		if name == descs.up.name || name == descs.retention.name || name == descs.newestWALAge.name || !known(name) ||
			mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		kept := &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "repo" && slices.Contains(urls, l.GetValue()) {
					kept.Metric = append(kept.Metric, m)
				}
			}
		}
		if len(kept.Metric) > 0 {
			out = append(out, kept)
		}
	}
	return out
}

func known(name string) bool { return slices.Contains(Names(), name) }

// mergeKept adds the kept samples to fams, sorted by name, but never a sample whose
// labels a fresh one of its family has (node_exporter refuses a series twice).
func mergeKept(fams, kept []*dto.MetricFamily) []*dto.MetricFamily {
	by := map[string]*dto.MetricFamily{}
	for _, mf := range fams {
		by[mf.GetName()] = mf
	}
	for _, k := range kept {
		mf, ok := by[k.GetName()]
		if !ok {
			mf = &dto.MetricFamily{Name: k.Name, Help: k.Help, Type: k.Type}
			by[k.GetName()] = mf
			fams = append(fams, mf)
		}
		seen := map[string]bool{}
		for _, m := range mf.Metric {
			seen[labelKey(m)] = true
		}
		for _, m := range k.Metric {
			if key := labelKey(m); !seen[key] {
				seen[key] = true
				mf.Metric = append(mf.Metric, m)
			}
		}
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].GetName() < fams[j].GetName() })
	return fams
}

// labelKey is a sample's label set, in a canonical form.
func labelKey(m *dto.Metric) string {
	pairs := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		pairs = append(pairs, l.GetName()+"\x00"+l.GetValue())
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "\x01")
}

// Names lists the name of every metric pgb exports (docs/metrics.md documents each).
func Names() []string {
	ds := []desc{descs.up, descs.gathered, descs.windows, descs.windowStart, descs.windowEnd, descs.lastCommit,
		descs.newestWAL, descs.newestWALAge, descs.gaps, descs.missing, descs.damaged, descs.backupEnd, descs.backupStart,
		descs.backupDuration, descs.backupSize, descs.backupInfo, descs.backups, descs.backupsUnusable, descs.backupsBytes,
		descs.drillTime, descs.drillSuccess, descs.drillLastSuccess, descs.drillRTO, descs.drillRPO, descs.retention,
		descs.verifyTime, descs.verifySuccess, descs.verifyProblems, descs.verifyLastSuccess, descs.windowEndExact}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.name
	}
	return out
}
