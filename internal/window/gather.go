package window

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// Repository is what Gather read besides the Input.
type Repository struct {
	Input
	Damaged   []repo.DamagedBackup
	Histories map[uint32]repo.WALObject
	Cache     *walsum.Cache
}

// Gather reads the inputs of Compute from rp: one listing of wal/, one of backups/
// (plus one small summary per backup), each .history file, the gap records
// (RecordedGaps), and — later, through
// Input.Summary — the WAL summaries Compute asks for. backups, if not nil, are used
// instead of listing them.
func Gather(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, log *slog.Logger) (*Repository, error) {
	g := &Repository{Histories: map[uint32]repo.WALObject{}}
	g.Segments = map[uint32][]Segment{}
	g.History = map[uint32][]wal.TimelineSpan{}
	if backups == nil {
		bs, damaged, err := rp.ListBackups(ctx)
		if err != nil {
			return nil, err
		}
		backups, g.Damaged = bs, damaged
		perm, err := rp.PermanentBackups(ctx)
		if err != nil {
			return nil, err
		}
		g.Permanent = perm
	}
	g.Backups = backups
	var objs []repo.WALObject
	streamed, err := rp.ListWALAndStreamed(ctx, func(o repo.WALObject) error {
		switch o.Kind {
		case wal.History:
			g.Histories[o.Timeline] = o
		case wal.Segment:
			objs = append(objs, o)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list archived WAL: %w", err)
	}
	g.SegSize = SegSize(backups)
	if g.SegSize == 0 && len(objs) > 0 {
		s, err := walsum.SegmentSize(ctx, rp, objs[len(objs)-1].File)
		if err != nil {
			return nil, err
		}
		g.SegSize = s
	}
	if g.SegSize == 0 {
		g.SegSize = 16 << 20
	}
	whole := map[string]bool{}
	for _, o := range objs {
		whole[o.Name] = true
		g.Segments[o.Timeline] = append(g.Segments[o.Timeline], Segment{
			Name: o.Name, Timeline: o.Timeline, SegNo: o.SegmentNumber(g.SegSize), Size: o.Size, Stored: o.Stored,
		})
	}
	// Segments pgb wal-stream holds only as chunks (the one it is writing): recovery
	// reads them zero-padded, to their last streamed byte (wal-fetch).
	for _, o := range streamed {
		if whole[o.Name] {
			continue
		}
		segs := g.Segments[o.Timeline]
		n := o.SegmentNumber(g.SegSize)
		i := sort.Search(len(segs), func(i int) bool { return segs[i].SegNo >= n })
		segs = append(segs, Segment{})
		copy(segs[i+1:], segs[i:])
		segs[i] = Segment{Name: o.Name, Timeline: o.Timeline, SegNo: n, Stored: o.Stored, Streamed: true}
		g.Segments[o.Timeline] = segs
	}
	for tli, o := range g.Histories {
		b, err := rp.ReadHistory(ctx, tli)
		if err != nil {
			return nil, err
		}
		spans, err := wal.ParseHistory(tli, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Key, err)
		}
		g.History[tli] = spans
	}
	if g.Dropped, err = RecordedGaps(ctx, rp, log); err != nil {
		return nil, err
	}
	g.Cache = walsum.NewCache(rp, g.SegSize, log)
	g.Summary = SummaryFrom(ctx, g.Cache)
	return g, nil
}

// SummaryFrom is an Input.Summary that reads through c.
func SummaryFrom(ctx context.Context, c *walsum.Cache) func(Segment) (*walsum.Summary, error) {
	return func(s Segment) (*walsum.Summary, error) {
		f, err := wal.Parse(s.Name)
		if err != nil {
			return nil, err
		}
		return c.Get(ctx, f)
	}
}

// SegSize is the WAL segment size the backups record, 0 if none says.
func SegSize(backups []*repo.Summary) uint64 {
	for _, m := range backups {
		if s := m.WALSegSize; s >= 1<<20 && s <= 1<<30 && s&(s-1) == 0 {
			return s
		}
	}
	return 0
}
