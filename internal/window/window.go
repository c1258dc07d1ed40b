// Package window computes what a repository can recover to: the recoverable windows
// along a timeline's history, from the end of the oldest usable backup to the last
// commit found in the archived WAL, cut by every gap in the WAL chain; and whether a
// recovery target lies inside one. pgb status shows it; pgb restore checks a target
// against it before writing anything.
//
// The computation (Compute, Windows.Check) is pure: it works on a listing of backups,
// segments and timeline histories, and reads WAL summaries through a function, only
// those it needs — the newest segments of each window back to their last commit.
// Gather reads those inputs from a repository.
package window

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// Segment is an archived WAL segment.
type Segment struct {
	Name     string
	Timeline uint32
	SegNo    uint64
	Size     int64     // bytes stored
	Stored   time.Time // when the store says it was stored
}

// Input is what the windows are computed from.
type Input struct {
	SegSize uint64
	// Backups, oldest first (as repo.ListBackups returns them).
	Backups   []*repo.Summary
	Permanent map[string]bool
	// Segments per timeline, in WAL order.
	Segments map[uint32][]Segment
	// History is the ancestry of each timeline that has a .history file (see
	// wal.ParseHistory); a timeline without one has no parent.
	History map[uint32][]wal.TimelineSpan
	// Timeline is the timeline recovery follows; 0 means the newest one known.
	Timeline uint32
	// Summary returns the summary of an archived segment (see walsum.Cache).
	Summary func(Segment) (*walsum.Summary, error)
}

// Point is a position in the WAL: an LSN and the time of what is there.
type Point struct {
	LSN  wal.LSN   `json:"lsn"`
	Time time.Time `json:"time"`
}

// Commit is the last commit of a window.
type Commit struct {
	Xid  uint32    `json:"xid"`
	LSN  wal.LSN   `json:"lsn"`
	Time time.Time `json:"time"`
}

// Window is one stretch of WAL that recovery can reach from a backup.
type Window struct {
	// Backup is the oldest backup the window starts from; Start is where it becomes
	// consistent (its stop LSN and time).
	Backup string `json:"from_backup"`
	Start  Point  `json:"start"`
	// End is the last commit in the window's archived WAL, nil when none was archived
	// after the backup: the window is then the backup's end alone.
	LastCommit *Commit `json:"last_commit,omitempty"`
	// LastRecord is where the last wholly archived record of the window starts;
	// EndLSN is the byte after it.
	LastRecord wal.LSN `json:"last_record_lsn"`
	EndLSN     wal.LSN `json:"end_lsn"`
	// FirstSegment and LastSegment bound the window's WAL.
	FirstSegment string `json:"first_segment"`
	LastSegment  string `json:"last_segment"`
	// CutByGap: the window ends because the next segment is missing.
	CutByGap bool `json:"cut_by_gap"`
	// Backups are the usable backups that start inside the window, oldest first.
	Backups []string `json:"backups"`

	startNextXID uint64
	maxXid       uint64 // full form of the highest committed xid found, 0 if none
	lastSeg      uint64
	firstSeg     uint64
	tliOf        func(uint64) uint32
}

// EndTime is the time the window reaches: its last commit, or its start.
func (w *Window) EndTime() time.Time {
	if w.LastCommit != nil {
		return w.LastCommit.Time
	}
	return w.Start.Time
}

// Gap is a stretch of segments missing from the chain.
type Gap struct {
	From  string `json:"from"` // first missing segment
	To    string `json:"to"`   // last missing segment
	Count uint64 `json:"count"`
	// Damaged: the segment is archived but its WAL does not decode.
	Damaged bool `json:"damaged,omitempty"`
}

// Windows is the result of Compute.
type Windows struct {
	Timeline uint32   `json:"timeline"`
	Path     []uint32 `json:"timeline_path"` // the timelines recovery follows, oldest first
	Windows  []*Window
	Gaps     []Gap
	// Unusable are backups that cannot start a recovery: off the history of the
	// timeline, or missing WAL between their start and end.
	Unusable map[string]string
	// Damaged are segments whose WAL does not decode; each cuts its window like a gap.
	Damaged []Damaged
	// Newest is the newest archived segment on the path, nil if none.
	Newest *Segment
	// SummariesRead counts the summaries Compute asked for.
	SummariesRead int

	in      *Input
	spans   []wal.TimelineSpan
	backups map[string]*repo.Summary
	present map[uint64]Segment
	tliOf   func(uint64) uint32
}

