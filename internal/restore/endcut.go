package restore

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/window"
)

// ErrArchiveCut means a restore to the end of the archive would stop at a cut in the
// WAL (a gap, or WAL that ends early) before WAL archived after it. It comes wrapped
// with ErrUnreachable.
var ErrArchiveCut = errors.New("the end of the archive lies beyond a cut in the WAL")

// endCut refuses a restore to the end of the archive from backup m when m's window
// (in ws) ends before archived WAL on the followed history: a gap (missing, damaged or
// dropped segments) or WAL that ends early cuts it, and PostgreSQL, finding no next
// segment, would take the cut for the end of the archive and promote there — the WAL
// archived after it silently never replayed. A window cut only by dropped WAL after
// its last archived segment, with nothing archived beyond, is the end of the archive:
// no restore can get further (pgb status warns of the drop). named says the backup was
// chosen with --backup.
func endCut(ws *window.Windows, a *archive, m *repo.Summary, named bool) error {
	if ws.Newest == nil {
		return nil
	}
	i := slices.IndexFunc(ws.Windows, func(w *window.Window) bool { return slices.Contains(w.Backups, m.Name) })
	if i < 0 {
		return nil
	}
	w := ws.Windows[i]
	size := segSize([]*repo.Summary{m})
	last, ok := segNo(w.LastSegment, size)
	if !ok || ws.Newest.SegNo <= last {
		return nil
	}
	cause := fmt.Sprintf("the WAL of %s ends early (zeros follow its records)", w.LastSegment)
	resume := last + 1
	if !w.EndOfWAL {
		cause = "a gap in the archived WAL after " + w.LastSegment
		for _, g := range ws.Gaps {
			if from, ok := segNo(g.From, size); ok && from > last {
				cause = DescribeGap(g)
				if !g.Dropped && !g.Damaged {
					cause += " — if it is still being archived, retry once it is"
				}
				if to, ok := segNo(g.To, size); ok {
					resume = to + 1
				}
				break
			}
		}
	}
	after := a.firstFrom(ws.Path, resume)
	if after == "" {
		after = ws.Newest.Name
	}
	beyond := after
	if after != ws.Newest.Name {
		beyond += " to " + ws.Newest.Name
	}
	var advice string
	if i < len(ws.Windows)-1 {
		next := ws.Windows[len(ws.Windows)-1]
		advice = fmt.Sprintf("to reach the newest WAL, restore from backup %s: its window reaches %s; ", next.Backups[len(next.Backups)-1], next.LastSegment)
		if named {
			advice = fmt.Sprintf("to reach the newest WAL, restore from backup %s (drop --backup): its window reaches %s; ", next.Backups[len(next.Backups)-1], next.LastSegment)
		}
	} else {
		advice = "no backup here starts after the cut, so no restore can replay the WAL after it (a base backup taken now starts a window that reaches the newest WAL); "
	}
	return fmt.Errorf("%w: %w: recovery from backup %s would stop at %s, the end of its window (last record at LSN %s, WAL to %s), cut by %s; "+
		"PostgreSQL would take the cut for the end of the archive and promote there, never replaying the archived %s; nothing was written: %s"+
		"to recover to the end of this window, restore with --target-lsn %s (add --target-action promote to promote there); %s",
		ErrUnreachable, ErrArchiveCut, m.Name, w.EndTime().UTC().Format(time.RFC3339Nano), w.LastRecord, w.LastSegment, cause,
		beyond, advice, w.LastRecord, ws.Describe())
}

// DescribeGap is gap g as the cause of a cut window: which segments are missing,
// damaged or dropped and, for dropped WAL, why (the gap record's cause).
func DescribeGap(g window.Gap) string {
	what := "missing"
	switch {
	case g.Dropped:
		what = "dropped"
	case g.Damaged:
		what = "damaged"
	}
	s := what + " " + g.From
	if g.Count > 1 {
		s = fmt.Sprintf("%s %s to %s (%d segments)", what, g.From, g.To, g.Count)
	}
	switch {
	case g.Dropped && g.Cause != "":
		s += " (" + g.Cause + ")"
	case !g.Dropped && !g.Damaged:
		s += " (not in the repository)"
	}
	return s
}

// firstFrom is the first archived segment at or after segment number n on the
// timelines of path ("" if none).
func (a *archive) firstFrom(path []uint32, n uint64) string {
	best, bestNo := "", uint64(0)
	for _, tli := range path {
		for _, s := range a.segs[tli] {
			if s.segNo >= n && (best == "" || s.segNo < bestNo || s.segNo == bestNo && order(s.name) > order(best)) {
				best, bestNo = s.name, s.segNo
			}
		}
	}
	return best
}

// segNo is the segment number of segment name at segment size size.
func segNo(name string, size uint64) (uint64, bool) {
	f, err := wal.Parse(name)
	if err != nil || f.Kind != wal.Segment {
		return 0, false
	}
	return f.SegmentNumber(size), true
}
