package status

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/bytesize"
)

// Write prints the report for a terminal: the window first, every line within 80
// columns.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000Z") }
	short := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
	if r.Target != nil {
		r.writeTarget(p, ts)
		p("")
	}
	switch len(r.Windows) {
	case 0:
		p("Recoverable: NOTHING")
		for _, bk := range r.Backups {
			if !bk.Usable {
				p("  backup %s: %s", bk.Name, bk.Why)
			}
		}
		if len(r.Backups) == 0 {
			p("  no backups: take one with pgb backup-push")
		}
	default:
		p("Recoverable window (timeline %s):", pathText(r.TimelinePath))
		for i, win := range r.Windows {
			if i > 0 {
				p("  after a gap, a new window:")
			}
			p("  from %s  end of backup %s", ts(win.Start.Time), win.Backup)
			if win.Unsummarised != "" {
				p("  to   at least %s  (WAL archived to %s is encrypted and not yet", ts(win.EndTime()), win.LastSegment)
				p("       summarised from %s on: pgb status with encryption-identity-file", win.Unsummarised)
				p("       reads its last commit)")
			} else if c := win.LastCommit; c != nil {
				what := "last archived commit"
				if win.Streamed {
					what = "last streamed commit"
				}
				p("  to   %s  %s (xid %d)", ts(c.Time), what, c.Xid)
			} else if win.NoCommitIn > 0 {
				p("  to   at least %s  (no commit in the newest %d", ts(win.EndTime()), win.NoCommitIn)
				p("       segments, from %s: the last commit", win.NoCommitBefore)
				p("       before them was not looked up)")
			} else {
				p("  to   %s  (no commit archived after the backup)", ts(win.EndTime()))
			}
			switch {
			case win.Streamed:
				p("       (%s is being streamed: held as wal-stream's chunks, to its last streamed byte)", win.LastSegment)
			case win.EndOfWAL:
				p("  CUT where the WAL of %s ends early (zeros)", win.LastSegment)
			case win.CutCause != "":
				p("  CUT by DROPPED WAL after %s (see Gaps)", win.LastSegment)
			case win.CutByGap:
				p("  CUT by missing WAL after %s", win.LastSegment)
			}
		}
	}
	if n := r.NewestWAL; n != nil {
		p("Newest WAL:  %s stored %s (%s ago)", n.Segment, short(n.Stored), ageText(n.AgeSeconds))
	} else {
		p("Newest WAL:  none archived")
	}
	if len(r.Gaps) == 0 {
		p("Gaps:        none")
	} else {
		p("Gaps:        %d — a restore cannot cross them", len(r.Gaps))
		for _, g := range r.Gaps {
			what := "missing"
			switch {
			case g.Damaged:
				what = "damaged"
			case g.Dropped:
				what = "DROPPED"
			}
			if g.Count == 1 {
				p("  %s %s", what, g.From)
			} else {
				p("  %s %s..%s (%d)", what, g.From, g.To, g.Count)
			}
			if g.Dropped {
				for _, l := range wrap(g.Cause, 74) {
					p("    %s", l)
				}
			}
		}
	}
	for _, g := range r.FilledGaps {
		p("  filled: %s..%s (%d), archived after all; the record says", g.From, g.To, g.Count)
		for _, l := range wrap(g.Cause, 74) {
			p("    %s", l)
		}
	}
	r.writeArchiver(p, bytesize.Text)
	r.writeDrills(p, short)
	r.writeVerifies(p, short)
	if r.SystemIdentifier != "" {
		p("System:      %s, PostgreSQL %d", r.SystemIdentifier, r.PGVersion)
	}
	if len(r.Timelines) == 0 {
		p("Timelines:   none")
	} else {
		p("Timelines:")
	}
	for _, t := range r.Timelines {
		s := fmt.Sprintf("  %d: %d segments", t.Timeline, t.Segments)
		if t.Segments > 0 {
			s += fmt.Sprintf(", %s..%s", t.FirstSegment, t.LastSegment)
		}
		if t.Parent != 0 {
			s += fmt.Sprintf(", from %d at %s", t.Parent, t.BranchLSN)
		}
		p("%s", s)
	}
	p("Backups:     %d", len(r.Backups))
	for _, bk := range r.Backups {
		flags := ""
		if bk.Permanent {
			flags += " permanent"
		}
		if !bk.Usable {
			flags += " UNUSABLE"
		}
		if bk.RecipientSet != "" {
			flags += " encrypted for " + printable(bk.RecipientSet) // from the summary: untrusted
		}
		if bk.CorruptPages > 0 {
			flags += fmt.Sprintf(" holds %d damaged page(s) (pgb verify --backup %s)", bk.CorruptPages, bk.Name)
		}
		kind := "full"
		if bk.Parent != "" {
			kind = "incr on " + printable(bk.Parent) // from the summary: untrusted
		}
		p("  %-18s stop %s  TL %d  %s, stored %s%s", bk.Name, short(bk.StopTime), bk.Timeline, kind, bytesize.Text(bk.StoredSize), flags)
		if !bk.Usable {
			p("    %s", bk.Why)
		}
	}
	r.writeEncryption(p, short)
	if len(r.RestorePoints) > 0 {
		p("Restore points:")
		for _, rp := range r.RestorePoints {
			reach := ""
			if !rp.Reachable {
				reach = "  not reachable"
			}
			p("  %-24s %s  %s%s", rp.Name, short(rp.Time), rp.LSN, reach)
		}
	}
	for _, x := range r.Warnings {
		for i, l := range wrap("WARNING: "+x, 78) {
			if i > 0 {
				l = "  " + l
			}
			p("%s", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeArchiver prints the archiver's state on this host, when status read it.
func (r *Report) writeArchiver(p func(string, ...any), size func(int64) string) {
	a := r.Archiver
	if a == nil {
		return
	}
	if a.Files == 0 {
		p("Archiver:    nothing waiting in pg_wal")
	} else {
		p("Archiver:    %d files (%s) waiting in pg_wal", a.Files, bytesize.Text(a.Bytes))
		if a.Oldest != "" {
			p("  oldest %s", a.Oldest)
		}
	}
	if n := len(a.PendingDrops); n > 0 {
		p("  %d DROPPED segments not yet recorded in the repository:", n)
		p("  %s..%s", a.PendingDrops[0], a.PendingDrops[n-1])
	}
}

func (r *Report) writeTarget(p func(string, ...any), ts func(time.Time) string) {
	t := r.Target
	if !t.Reachable {
		p("Target %s: NOT REACHABLE", t.Target)
		p("  %s", t.Reason)
		for _, n := range t.Nearest {
			p("  nearest reachable: %s (LSN %s)", ts(n.Time), n.LSN)
		}
		return
	}
	p("Target %s: reachable", t.Target)
	p("  from backup %s", t.Backup)
	p("  replaying %d segments, %s of WAL (%s stored)", t.Segments, bytesize.Text(int64(t.WALBytes)), bytesize.Text(t.StoredBytes))
	p("  WAL %s .. %s", t.FromSegment, t.ToSegment)
	if t.RTOEstimate != nil {
		for _, l := range t.RTOEstimate.Text("  ") {
			p("%s", l)
		}
	}
	for _, l := range wrap(t.Note, 76) {
		p("  %s", l)
	}
}

// wrap splits s into lines of at most width columns, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines, line = append(lines, line), ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func pathText(path []uint32) string {
	var s []string
	for _, t := range path {
		s = append(s, fmt.Sprint(t))
	}
	return strings.Join(s, "→")
}

// ageText is a short age: 42s, 5m07s, 3h20m, 12d.
func ageText(sec float64) string {
	switch {
	case math.IsNaN(sec):
		return "?"
	case sec >= 48*3600: // days; also beyond what a time.Duration holds
		return fmt.Sprintf("%.0fd", math.Floor(sec/(24*3600)))
	}
	d := time.Duration(sec) * time.Second
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// writeEncryption says which keys read the repository's objects.
func (r *Report) writeEncryption(p func(string, ...any), short func(time.Time) string) {
	e := r.Encryption
	if e == nil {
		return
	}
	p("Encryption:  age; new objects were encrypted for %d recipient set(s)", len(e.RecipientSets))
	for _, s := range e.RecipientSets {
		p("  %s  first used %s on %s, MAC key %s:", printable(s.ID), short(s.FirstUsed), printable(s.Host), printable(s.MACKeyID))
		for _, rc := range s.Recipients {
			p("    %s", printable(rc))
		}
	}
	for _, w := range e.WAL {
		set := w.RecipientSet
		if set == "" {
			set = "not encrypted"
		}
		p("  WAL %s: %s", w.Segment, set)
	}
	p("  (WAL sampled at each end of every window; pgb verify --wal with")
	p("  encryption-identity-file proves the identities read every object)")
}
