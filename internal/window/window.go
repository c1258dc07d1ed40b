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
	// Streamed: only pgb wal-stream's chunks hold it (the segment being streamed);
	// recovery reads it to its last streamed byte.
	Streamed bool
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
	// Dropped are the gaps recorded in the repository: WAL dropped on purpose
	// (wal-push-queue-max, see repo.GapRecord). Recovery never crosses a dropped
	// segment, even when it is the newest: the window ends before it. A dropped
	// segment that is archived all the same (another pgb pushed it) fills its place.
	Dropped []RecordedGap
}

// RecordedGap is a gap record: segments First to Last of Timeline were dropped, for
// Cause.
type RecordedGap struct {
	Timeline uint32
	First    string
	Last     string
	Cause    string
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
	// CutByGap: the window ends because the next segment is missing. CutCause says
	// why when the repository records it: the WAL was dropped (RecordedGap.Cause).
	CutByGap bool   `json:"cut_by_gap"`
	CutCause string `json:"cut_cause,omitempty"`
	// Backups are the usable backups that start inside the window, oldest first.
	Backups []string `json:"backups"`

	// EndOfWAL: the window's last segment ends with zeros before its end (a segment
	// copied while it was written), so replay stops there although later segments
	// are archived.
	EndOfWAL bool `json:"end_of_wal,omitempty"`
	// Streamed: the window's last segment is held only as pgb wal-stream's chunks (the
	// segment being streamed); the window reaches its last streamed commit.
	Streamed bool `json:"streamed,omitempty"`
	// NoCommitIn: no commit was found in the window's newest NoCommitIn segments
	// (MaxCommitScan), from NoCommitBefore on; the scan stopped there. The window's
	// last commit is before NoCommitBefore and was not looked up: LastCommit is nil.
	NoCommitIn     int    `json:"no_commit_in_newest_segments,omitempty"`
	NoCommitBefore string `json:"no_commit_from_segment,omitempty"`
	// Unsummarised names the window's newest segment whose summary could not be
	// made because it is encrypted and no identity to read it was given (pgb status
	// run where only writers' keys are): LastCommit, if any, is then only the last
	// commit of the summaries that exist, and the window reaches at least that far.
	Unsummarised string `json:"encrypted_unsummarised_from,omitempty"`

	lastSeg  uint64
	firstSeg uint64
	tliOf    func(uint64) uint32
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
	// Dropped: the repository records that this WAL was dropped on purpose, for
	// Cause (wal-push-queue-max).
	Dropped bool   `json:"dropped,omitempty"`
	Cause   string `json:"cause,omitempty"`
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
	// Filled are recorded gaps whose every segment is archived all the same: the WAL
	// is continuous there (the record stays, as history).
	Filled []Gap
	// Newest is the newest archived segment on the path, nil if none.
	Newest *Segment
	// SummariesRead counts the summaries Compute asked for.
	SummariesRead int

	in       *Input
	spans    []wal.TimelineSpan
	backups  map[string]*repo.Summary
	present  map[uint64]Segment
	tliOf    func(uint64) uint32
	memo     map[uint64]summary
	dropped  map[uint64]error // damaged segments, treated as missing
	drops    []dropSpan       // recorded gaps on the path, in WAL order, not overlapping
	cutAfter map[uint64]bool  // segments whose WAL ends at zeros before the next
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
	ws.drops, ws.Filled = ws.recordedDrops(nums)
	if len(nums) > 0 {
		n := present[nums[len(nums)-1]]
		ws.Newest = &n
	}
	ws.memo, ws.dropped, ws.cutAfter = map[uint64]summary{}, map[uint64]error{}, map[uint64]bool{}
	// A damaged segment found while looking for a window's end is dropped like a
	// missing one, and a segment whose records stop at zeros before its end cuts the
	// WAL after it: both change the runs, so the windows are built again (the
	// summaries already read are remembered).
	for {
		again, err := ws.build(nums)
		if err != nil {
			return nil, err
		}
		if !again {
			return ws, nil
		}
	}
}

