package window

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

// Kind is what a target names.
type Kind int

// Target kinds, as restore's.
const (
	ToEnd Kind = iota
	ToTime
	ToName // checked by the restore point's LSN
	ToLSN
	ToXID
	ToImmediate
)

// Target is a recovery target as far as reachability goes.
type Target struct {
	Kind      Kind
	Time      time.Time
	LSN       wal.LSN // ToLSN, and ToName: the restore point's LSN
	XID       uint64  // full transaction id
	Exclusive bool
	Text      string // the target as the user gave it, for messages
}

// Why a target cannot be reached.
var (
	ErrBeforeFirstBackup = errors.New("the target is before the end of the oldest usable backup")
	ErrInGap             = errors.New("the target lies in a gap of the archived WAL")
	ErrAfterArchive      = errors.New("the target is after the last archived commit")
)

// Verdict says whether and how a target can be reached.
type Verdict struct {
	Reachable bool    `json:"reachable"`
	Window    *Window `json:"window,omitempty"`
	// Backup is the backup restore would start from: the newest usable one before
	// the target.
	Backup string `json:"backup,omitempty"`
	// The WAL replayed, from the backup's start to the segment where recovery
	// stops (for a time target an estimate: the first segment stored after it).
	FromSegment string `json:"from_segment,omitempty"`
	ToSegment   string `json:"to_segment,omitempty"`
	Segments    uint64 `json:"segments,omitempty"`
	WALBytes    uint64 `json:"wal_bytes,omitempty"`
	StoredBytes int64  `json:"stored_bytes,omitempty"`
	// Err says why not (wrapping ErrBeforeFirstBackup, ErrInGap, ErrAfterArchive or
	// ErrNoWindow); Nearest are the closest points that can be reached.
	Err error `json:"-"`
	// Note qualifies a reachable verdict: for a transaction id, that its commit was
	// not looked up.
	Note    string  `json:"note,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Nearest []Point `json:"nearest,omitempty"`
}

// position compares the target with window w: -1 before it, 0 inside, 1 after.
func (t Target) position(w *Window) int {
	switch t.Kind {
	case ToTime:
		if !w.Start.Time.Before(t.Time) {
			return -1
		}
		if w.LastCommit != nil && (t.Time.Before(w.LastCommit.Time) || t.Exclusive && t.Time.Equal(w.LastCommit.Time)) {
			return 0
		}
		return 1
	case ToLSN, ToName:
		switch {
		case t.LSN < w.Start.LSN:
			return -1
		case t.LSN <= w.LastRecord:
			return 0
		}
		return 1
	}
	return 0
}

// Check says whether recovery can reach t, from which backup and over which WAL.
func (ws *Windows) Check(t Target) Verdict {
	if len(ws.Windows) == 0 {
		return Verdict{Err: fmt.Errorf("%w: %s", ErrNoWindow, ws.noWindowReason()), Reason: ws.noWindowReason()}
	}
	switch t.Kind {
	case ToEnd:
		return ws.reach(ws.Windows[len(ws.Windows)-1], t)
	case ToImmediate:
		return ws.reach(ws.Windows[0], t)
	case ToXID:
		return ws.reachXID(t)
	}
	for i, w := range ws.Windows {
		switch t.position(w) {
		case 0:
			return ws.reach(w, t)
		case -1:
			if i == 0 {
				return ws.refuse(ErrBeforeFirstBackup, t, w.Start)
			}
			prev := ws.Windows[i-1]
			return ws.refuse(ErrInGap, t, endPoint(prev), w.Start)
		}
	}
	last := ws.Windows[len(ws.Windows)-1]
	if last.CutByGap {
		return ws.refuse(ErrInGap, t, endPoint(last))
	}
	return ws.refuse(ErrAfterArchive, t, endPoint(last))
}

func endPoint(w *Window) Point {
	if w.LastCommit != nil {
		return Point{LSN: w.LastCommit.LSN, Time: w.LastCommit.Time}
	}
	return w.Start
}

func (ws *Windows) refuse(why error, t Target, nearest ...Point) Verdict {
	var near []string
	for _, p := range nearest {
		near = append(near, fmt.Sprintf("%s (LSN %s)", p.Time.UTC().Format(time.RFC3339Nano), p.LSN))
	}
	reason := why.Error()
	switch {
	case errors.Is(why, ErrAfterArchive):
		last := ws.Windows[len(ws.Windows)-1]
		if c := last.LastCommit; c != nil {
			reason = fmt.Sprintf("the target %s is after the last archived commit (xid %d at %s, LSN %s)",
				t.Text, c.Xid, c.Time.UTC().Format(time.RFC3339Nano), c.LSN)
		} else if last.NoCommitIn > 0 {
			reason = fmt.Sprintf("the target %s is after the window's last known point: no commit in its newest %d archived segments (from %s on), and the last commit before them was not looked up; the window ends at an unknown time, at least %s",
				t.Text, last.NoCommitIn, last.NoCommitBefore, last.Start.Time.UTC().Format(time.RFC3339Nano))
		} else {
			reason = fmt.Sprintf("the target %s is after the archived WAL, which holds no commit after backup %s", t.Text, last.Backup)
		}
	case errors.Is(why, ErrInGap):
		reason = fmt.Sprintf("the target %s lies in a gap of the archived WAL (%s)", t.Text, ws.gapText())
	case errors.Is(why, ErrBeforeFirstBackup):
		reason = fmt.Sprintf("the target %s is before the end of the oldest usable backup %s", t.Text, ws.Windows[0].Backup)
	}
	return Verdict{Err: fmt.Errorf("%w: %s; nearest reachable: %s", why, reason, strings.Join(near, " or ")), Reason: reason, Nearest: nearest}
}

func (ws *Windows) gapText() string {
	var g []string
	for _, x := range ws.Gaps {
		what := "missing"
		switch {
		case x.Dropped:
			what = "dropped"
		case x.Damaged:
			what = "damaged"
		}
		t := fmt.Sprintf("%s %s", what, x.From)
		if x.Count > 1 {
			t = fmt.Sprintf("%s %s to %s (%d segments)", what, x.From, x.To, x.Count)
		}
		if x.Dropped {
			t += ": " + x.Cause + ", point-in-time recovery across it is not possible"
		}
		g = append(g, t)
	}
	if len(g) == 0 {
		return "no backup after the archived WAL resumes"
	}
	return strings.Join(g, ", ")
}

func (ws *Windows) noWindowReason() string {
	switch {
	case len(ws.in.Backups) == 0:
		return "the repository has no backups (take one with pgb backup-push)"
	case ws.Newest == nil:
		return "the repository holds no archived WAL"
	}
	var why []string
	for _, b := range ws.in.Backups {
		if r, ok := ws.Unusable[b.Name]; ok {
			why = append(why, fmt.Sprintf("backup %s: %s", b.Name, r))
		}
	}
	return "no backup can become consistent: " + strings.Join(why, "; ")
}

// reachXID is the verdict on a transaction id. Where its commit lies is not looked up
// (the summaries hold only the newest segments' commits), and neither bound at hand is
// certain: a transaction that began before a backup may commit after it ends, and xids
// commit out of order. So it is never refused on them: it is reachable from the newest
// usable backup that began before the transaction got its id (else the oldest), over
// all the WAL that backup's window holds.
func (ws *Windows) reachXID(t Target) Verdict {
	w := ws.Windows[0]
	for _, x := range ws.Windows {
		if ws.backups[x.Backups[0]].NextXID <= t.XID {
			w = x
		}
	}
	v := ws.reach(w, t)
	v.Note = fmt.Sprintf("the commit of %s is not looked up: recovery stops at it if it committed after backup %s ended and before %s; "+
		"if not, PostgreSQL replays all of this WAL and stops with \"recovery ended before configured recovery target was reached\"",
		t.Text, v.Backup, w.LastSegment)
	return v
}

// reach fills the verdict of a target inside window w.
func (ws *Windows) reach(w *Window, t Target) Verdict {
	v := Verdict{Reachable: true, Window: w}
	// The newest backup of the window that ends before the target.
	for _, name := range w.Backups {
		b := ws.backups[name]
		ok := true
		switch t.Kind {
		case ToTime:
			ok = b.StopTime.Before(t.Time)
		case ToLSN, ToName:
			ok = b.StopLSN <= t.LSN
		case ToXID:
			ok = b.NextXID <= t.XID
		case ToImmediate:
			ok = name == w.Backups[0]
		}
		if ok {
			v.Backup = name
		}
	}
	if v.Backup == "" {
		v.Backup = w.Backups[0] // an xid that may have begun before every backup
	}
	b := ws.backups[v.Backup]
	from := uint64(b.StartLSN) / ws.in.SegSize
	to := w.lastSeg
	switch t.Kind {
	case ToLSN, ToName:
		to = min(to, uint64(t.LSN)/ws.in.SegSize)
	case ToImmediate:
		to = max(from, uint64(b.StopLSN)/ws.in.SegSize)
	case ToTime:
		for n := from; n <= w.lastSeg; n++ {
			if s, ok := ws.present[n]; ok && !s.Stored.Before(t.Time) {
				to = n
				break
			}
		}
	}
	to = max(to, uint64(b.StopLSN)/ws.in.SegSize)
	v.FromSegment = wal.SegmentFileName(ws.tliOf(from), from, ws.in.SegSize)
	v.ToSegment = wal.SegmentFileName(ws.tliOf(to), to, ws.in.SegSize)
	v.Segments = to - from + 1
	v.WALBytes = v.Segments * ws.in.SegSize
	for n := from; n <= to; n++ {
		v.StoredBytes += ws.present[n].Size
	}
	return v
}

// Describe is the windows in one line, for messages.
func (ws *Windows) Describe() string {
	if len(ws.Windows) == 0 {
		return "nothing is recoverable: " + ws.noWindowReason()
	}
	var parts []string
	for _, w := range ws.Windows {
		s := fmt.Sprintf("from %s (LSN %s, end of backup %s) to %s", w.Start.Time.UTC().Format(time.RFC3339), w.Start.LSN, w.Backup, w.EndTime().UTC().Format(time.RFC3339Nano))
		switch {
		case w.Unsummarised != "":
			s += fmt.Sprintf(" at least (WAL archived to %s is encrypted and not summarised from %s on: give encryption-identity-file to read its last commit)", w.LastSegment, w.Unsummarised)
		case w.LastCommit != nil:
			s += fmt.Sprintf(" (last archived commit, xid %d, LSN %s; WAL archived to %s)", w.LastCommit.Xid, w.LastCommit.LSN, w.LastSegment)
		case w.NoCommitIn > 0:
			s += fmt.Sprintf(" at least (no commit in the newest %d segments, from %s on: the window ends at the last commit before them, not looked up; WAL archived to %s)", w.NoCommitIn, w.NoCommitBefore, w.LastSegment)
		default:
			s += fmt.Sprintf(" (no commit archived after the backup; WAL archived to %s)", w.LastSegment)
		}
		switch {
		case w.EndOfWAL:
			s += ", cut where the WAL of " + w.LastSegment + " ends early (zeros follow its records)"
		case w.CutCause != "":
			s += ", cut by " + w.CutCause
		case w.CutByGap:
			s += ", cut by a gap"
		}
		parts = append(parts, s)
	}
	out := "the recoverable window runs " + strings.Join(parts, "; another ")
	if len(ws.Gaps) > 0 {
		out += "; the archived WAL has gaps: " + ws.gapText()
	}
	return out
}
