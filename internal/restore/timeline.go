package restore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/window"
)

// ErrTimeline means the timelines in the repository do not allow the restore as
// asked: the target timeline is unknown, or no backup lies on its history.
var ErrTimeline = errors.New("timeline problem")

// segRef is an archived segment.
type segRef struct {
	name     string
	segNo    uint64
	storedAt time.Time
	size     int64
}

// timelines is the timeline history the repository holds.
type timelines struct {
	history  map[uint32][]wal.TimelineSpan // ancestry of each timeline with a .history object
	storedAt map[uint32]time.Time          // when its .history object was stored
	segs     map[uint32][]segRef           // archived segments per timeline
	known    map[uint32]bool               // timelines with a history, a segment or a backup
}

// timelinesOf is what readTimelines would find, from the history files window.Gather
// read and parsed.
func timelinesOf(g *window.Repository, a *archive, backups []*repo.Summary) *timelines {
	ts := &timelines{history: map[uint32][]wal.TimelineSpan{}, storedAt: map[uint32]time.Time{}, segs: a.segs, known: map[uint32]bool{}}
	for tli := range a.segs {
		ts.known[tli] = true
	}
	for _, m := range backups {
		ts.known[m.Timeline] = true
	}
	for tli, o := range g.Histories {
		if spans, ok := g.History[tli]; ok {
			ts.history[tli], ts.storedAt[tli], ts.known[tli] = spans, o.Stored, true
		}
	}
	return ts
}

// readTimelines reads every archived .history file (through its envelope, bounded).
func readTimelines(ctx context.Context, rp *repo.Repo, a *archive, backups []*repo.Summary) (*timelines, error) {
	ts := &timelines{history: map[uint32][]wal.TimelineSpan{}, storedAt: map[uint32]time.Time{}, segs: a.segs, known: map[uint32]bool{}}
	for tli := range a.segs {
		ts.known[tli] = true
	}
	for _, m := range backups {
		ts.known[m.Timeline] = true
	}
	for tli, o := range a.histories {
		b, err := rp.ReadHistory(ctx, tli)
		if err != nil {
			return nil, err
		}
		spans, err := wal.ParseHistory(tli, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Key, err)
		}
		ts.history[tli], ts.storedAt[tli], ts.known[tli] = spans, o.Stored, true
	}
	return ts, nil
}

// ancestry is the history of timeline tli, itself last. Like PostgreSQL, a timeline
// without a history file has no parents.
func (ts *timelines) ancestry(tli uint32) []wal.TimelineSpan {
	if h, ok := ts.history[tli]; ok {
		return h
	}
	return []wal.TimelineSpan{{TLI: tli, End: wal.EndOfTimeline}}
}

// latest is the newest timeline the repository knows (1 if it knows none).
func (ts *timelines) latest() uint32 {
	l := uint32(1)
	for tli := range ts.known {
		l = max(l, tli)
	}
	return l
}

// target resolves --target-timeline: 0 for "current" (the backup's own timeline).
func (ts *timelines) target(spec string) (uint32, error) {
	switch spec {
	case "", "latest":
		return ts.latest(), nil
	case "current":
		return 0, nil
	}
	n, err := strconv.ParseUint(spec, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: --target-timeline %q: want latest, current or a timeline number", ErrTimeline, spec)
	}
	if !ts.known[uint32(n)] {
		return 0, fmt.Errorf("%w: timeline %d is not in the repository (no %s.history and no WAL on it); %s",
			ErrTimeline, n, fmt.Sprintf("%08X", n), ts.describe())
	}
	return uint32(n), nil
}

// onHistory reports whether backup m can start a recovery that follows timeline tli:
// its timeline is in tli's history and the backup ends before that timeline
// branched off (PostgreSQL: "requested timeline is not a child of this server's
// history" otherwise). tli 0 ("current") takes any backup.
func (ts *timelines) onHistory(m *repo.Summary, tli uint32) bool {
	if tli == 0 {
		return true
	}
	for _, s := range ts.ancestry(tli) {
		if s.TLI == m.Timeline {
			return m.StartLSN >= s.Begin && m.StopLSN <= s.End
		}
	}
	return false
}