// MaxCommitScan is how many segments, newest first, Compute reads back through to find
// a window's last commit: a long stretch of WAL without a commit (a bulk load, a
// VACUUM) would otherwise cost a GET of every one of its segments.
const MaxCommitScan = 64

type summary struct {
	s   *walsum.Summary
	err error
}

type run struct{ a, b uint64 }

// build computes the gaps, the usable backups and the windows from the segments nums
// (in WAL order) less those dropped as damaged. It reports true when it found a
// damaged segment or a premature end of WAL: the caller builds again.
func (ws *Windows) build(nums []uint64) (bool, error) {
	in := ws.in
	ws.Windows, ws.Gaps, ws.Unusable = nil, nil, map[string]string{}
	seg := func(l wal.LSN) uint64 { return uint64(l) / in.SegSize }
	// Runs of consecutive segments recovery replays through; the gaps between them.
	// Recorded drops after the newest of them cut the last one too.
	var runs []run
	tailCut := false
	for _, n := range nums {
		if _, bad := ws.dropped[n]; bad {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].b+1 == n && !ws.cutAfter[n-1] {
			runs[len(runs)-1].b = n
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].b+1 < n {
			ws.addGap(runs[len(runs)-1].b+1, n-1)
		}
		runs = append(runs, run{n, n})
	}
	if len(runs) > 0 {
		last := runs[len(runs)-1].b
		for _, d := range ws.drops {
			if d.b > last {
				ws.Gaps = append(ws.Gaps, Gap{From: ws.name(max(d.a, last+1)), To: ws.name(d.b), Count: d.b - max(d.a, last+1) + 1, Dropped: true, Cause: d.cause})
				tailCut = true
			}
		}
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
		if b.Incremental() {
			if _, err := repo.Chain(in.Backups, b.Name); err != nil {
				ws.Unusable[b.Name] = err.Error()
				continue
			}
		}
		if !onHistory(ws.spans, b) {
			ws.Unusable[b.Name] = fmt.Sprintf("timeline %d at LSN %s is not on the history of timeline %d", b.Timeline, b.StopLSN, ws.Timeline)
			continue
		}
		first, last := seg(b.StartLSN), seg(b.StopLSN)
		if b.StopLSN > b.StartLSN && uint64(b.StopLSN)%in.SegSize == 0 {
			last-- // ends exactly at a segment boundary
		}
		r := runOf(first)
		if r < 0 || runOf(last) != r {
			ws.Unusable[b.Name] = ws.unusableWhy(first, last)
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
			FirstSegment: ws.name(seg(b.StartLSN)), LastSegment: ws.name(r.b),
			CutByGap: i < len(runs)-1 || tailCut, EndOfWAL: ws.cutAfter[r.b], CutCause: ws.dropCause(r.b + 1),
			Streamed: ws.present[r.b].Streamed,
			firstSeg: seg(b.StartLSN), lastSeg: r.b, tliOf: ws.tliOf,
			LastRecord: b.StopLSN, EndLSN: b.StopLSN,
		}
		for _, x := range bs {
			w.Backups = append(w.Backups, x.Name)
		}
		again, err := ws.findEnd(w, seg(b.StopLSN))
		if err != nil || again {
			return again, err
		}
		ws.Windows = append(ws.Windows, w)
	}
	return false, nil
}

