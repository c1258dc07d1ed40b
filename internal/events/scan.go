package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// DefaultMinRows is how many rows of one relation a transaction must delete or
// update to be listed, unless Options say otherwise.
const DefaultMinRows = 1000

// Options choose the events.
type Options struct {
	Since, Until time.Time // commit times; zero: unbounded
	Table        string    // only events on this relation (name or schema.name)
	MinRows      int64     // 0: DefaultMinRows
	Timeline     uint32    // only this timeline and the history leading to it; 0: every timeline
	Log          *slog.Logger
}

// Result is what Find found.
type Result struct {
	Events []Event
	// Problems are the stretches of WAL that could not be read (missing,
	// damaged): events in them are not listed. Empty when the scan was complete.
	Problems []string
	Segments int // segments read
}

// ErrNoBackups means the repository has no backup: there is no start for the
// scan, and no relation names.
var ErrNoBackups = errors.New("the repository has no backups")

// Find reads the archived WAL from the oldest backup's start (from the start
// of the newest backup that began before Since, when it is set) and returns
// the destructive events, oldest first per timeline, each with the restore
// command that stops just before it.
func Find(ctx context.Context, rp *repo.Repo, opt Options) (*Result, error) {
	if opt.MinRows <= 0 {
		opt.MinRows = DefaultMinRows
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backups, _, err := rp.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: pgb events reads WAL from a backup's start (take one with pgb backup-push)", ErrNoBackups)
	}
	segSize := backups[0].WALSegSize
	start := backups[0].StartLSN
	if !opt.Since.IsZero() {
		for _, b := range backups {
			if !b.StartTime.After(opt.Since) {
				start = b.StartLSN
			}
		}
	}
	segs, err := listSegments(ctx, rp)
	if err != nil {
		return nil, err
	}
	s := &scan{rp: rp, segSize: segSize, opt: opt, log: log, namer: NewNamer(rp, backups, log), res: &Result{}}
	s.firstStop = backups[0].StopLSN
	for _, b := range backups {
		s.firstStop = min(s.firstStop, b.StopLSN)
	}
	s.namer.Problem = s.problem
	ranges, err := scanRanges(ctx, rp, segs, opt.Timeline, s.problem)
	if err != nil {
		return nil, err
	}
	for i := range ranges {
		ranges[i].need = needUpTo(ranges[i], ranges)
		ranges[i].begin = ownBegin(ranges[i], segs, segSize)
	}
	for _, r := range ranges {
		if err := s.timeline(ctx, r, segs[r.tli], start); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pgb events stopped before the end of the archived WAL: %w", err)
	}
	return s.res, nil
}

// span is a stretch of one timeline to read: the timeline's own WAL from begin
// (its switch point from the parent) up to end.
type span struct {
	tli        uint32
	begin, end wal.LSN
	parent     uint32 // the timeline it branched off at begin; 0 for none
	// need is where the timeline's archived WAL must reach (exclusive): the
	// latest switch point of a timeline that branched off it and is read
	// too (0: none). A child's first segment copies the parent's WAL before
	// the switch point; the segments before must be the parent's.
	need wal.LSN
}

// needUpTo is where span r's WAL must reach for the timelines branching off it.
func needUpTo(r span, all []span) wal.LSN {
	var need wal.LSN
	for _, c := range all {
		if c.parent == r.tli && c.begin > need {
			need = c.begin
		}
	}
	return min(need, r.end)
}

