package window

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// dropSpan is a recorded gap as segment numbers on the followed path.
type dropSpan struct {
	a, b  uint64
	cause string
}

// recordedDrops turns in.Dropped into spans of segment numbers on the followed path:
// only the part of a record whose segments recovery would read from its timeline
// counts (a segment dropped on timeline 1 after timeline 2 branched off does not cut
// timeline 2). A record whose every segment is archived (nums, sorted) all the same
// is filled: returned as such, not as a span. Overlapping spans are merged.
func (ws *Windows) recordedDrops(nums []uint64) ([]dropSpan, []Gap) {
	var spans []dropSpan
	var filled []Gap
	for _, g := range ws.in.Dropped {
		a, b, ok := ws.dropRange(g)
		if !ok {
			continue
		}
		lo := sort.Search(len(nums), func(i int) bool { return nums[i] >= a })
		hi := sort.Search(len(nums), func(i int) bool { return nums[i] > b })
		if uint64(hi-lo) == b-a+1 {
			filled = append(filled, Gap{From: ws.name(a), To: ws.name(b), Count: b - a + 1, Dropped: true, Cause: g.Cause})
			continue
		}
		spans = append(spans, dropSpan{a: a, b: b, cause: g.Cause})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].a < spans[j].a })
	var out []dropSpan
	for _, s := range spans {
		if n := len(out); n > 0 && s.a <= out[n-1].b {
			last := &out[n-1]
			last.b = max(last.b, s.b)
			if !strings.Contains(last.cause, s.cause) {
				last.cause += "; " + s.cause
			}
			continue
		}
		out = append(out, s)
	}
	return out, filled
}

// dropRange is the part of g that lies on the followed path: the segment numbers
// that recovery reads from g's timeline. false when none does, or g's names do not
// read with this segment size.
func (ws *Windows) dropRange(g RecordedGap) (uint64, uint64, bool) {
	segSize := ws.in.SegSize
	var n [2]uint64
	for i, name := range []string{g.First, g.Last} {
		f, err := wal.Parse(name)
		if err != nil || f.Kind != wal.Segment || f.Timeline != g.Timeline || uint64(f.Seg) >= uint64(0x100000000)/segSize {
			return 0, 0, false
		}
		n[i] = f.SegmentNumber(segSize)
	}
	a, b := n[0], n[1]
	if a > b {
		return 0, 0, false
	}
	seg := func(l wal.LSN) uint64 { return uint64(l) / segSize }
	for i, s := range ws.spans {
		if s.TLI != g.Timeline {
			continue
		}
		lo, hi := uint64(0), uint64(math.MaxUint64)
		if i > 0 {
			lo = seg(s.Begin)
		}
		for _, later := range ws.spans[i+1:] {
			if seg(later.Begin) == 0 {
				return 0, 0, false
			}
			hi = min(hi, seg(later.Begin)-1)
		}
		a, b = max(a, lo), min(b, hi)
		return a, b, a <= b
	}
	return 0, 0, false
}

// dropCause is the cause of the recorded gap holding segment n, "" if none does.
func (ws *Windows) dropCause(n uint64) string {
	for _, d := range ws.drops {
		if n >= d.a && n <= d.b {
			return d.cause
		}
	}
	return ""
}

// MaxGapReads is how many gap records RecordedGaps reads, the newest: the others
// still cut the window (their key names the segments), their cause unread.
const MaxGapReads = 64

// RecordedGaps reads the gap records of rp for Input.Dropped: one listing of gaps/,
// and one read per record, at most MaxGapReads. A record that does not read keeps its
// gap (its key says which segments were dropped); its cause then says so. A storage
// error fails.
func RecordedGaps(ctx context.Context, rp *repo.Repo, log *slog.Logger) ([]RecordedGap, error) {
	keys, err := rp.ListGapKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RecordedGap, 0, len(keys))
	for i, k := range keys {
		g := RecordedGap{Timeline: k.Timeline, First: k.First, Last: k.Last}
		if i < len(keys)-MaxGapReads {
			g.Cause = "WAL dropped (gap record " + k.Key + " not read: more than " + fmt.Sprint(MaxGapReads) + " records)"
			out = append(out, g)
			continue
		}
		rec, err := rp.ReadGap(ctx, k.Key)
		switch {
		case err == nil:
			g.Cause = rec.Cause()
		case errors.Is(err, storage.ErrNotExist):
			continue // deleted since the listing
		case errors.Is(err, repo.ErrCorrupt), errors.Is(err, repo.ErrDamagedGap), errors.Is(err, repo.ErrNewerFormat):
			if log != nil {
				log.Warn("damaged gap record: its segments count as dropped", "key", k.Key, "error", err)
			}
			g.Cause = fmt.Sprintf("WAL dropped (gap record %s is damaged: %v)", k.Key, err)
		default:
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}