// addGap records the segments a to b as missing, or damaged where they were found
// so, or dropped where the repository records it.
func (ws *Windows) addGap(a, b uint64) {
	type mark struct {
		a, b    uint64
		damaged bool
		cause   string
	}
	var marks []mark
	for n := range ws.dropped {
		if n >= a && n <= b {
			marks = append(marks, mark{a: n, b: n, damaged: true})
		}
	}
	for _, d := range ws.drops {
		if d.a <= b && d.b >= a {
			marks = append(marks, mark{a: max(d.a, a), b: min(d.b, b), cause: d.cause})
		}
	}
	sort.Slice(marks, func(i, j int) bool {
		if marks[i].a != marks[j].a {
			return marks[i].a < marks[j].a
		}
		return marks[i].damaged && !marks[j].damaged
	})
	cur := a
	for _, m := range marks {
		if m.b < cur {
			continue
		}
		from := max(m.a, cur)
		if from > cur {
			ws.Gaps = append(ws.Gaps, Gap{From: ws.name(cur), To: ws.name(from - 1), Count: from - cur})
		}
		ws.Gaps = append(ws.Gaps, Gap{From: ws.name(from), To: ws.name(m.b), Count: m.b - from + 1, Damaged: m.damaged, Dropped: !m.damaged, Cause: m.cause})
		cur = m.b + 1
	}
	if cur <= b {
		ws.Gaps = append(ws.Gaps, Gap{From: ws.name(cur), To: ws.name(b), Count: b - cur + 1})
	}
}

// unusableWhy says why a backup whose WAL runs from segment first to last cannot
// become consistent.
func (ws *Windows) unusableWhy(first, last uint64) string {
	for n := first; n <= last && n-first < 1<<16; n++ {
		if err, bad := ws.dropped[n]; bad {
			return fmt.Sprintf("segment %s, which it needs to become consistent, is damaged (%v)", ws.name(n), err)
		}
	}
	return fmt.Sprintf("WAL from %s to %s, which it needs to become consistent, is not all archived", ws.name(first), ws.name(last))
}

// summary reads the summary of segment n once per Compute.
func (ws *Windows) summary(n uint64) (*walsum.Summary, error) {
	if r, ok := ws.memo[n]; ok {
		return r.s, r.err
	}
	s, err := ws.in.Summary(ws.present[n])
	ws.SummariesRead++
	ws.memo[n] = summary{s, err}
	return s, err
}

// findEnd reads summaries from the window's last segment back to its last commit (no
// further back than the backup's stop segment, and no more than MaxCommitScan). It
// reports true when it found a damaged segment (dropped, like a missing one) or WAL
// that ends at zeros before the window's last segment (the WAL is cut after it): the
// windows must be built again.
func (ws *Windows) findEnd(w *Window, stopSeg uint64) (bool, error) {
	haveEnd := false
	for n := w.lastSeg; ; n-- {
		if w.lastSeg-n == MaxCommitScan {
			w.NoCommitIn, w.NoCommitBefore = MaxCommitScan, ws.name(n+1)
			return false, nil
		}
		s, err := ws.summary(n)
		if errors.Is(err, repo.ErrNoKey) || errors.Is(err, repo.ErrWrongKey) {
			// Encrypted, and this reader holds no identity: what summaries exist still
			// give a lower bound.
			if w.Unsummarised == "" {
				w.Unsummarised = ws.present[n].Name
			}
			if n <= stopSeg {
				return false, nil
			}
			continue
		}
		if isDamaged(err) {
			// A segment that does not decode: recovery stops before it, as at a gap.
			ws.dropped[n] = err
			ws.Damaged = append(ws.Damaged, Damaged{Segment: ws.present[n].Name, Error: err.Error()})
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("summarise %s: %w", ws.present[n].Name, err)
		}
		if s.EndOfWAL && n < w.lastSeg && !ws.cutAfter[n] {
			// Zeros follow its records: PostgreSQL's replay ends there.
			ws.cutAfter[n] = true
			return true, nil
		}
		if !haveEnd && s.Records > 0 {
			haveEnd = true
			if s.LastLSN > w.LastRecord {
				w.LastRecord, w.EndLSN = s.LastLSN, s.EndLSN
			}
		}
		if c := s.LastCommit; c != nil && c.LSN >= w.Start.LSN {
			w.LastCommit = &Commit{Xid: c.Xid, LSN: c.LSN, Time: c.Time.UTC()}
			return false, nil
		}
		if n <= stopSeg {
			return false, nil
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