// listSegments returns the archived segment numbers of each timeline, sorted.
func listSegments(ctx context.Context, rp *repo.Repo) (map[uint32][]wal.File, error) {
	segs := map[uint32][]wal.File{}
	err := rp.ListWAL(ctx, func(o repo.WALObject) error {
		if o.Kind == wal.Segment {
			segs[o.Timeline] = append(segs[o.Timeline], o.File)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list archived WAL: %w", err)
	}
	for _, fs := range segs {
		sort.Slice(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
	}
	return segs, nil
}

// scanRanges says which stretch of which timeline to read: with want set, the
// history of timeline want; otherwise every archived timeline from where it
// branched off its parent, and the ancestors of those (whose WAL up to the
// switch points must be archived too). A history file that cannot be read
// is a problem, reported through problem.
func scanRanges(ctx context.Context, rp *repo.Repo, segs map[uint32][]wal.File, want uint32, problem func(string, ...any)) ([]span, error) {
	history := func(tli uint32) ([]wal.TimelineSpan, error) {
		if tli == 1 {
			return []wal.TimelineSpan{{TLI: 1, End: wal.EndOfTimeline}}, nil
		}
		b, err := rp.ReadHistory(ctx, tli)
		if err != nil {
			return nil, err
		}
		return wal.ParseHistory(tli, b)
	}
	if want != 0 {
		h, err := history(want)
		if err != nil {
			return nil, fmt.Errorf("timeline %d: %w", want, err)
		}
		out := make([]span, 0, len(h))
		for i, t := range h {
			sp := span{tli: t.TLI, begin: t.Begin, end: t.End}
			if i > 0 {
				sp.parent = h[i-1].TLI
			}
			out = append(out, sp)
		}
		return out, nil
	}
	seen := map[uint32]bool{}
	todo := make([]uint32, 0, len(segs))
	for t := range segs {
		todo = append(todo, t)
		seen[t] = true
	}
	var out []span
	for len(todo) > 0 {
		t := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		sp := span{tli: t, end: wal.EndOfTimeline}
		h, err := history(t)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			problem("timeline %d: its history file cannot be read (%v): where it branched off is unknown, events it copied from its parent may be listed twice and WAL missing before it is not found", t, err)
		} else {
			sp.begin = h[len(h)-1].Begin
			if len(h) > 1 {
				sp.parent = h[len(h)-2].TLI
			}
		}
		if sp.parent != 0 && !seen[sp.parent] {
			seen[sp.parent] = true
			todo = append(todo, sp.parent)
		}
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b span) int { return cmp.Compare(a.tli, b.tli) })
	return out, nil
}

// ownBegin is where the events of span r's timeline begin. Before its switch
// point a timeline's first segment copies its parent's WAL, listed on the
// parent; but after a promotion the parent's segment holding the switch point
// is archived only as .partial, and that stretch of WAL can be read (and
// recovered to) only on the new timeline: its events are listed there.
func ownBegin(r span, segs map[uint32][]wal.File, segSize uint64) wal.LSN {
	if r.parent == 0 {
		return r.begin
	}
	n := r.begin.SegmentNumber(segSize)
	for _, f := range segs[r.parent] {
		if f.SegmentNumber(segSize) == n {
			return r.begin
		}
	}
	return wal.LSN(n * segSize)
}

type scan struct {
	rp      *repo.Repo
	segSize uint64
	opt     Options
	log     *slog.Logger
	namer   *Namer
	res     *Result
	// firstStop is the earliest stop LSN of a backup: restore can stop no
	// earlier than that.
	firstStop wal.LSN
}

func (s *scan) problem(format string, a ...any) {
	s.res.Problems = append(s.res.Problems, fmt.Sprintf(format, a...))
}

// timeline reads the archived segments of span r (all of timeline r.tli, in
// order) from the one holding start, in runs of consecutive segments.
func (s *scan) timeline(ctx context.Context, r span, files []wal.File, start wal.LSN) error {
	from := max(start, r.begin)
	var todo []wal.File
	for _, f := range files {
		first := wal.LSN(f.SegmentNumber(s.segSize) * s.segSize)
		if uint64(first)+s.segSize > uint64(from) && first < r.end {
			todo = append(todo, f)
		}
	}
	if len(todo) == 0 {
		if r.need > from {
			s.problem("timeline %d: WAL from %s to %s, where a later timeline branched off, is not in the repository: events there are not listed",
				r.tli, from, r.need)
		}
		return nil
	}
	if last := todo[len(todo)-1].SegmentNumber(s.segSize); r.need > from && last+1 < r.need.SegmentNumber(s.segSize) {
		defer s.problem("timeline %d: WAL after %s up to %s, where a later timeline branched off, is not in the repository: events there are not listed",
			r.tli, todo[len(todo)-1].Name, r.need)
	}
	if want := from.SegmentNumber(s.segSize); todo[0].SegmentNumber(s.segSize) > want {
		s.problem("timeline %d: WAL from %s (segment %s) to %s is not in the repository: events there are not listed",
			r.tli, from, wal.SegmentFileName(r.tli, want, s.segSize), todo[0].Name)
	}
	fold := &Folder{MinRows: s.opt.MinRows, Begin: r.begin}
	for len(todo) > 0 {
		n := 1
		for n < len(todo) && todo[n].SegmentNumber(s.segSize) == todo[n-1].SegmentNumber(s.segSize)+1 {
			n++
		}
		run := todo[:n]
		done, stop, err := s.run(ctx, r, run, fold)
		if err != nil {
			return err
		}
		if stop {
			return nil
		}
		todo = todo[done:]
		if done == n && len(todo) > 0 {
			s.problem("timeline %d: WAL after %s up to %s is not in the repository: events there are not listed",
				r.tli, run[n-1].Name, todo[0].Name)
		}
	}
	return nil
}

// run reads consecutive segments through one reader and folds their facts,
// segment by segment. It returns how many segments it consumed (fewer than
// len(run) after a damaged one: a new reader takes the rest) and whether the
// scan passed --until.
//
// What ends the reader, as pgb verify --deep judges it: the input ending
// inside a record (ErrTruncated) at the run's last segment is its normal end,
// the record goes on in a segment not archived (yet); zeros where a record
// should begin (ErrEndOfWAL) are damage wherever they are, the newest segment
// included: PostgreSQL archives a segment only once its records run to its
// end or to a segment switch (whose padding the reader skips).
func (s *scan) run(ctx context.Context, r span, run []wal.File, fold *Folder) (done int, stop bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := newFetcher(ctx, s.rp, run, s.segSize)
	first := wal.LSN(run[0].SegmentNumber(s.segSize) * s.segSize)
	rd, err := wal.NewReader(src, s.segSize, first)
	if err != nil {
		return 0, false, err
	}
	var col *Collector
	segEnd := uint64(first) + s.segSize
	cur := 0
	for {
		rec, rerr := rd.Next()
		if rerr == nil {
			if col == nil {
				col = NewCollector(rd.PostgreSQLMajor())
			}
			for uint64(rec.LSN) >= segEnd {
				if stop, err := s.fold(ctx, col, fold, r); err != nil || stop {
					return len(run), stop, err
				}
				segEnd += s.segSize
				cur++
			}
			if rec.LSN >= r.end {
				stop, err := s.fold(ctx, col, fold, r)
				return len(run), stop, err
			}
			if err := col.Add(&rec); err != nil {
				s.problem("%s: the record at %s does not decode (%v): the rest of the segment is not read, events in it are not listed",
					run[cur].Name, rec.LSN, err)
				stop, err := s.fold(ctx, col, fold, r)
				return cur + 1, stop, err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, false, fmt.Errorf("reading archived WAL: %w", err)
		}
		done := len(run)
		var fe *fetchError
		switch {
		case errors.As(rerr, &fe) && fe.storage:
			return 0, false, fe.err
		case errors.As(rerr, &fe):
			s.problem("%v: events in it are not listed", fe.err)
			done = fe.index + 1
		case errors.Is(rerr, io.EOF):
		case cur >= len(run)-1 && errors.Is(rerr, wal.ErrTruncated):
			// The last record runs into WAL that is not archived (yet).
		case errors.Is(rerr, wal.ErrEndOfWAL):
			done = min(cur, len(run)-1) + 1
			s.problem("%s: WAL ends early: %v, but an archived segment holds records up to its end or a segment switch: the rest of it is not read, events in it are not listed",
				run[done-1].Name, rerr)
		default:
			done = min(cur, len(run)-1) + 1
			s.problem("%s: %v: the rest of the segment is not read, events in it are not listed", run[done-1].Name, rerr)
		}
		if col == nil {
			return done, false, nil
		}
		stop, err := s.fold(ctx, col, fold, r)
		return done, stop, err
	}
}

// fold folds what col collected (one segment) and keeps the events that pass
// the filters, named. It reports whether the segment went past --until.
func (s *scan) fold(ctx context.Context, col *Collector, fold *Folder, r span) (bool, error) {
	facts := col.Facts()
	s.res.Segments++
	for _, e := range fold.Fold(facts, r.tli) {
		if e.LSN >= r.end || (!s.opt.Since.IsZero() && e.Time.Before(s.opt.Since)) || (!s.opt.Until.IsZero() && e.Time.After(s.opt.Until)) {
			continue
		}
		if err := s.namer.Name(ctx, &e); err != nil {
			return false, err
		}
		if s.opt.Table != "" && !e.concerns(s.opt.Table) {
			continue
		}
		if e.RestoreLSN < s.firstStop {
			e.NotRecoverable = fmt.Sprintf("before the end of the oldest backup (LSN %s): no backup can restore to before it", s.firstStop)
		} else {
			e.Restore = RestoreCommand(e.RestoreLSN, e.Timeline)
		}
		s.res.Events = append(s.res.Events, e)
	}
	return facts.PastUntil(s.opt.Until), nil
}

// RestoreCommand is the pgb restore command that stops just before the record
// at lsn on timeline tli. It names an LSN, not the transaction id: restore
// picks a backup for an LSN by its stop LSN, for an xid by the next xid it
// had, which refuses a transaction that began before the backup ended and
// committed after, and an xid cannot stop before a DROP DATABASE's
// irreversible records, written before its commit.
func RestoreCommand(lsn wal.LSN, tli uint32) string {
	return fmt.Sprintf("pgb restore --pgdata DIR --target-lsn %s --target-exclusive --target-timeline %d", lsn, tli)
}

// concerns reports whether the event touches the relation called name (with
// or without its schema).
func (e *Event) concerns(name string) bool {
	for _, r := range e.Relations {
		if r.Name != "" && (r.Name == name || r.QualifiedName() == name ||
			strings.EqualFold(r.Name, name) || strings.EqualFold(r.QualifiedName(), name)) {
			return true
		}
	}
	return false
}
