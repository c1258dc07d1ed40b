package drill

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

// Report is what a drill found; its JSON form is documented in docs/drill.md and kept
// stable (fields are only added).
type Report struct {
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Scratch  string        `json:"scratch"`
	Target   string        `json:"target"`
	Backup   BackupUsed    `json:"backup"`
	WAL      WALRange      `json:"wal"`
	Reached  Reached       `json:"reached"`
	RTO      RTO           `json:"rto"`
	RPO      RPO           `json:"rpo"`
	Checks   []CheckResult `json:"checks"`
	Warnings []string      `json:"warnings"`
	Kept     *Kept         `json:"kept,omitempty"`
	// Record is the key of the drill's record in the repository, once written.
	Record string `json:"record,omitempty"`
}

// BackupUsed is the backup the drill restored.
type BackupUsed struct {
	Name      string    `json:"name"`
	Timeline  uint32    `json:"timeline"`
	StartLSN  wal.LSN   `json:"start_lsn"`
	StopLSN   wal.LSN   `json:"stop_lsn"`
	StopTime  time.Time `json:"stop_time"`
	Size      int64     `json:"size"`
	PGVersion int       `json:"pg_version"`
}

// WALRange is the archived WAL of the window the drill recovered in.
type WALRange struct {
	First string `json:"first_segment,omitempty"`
	Last  string `json:"last_segment,omitempty"`
}

// Reached is where recovery ended.
type Reached struct {
	ReplayLSN wal.LSN `json:"replay_lsn"`
	// LastCommit is pg_last_xact_replay_timestamp(): the last transaction replayed.
	LastCommit *time.Time `json:"last_commit,omitempty"`
	Promoted   bool       `json:"promoted"` // end of the archive: promoted; a target: paused at it
}

// RTO is the measured recovery time.
type RTO struct {
	RestoreSeconds float64 `json:"restore_seconds"`
	ReplaySeconds  float64 `json:"replay_seconds"` // server start to a queryable database at the target
	TotalSeconds   float64 `json:"total_seconds"`
	BytesRestored  int64   `json:"bytes_restored"`
	BytesReplayed  int64   `json:"bytes_replayed"` // WAL from the backup's start LSN to the point reached
	MBPerSecond    float64 `json:"mb_per_second"`
}

// RPO is the measured data loss.
type RPO struct {
	// LastArchivedCommit is the end of the recoverable window (pgb status).
	LastArchivedCommit *time.Time `json:"last_archived_commit,omitempty"`
	// GapSeconds: to the end of the archive, the last archived commit minus the last
	// commit recovered; to a time target, the target minus the last commit recovered.
	GapSeconds          *float64 `json:"gap_seconds,omitempty"`
	NewestWAL           string   `json:"newest_wal,omitempty"`
	NewestWALAgeSeconds float64  `json:"newest_wal_age_seconds"`
}

// CheckResult is one check.
type CheckResult struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail,omitempty"`
}

// Kept says how to reach a server left running by --keep.
type Kept struct {
	DataDir string `json:"data_dir"`
	Socket  string `json:"socket_dir"`
	Port    int    `json:"port"`
	Pid     int    `json:"pid"`
	Connect string `json:"connect"`
	Stop    string `json:"stop"`
}