// Ancestry is the history of timeline tli, itself last.
func (in *Input) Ancestry(tli uint32) []wal.TimelineSpan {
	if h, ok := in.History[tli]; ok && len(h) > 0 {
		return h
	}
	return []wal.TimelineSpan{{TLI: tli, End: wal.EndOfTimeline}}
}

// Latest is the newest timeline the input knows (1 if none).
func (in *Input) Latest() uint32 {
	l := uint32(1)
	for tli := range in.Segments {
		l = max(l, tli)
	}
	for tli := range in.History {
		l = max(l, tli)
	}
	for _, b := range in.Backups {
		l = max(l, b.Timeline)
	}
	return l
}

// Compute finds the gaps and the recoverable windows along the history of
// in.Timeline.
func Compute(in *Input) (*Windows, error) {
	if in.SegSize == 0 {
		in.SegSize = 16 << 20
	}
	tli := in.Timeline
	if tli == 0 {
		tli = in.Latest()
	}
	ws := &Windows{Timeline: tli, in: in, spans: in.Ancestry(tli), Unusable: map[string]string{}, backups: map[string]*repo.Summary{}}
	for _, s := range ws.spans {
		ws.Path = append(ws.Path, s.TLI)
	}
	// Which timeline's copy of each segment recovery reads: the newest timeline of
	// the path that has begun by the segment's start (PostgreSQL's expectedTLEs).
	seg := func(l wal.LSN) uint64 { return uint64(l) / in.SegSize }
	tliOf := func(n uint64) uint32 {
		t := ws.spans[0].TLI
		for _, s := range ws.spans {
			if seg(s.Begin) <= n {
				t = s.TLI
			}
		}
		return t
	}
	present := map[uint64]Segment{}
	var nums []uint64
	for _, s := range ws.spans {
		for _, sg := range in.Segments[s.TLI] {
			if tliOf(sg.SegNo) != s.TLI {
				continue
			}
			present[sg.SegNo] = sg
			nums = append(nums, sg.SegNo)
		}
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	ws.present, ws.tliOf = present, tliOf
	if len(nums) > 0 {
		n := present[nums[len(nums)-1]]
		ws.Newest = &n
	}
	name := func(n uint64) string { return wal.SegmentFileName(tliOf(n), n, in.SegSize) }
	// Runs of consecutive segments; the gaps between them.
	type run struct{ a, b uint64 }
	var runs []run
	for _, n := range nums {
		if len(runs) > 0 && runs[len(runs)-1].b+1 == n {
			runs[len(runs)-1].b = n
			continue
		}
		if len(runs) > 0 {
			p := runs[len(runs)-1].b
			ws.Gaps = append(ws.Gaps, Gap{From: name(p + 1), To: name(n - 1), Count: n - p - 1})
		}
		runs = append(runs, run{n, n})
	}
	// Backups: on the path, with their WAL from start to stop archived.
	runOf := func(n uint64) int {
		for i, r := range runs {
			if n >= r.a && n <= r.b {
				return i
			}
		}
		return -1
	}
	byRun := map[int][]*repo.Summary{}
	for _, b := range in.Backups {
		ws.backups[b.Name] = b
		if !onHistory(ws.spans, b) {
			ws.Unusable[b.Name] = fmt.Sprintf("timeline %d at LSN %s is not on the history of timeline %d", b.Timeline, b.StopLSN, tli)
			continue
		}
		first, last := seg(b.StartLSN), seg(b.StopLSN)
		if b.StopLSN > b.StartLSN && uint64(b.StopLSN)%in.SegSize == 0 {
			last-- // ends exactly at a segment boundary
		}
		r := runOf(first)
		if r < 0 || runOf(last) != r {
			ws.Unusable[b.Name] = fmt.Sprintf("WAL from %s to %s, which it needs to become consistent, is not all archived", name(first), name(last))
			continue
		}
		byRun[r] = append(byRun[r], b)
	}
	for i, r := range runs {
		bs := byRun[i]
		if len(bs) == 0 {
			continue
		}
		sort.SliceStable(bs, func(i, j int) bool { return bs[i].StopLSN < bs[j].StopLSN })
		b := bs[0]
		w := &Window{
			Backup: b.Name, Start: Point{LSN: b.StopLSN, Time: b.StopTime.UTC()},
			FirstSegment: name(seg(b.StartLSN)), LastSegment: name(r.b),
			CutByGap: i < len(runs)-1, startNextXID: b.NextXID,
			firstSeg: seg(b.StartLSN), lastSeg: r.b, tliOf: tliOf,
			LastRecord: b.StopLSN, EndLSN: b.StopLSN,
		}
		for _, x := range bs {
			w.Backups = append(w.Backups, x.Name)
		}
		if err := ws.findEnd(w, present, seg(b.StopLSN)); err != nil {
			return nil, err
		}
		ws.Windows = append(ws.Windows, w)
	}
	return ws, nil
}

// findEnd reads summaries from the window's last segment back to its last commit (no
// further back than the backup's stop segment).
func (ws *Windows) findEnd(w *Window, present map[uint64]Segment, stopSeg uint64) error {
	haveEnd := false
	for n := w.lastSeg; ; n-- {
		s, err := ws.in.Summary(present[n])
		ws.SummariesRead++
		if isDamaged(err) && n > stopSeg {
			// A segment that does not decode ends the window before it, as a gap does.
			ws.Damaged = append(ws.Damaged, Damaged{Segment: present[n].Name, Error: err.Error()})
			ws.Gaps = append(ws.Gaps, Gap{From: present[n].Name, To: present[n].Name, Count: 1, Damaged: true})
			sort.Slice(ws.Gaps, func(i, j int) bool { return ws.Gaps[i].From[8:] < ws.Gaps[j].From[8:] })
			w.lastSeg, w.LastSegment, w.CutByGap = n-1, ws.name(n-1), true
			w.LastRecord, w.EndLSN, w.LastCommit, w.maxXid, haveEnd = w.Start.LSN, w.Start.LSN, nil, 0, false
			continue
		}
		if err != nil {
			return fmt.Errorf("summarise %s: %w", present[n].Name, err)
		}
		if !haveEnd && s.Records > 0 {
			haveEnd = true
			if s.LastLSN > w.LastRecord {
				w.LastRecord, w.EndLSN = s.LastLSN, s.EndLSN
			}
		}
		if s.MaxXid != 0 {
			w.maxXid = max(w.maxXid, fullXID(uint64(s.MaxXid), w.startNextXID))
		}
		if c := s.LastCommit; c != nil && c.LSN >= w.Start.LSN {
			w.LastCommit = &Commit{Xid: c.Xid, LSN: c.LSN, Time: c.Time.UTC()}
			return nil
		}
		if n <= stopSeg {
			return nil
		}
	}
}

// onHistory reports whether backup b lies on the history spans: its timeline is in
// it and it ends before that timeline branched off.
func onHistory(spans []wal.TimelineSpan, b *repo.Summary) bool {
	for _, s := range spans {
		if s.TLI == b.Timeline {
			return b.StartLSN >= s.Begin && b.StopLSN <= s.End
		}
	}
	return false
}

// fullXID is restore.FullXID: xid (32-bit) as the full transaction id nearest ref.
func fullXID(xid, ref uint64) uint64 {
	if xid >= 1<<32 {
		return xid
	}
	f := ref&^0xFFFFFFFF | xid
	switch {
	case f >= ref+1<<31 && f >= 1<<32:
		f -= 1 << 32
	case f+1<<31 < ref:
		f += 1 << 32
	}
	return f
}

// isDamaged reports whether err says a segment's content is bad (rather than that it
// could not be read).
func isDamaged(err error) bool {
	return errors.Is(err, wal.ErrCorruptRecord) || errors.Is(err, wal.ErrTruncated) || errors.Is(err, repo.ErrCorrupt)
}

// Damaged is an archived segment whose WAL does not decode.
type Damaged struct {
	Segment string `json:"segment"`
	Error   string `json:"error"`
}

func (ws *Windows) name(n uint64) string { return wal.SegmentFileName(ws.tliOf(n), n, ws.in.SegSize) }

// ErrNoWindow means the repository has no recoverable window at all.
var ErrNoWindow = errors.New("nothing is recoverable")