// holds reports whether position lsn of timeline pt is on the history of timeline tli.
func (ts *timelines) holds(tli, pt uint32, lsn wal.LSN) bool {
	return OnHistory(ts.ancestry(tli), pt, lsn)
}

// OnHistory reports whether recovery that follows the history spans (a timeline's
// ancestry, see wal.ParseHistory) meets the point at lsn on timeline pt: pt is in the
// history and lsn comes before pt branched off. pgb status asks it of each restore
// point, as restore --target-name does.
func OnHistory(spans []wal.TimelineSpan, pt uint32, lsn wal.LSN) bool {
	for _, s := range spans {
		if s.TLI == pt {
			return lsn >= s.Begin && lsn <= s.End
		}
	}
	return false
}

// describe lists the timelines: where each branched and how far its WAL goes.
func (ts *timelines) describe() string {
	var tlis []uint32
	for tli := range ts.known {
		tlis = append(tlis, tli)
	}
	sort.Slice(tlis, func(i, j int) bool { return tlis[i] < tlis[j] })
	var parts []string
	for _, tli := range tlis {
		s := fmt.Sprintf("timeline %d", tli)
		if anc := ts.ancestry(tli); len(anc) > 1 {
			p := anc[len(anc)-2]
			s += fmt.Sprintf(" (branched from %d at LSN %s)", p.TLI, p.End)
		}
		if segs := ts.segs[tli]; len(segs) > 0 {
			n := segs[len(segs)-1]
			s += fmt.Sprintf(" archived up to %s", n.name)
		}
		parts = append(parts, s)
	}
	return "the repository holds " + strings.Join(parts, "; ")
}

// path says how tli descends, for messages: "timeline 3 (from 2 at 0/7000000, from 1 at 0/5000000)".
func (ts *timelines) path(tli uint32) string {
	anc := ts.ancestry(tli)
	var from []string
	for i := len(anc) - 2; i >= 0; i-- {
		from = append(from, fmt.Sprintf("from %d at LSN %s", anc[i].TLI, anc[i].End))
	}
	if len(from) == 0 {
		return fmt.Sprintf("timeline %d", tli)
	}
	return fmt.Sprintf("timeline %d (%s)", tli, strings.Join(from, ", "))
}

// ErrAmbiguousTimeline means the repository's history forked so that following the
// newest timeline ("latest") could silently drop commits of another one.
var ErrAmbiguousTimeline = errors.New(`the repository's history forked, so the target timeline "latest" is ambiguous`)

// forks says why following timeline l, the newest, could drop committed work of
// another timeline: a timeline that is not on l's history (a sibling branch), or an
// ancestor that kept being archived past its branch point after the child timeline's
// .history was stored (a promoted copy archived into the repository of a primary that
// went on). A normal point-in-time restore that was promoted leaves the old timeline
// with WAL past the branch point too, but all of it stored before the new timeline
// appeared.
func (ts *timelines) forks(l uint32, segSize uint64) []string {
	anc := ts.ancestry(l)
	on := map[uint32]bool{}
	for _, s := range anc {
		on[s.TLI] = true
	}
	var why []string
	var tlis []uint32
	for tli := range ts.known {
		tlis = append(tlis, tli)
	}
	sort.Slice(tlis, func(i, j int) bool { return tlis[i] < tlis[j] })
	for _, tli := range tlis {
		if !on[tli] {
			why = append(why, fmt.Sprintf("timeline %d is not on the history of timeline %d", tli, l))
		}
	}
	for i := 0; i+1 < len(anc); i++ {
		parent, child := anc[i], anc[i+1].TLI
		born, ok := ts.storedAt[child]
		if !ok {
			continue
		}
		for _, sg := range ts.segs[parent.TLI] {
			if wal.LSN((sg.segNo+1)*segSize) > parent.End && sg.storedAt.After(born) {
				why = append(why, fmt.Sprintf("timeline %d kept being archived after timeline %d branched from it at LSN %s (%s was stored at %s, %08X.history at %s)",
					parent.TLI, child, parent.End, sg.name, sg.storedAt.UTC().Format(time.RFC3339), child, born.UTC().Format(time.RFC3339)))
				break
			}
		}
	}
	return why
}