// Write prints the human summary, lines of at most 80 columns (a check's name is cut).
func (r *Report) Write(w io.Writer) error {
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			s := fmt.Sprintf(format, a...)
			if rs := []rune(s); len(rs) > 80 {
				s = string(rs[:79]) + "…"
			}
			_, err = fmt.Fprintln(w, s)
		}
	}
	raw := func(lines []string) {
		for _, s := range lines {
			if err == nil {
				_, err = fmt.Fprintln(w, s)
			}
		}
	}
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") }
	verdict := "PASSED"
	if !r.OK {
		verdict = "FAILED"
	}
	p("Drill %s: target %s", verdict, r.Target)
	if r.Error != "" {
		p("  error: %s", r.Error)
	}
	if r.Backup.Name != "" {
		p("Backup %s (PostgreSQL %d, timeline %d, ends %s)", r.Backup.Name, r.Backup.PGVersion, r.Backup.Timeline,
			r.Backup.StopTime.UTC().Format("2006-01-02 15:04:05Z"))
	}
	if r.WAL.First != "" {
		p("WAL %s .. %s", r.WAL.First, r.WAL.Last)
	}
	if r.Reached.ReplayLSN != 0 {
		how := "paused at the target"
		if r.Reached.Promoted {
			how = "promoted at the end of the archive"
		}
		p("Reached LSN %s, %s", r.Reached.ReplayLSN, how)
	}
	if r.Reached.ReplayLSN != 0 {
		p("RTO: %.1f s to a queryable database (restore %.1f s, replay %.1f s)", r.RTO.TotalSeconds, r.RTO.RestoreSeconds, r.RTO.ReplaySeconds)
		p("     %s restored, %s of WAL replayed, %.1f MB/s", size(r.RTO.BytesRestored), size(r.RTO.BytesReplayed), r.RTO.MBPerSecond)
	} else {
		p("RTO: none measured (restore %.1f s; not recovered)", r.RTO.RestoreSeconds)
	}
	if r.Reached.LastCommit != nil {
		p("RPO: last commit recovered %s", ts(*r.Reached.LastCommit))
	}
	if r.RPO.LastArchivedCommit != nil {
		p("     last archived commit  %s", ts(*r.RPO.LastArchivedCommit))
	}
	if r.RPO.GapSeconds != nil {
		p("     gap %.3f s", *r.RPO.GapSeconds)
	}
	if r.RPO.NewestWAL != "" {
		p("     newest archived WAL %s, %.0f s old", r.RPO.NewestWAL, r.RPO.NewestWALAgeSeconds)
	}
	if len(r.Checks) > 0 {
		p("Checks:")
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.Passed {
			mark = "FAIL"
		}
		p("  %s %s", mark, c.Name)
		if !c.Passed && c.Detail != "" {
			p("       %s", c.Detail)
		}
	}
	// Warnings and commands are wrapped, not cut: a command must stay whole to be
	// pasted (its lines end in a backslash).
	for _, x := range r.Warnings {
		prose, cmd, ok := strings.Cut(x, stopWith)
		if !ok {
			raw(wrap("warning: "+x, "  ", ""))
			continue
		}
		raw(wrap("warning: "+prose+strings.TrimRight(stopWith, " "), "  ", ""))
		raw(wrap("    "+cmd, "      ", " \\"))
	}
	if r.Record != "" {
		p("Recorded as %s", r.Record)
	}
	if k := r.Kept; k != nil {
		p("Kept running (pid %d):", k.Pid)
		raw(wrap("  connect: "+k.Connect, "    ", " \\"))
		raw(wrap("  stop: "+k.Stop, "    ", " \\"))
	}
	return err
}

// wrap breaks s at spaces into lines of at most 79 columns, each but the first
// starting with indent and each but the last ending with cont. A word too long for a
// line is left whole on its own.
func wrap(s, indent, cont string) []string {
	const width = 79
	var out []string
	lead := s[:len(s)-len(strings.TrimLeft(s, " "))]
	line := ""
	for i, w := range words(s[len(lead):]) {
		if i == 0 {
			line = lead + w
			continue
		}
		switch {
		case len([]rune(line))+1+len([]rune(w))+len([]rune(cont)) <= width:
			line += " " + w
		default:
			out = append(out, line+cont)
			line = indent + w
		}
	}
	return append(out, line)
}

// words splits s at spaces outside single quotes (a quoted path stays one word).
func words(s string) []string {
	var out []string
	for _, w := range strings.Split(s, " ") {
		if n := len(out); n > 0 && strings.Count(out[n-1], "'")%2 == 1 {
			out[n-1] += " " + w
			continue
		}
		out = append(out, w)
	}
	return out
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
