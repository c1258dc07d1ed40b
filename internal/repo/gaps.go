package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// Gap records: WAL that wal-push dropped on purpose (wal-push-queue-max), one small
// sealed document per run of consecutive segments, under
// gaps/<TTTTTTTT>/<first segment>-<last segment>.json. The key alone says which
// segments were dropped: a reader that cannot read the document still knows the gap,
// and never takes the WAL there for continuous. See docs/repository-format.md.
const gapsPrefix = "gaps/"

// GapFormat is the version of the gap record pgb writes.
const GapFormat = 1

// GapReasonQueueMax is the reason of a gap wal-push-queue-max made.
const GapReasonQueueMax = "wal-push-queue-max"

// gapLimit bounds what a gap record may decode to: a few hundred bytes, the error
// included (cut to gapErrorMax).
const gapLimit = 64 << 10

// gapErrorMax is the longest push error a gap record keeps, in bytes.
const gapErrorMax = 4096

// GapRecord is what the repository says about WAL that was dropped: segments First
// to Last of timeline Timeline never reached it, on purpose.
type GapRecord struct {
	Format      int    `json:"format"`
	Timeline    uint32 `json:"timeline"`
	First       string `json:"first_segment"`
	Last        string `json:"last_segment"`
	SegmentSize uint64 `json:"segment_size"`
	Segments    uint64 `json:"segments"`
	// Reason is what dropped the WAL: GapReasonQueueMax.
	Reason string `json:"reason"`
	// DroppedFrom and DroppedTo are when the first and the last segment were dropped.
	DroppedFrom time.Time `json:"dropped_from"`
	DroppedTo   time.Time `json:"dropped_to"`
	// BacklogBytes is the largest archiver backlog (bytes of .ready segments in
	// pg_wal) seen at a drop, LimitBytes the wal-push-queue-max it exceeded.
	BacklogBytes int64 `json:"backlog_bytes"`
	LimitBytes   int64 `json:"limit_bytes"`
	// Error is why the last push of the range failed.
	Error   string `json:"error,omitempty"`
	Host    string `json:"host,omitempty"`
	Version string `json:"pgb_version,omitempty"`

	// Key is where the record is stored (set when read or written; not stored).
	Key string `json:"-"`
}

// ErrDamagedGap marks a gap record that cannot be used.
var ErrDamagedGap = errors.New("damaged gap record")

// Validate checks a record read from the repository (untrusted) or about to be
// written: known format, segment names of its timeline in order, a segment size
// PostgreSQL allows, a segment count that agrees with them, times set and in order,
// sizes not negative, strings bounded.
func (g *GapRecord) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDamagedGap, fmt.Sprintf(format, a...))
	}
	switch {
	case g.Format < 1:
		return bad("format %d", g.Format)
	case g.Format > GapFormat:
		return fmt.Errorf("%w: gap record format %d, this pgb understands up to %d: upgrade pgb", ErrNewerFormat, g.Format, GapFormat)
	case g.Timeline == 0:
		return bad("no timeline")
	case g.SegmentSize < 1<<20 || g.SegmentSize > 1<<30 || g.SegmentSize&(g.SegmentSize-1) != 0:
		return bad("segment size %d", g.SegmentSize)
	case g.Reason == "" || len(g.Reason) > 64:
		return bad("reason %q", cutUTF8(g.Reason, 64))
	case g.DroppedFrom.IsZero() || g.DroppedTo.IsZero():
		return bad("no drop time")
	case g.DroppedTo.Before(g.DroppedFrom):
		return bad("last dropped %s before the first %s", g.DroppedTo.Format(time.RFC3339), g.DroppedFrom.Format(time.RFC3339))
	case g.BacklogBytes < 0 || g.LimitBytes < 0:
		return bad("negative backlog or limit")
	case len(g.Error) > gapErrorMax || len(g.Host) > 1024 || len(g.Version) > 256:
		return bad("a field is too long")
	}
	first, last, err := gapRange(g.Timeline, g.First, g.Last, g.SegmentSize)
	if err != nil {
		return bad("%v", err)
	}
	if n := last - first + 1; g.Segments != n {
		return bad("%d segments from %s to %s, not %d", n, g.First, g.Last, g.Segments)
	}
	return nil
}

// gapRange checks that first and last are segments of timeline tli, first not after
// last, both valid for segSize, and returns their numbers.
func gapRange(tli uint32, first, last string, segSize uint64) (uint64, uint64, error) {
	var n [2]uint64
	for i, name := range []string{first, last} {
		f, err := wal.Parse(name)
		if err != nil || f.Kind != wal.Segment {
			return 0, 0, fmt.Errorf("%q is not a WAL segment name", name)
		}
		if f.Timeline != tli {
			return 0, 0, fmt.Errorf("segment %s is not on timeline %d", name, tli)
		}
		if uint64(f.Seg) >= uint64(0x100000000)/segSize {
			return 0, 0, fmt.Errorf("segment %s does not exist with %d-byte segments", name, segSize)
		}
		n[i] = f.SegmentNumber(segSize)
	}
	if n[0] > n[1] {
		return 0, 0, fmt.Errorf("first segment %s after the last %s", first, last)
	}
	return n[0], n[1], nil
}

// Cause says in a few words why the record's WAL is missing, for status and restore:
// "WAL dropped by wal-push-queue-max on <time> (host h; backlog 5.0 GiB over the
// 4.0 GiB limit)".
func (g *GapRecord) Cause() string {
	when := g.DroppedFrom.UTC().Format(time.RFC3339)
	if to := g.DroppedTo.UTC().Format(time.RFC3339); to != when {
		when += " to " + to
	}
	s := fmt.Sprintf("WAL dropped by %s on %s", g.Reason, when)
	var more []string
	if g.Host != "" {
		more = append(more, "host "+g.Host)
	}
	if g.LimitBytes > 0 {
		more = append(more, fmt.Sprintf("archiver backlog %s over the %s limit", sizeText(g.BacklogBytes), sizeText(g.LimitBytes)))
	}
	if len(more) > 0 {
		s += " (" + strings.Join(more, "; ") + ")"
	}
	return s
}

// gapKey is where the record of segments first to last of timeline tli lives.
func gapKey(tli uint32, first, last string) string {
	return fmt.Sprintf("%s%08X/%s-%s.json", gapsPrefix, tli, first, last)
}

// GapKey is a gap record's key as listed: the dropped segments, as the key says. The
// key is enough to know that they were dropped; the document says when and why.
type GapKey struct {
	Key      string
	Timeline uint32
	First    string
	Last     string
}

// parseGapKey reads a key gapKey wrote; false for anything else. It checks only the
// shape of the names: the segment size, and so their order, is the reader's to apply.
func parseGapKey(key string) (GapKey, bool) {
	rest, ok := strings.CutPrefix(key, gapsPrefix)
	if !ok {
		return GapKey{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".json")
	if !ok || len(rest) != 8+1+24+1+24 || rest[8] != '/' || rest[33] != '-' {
		return GapKey{}, false
	}
	tliText, first, last := rest[:8], rest[9:33], rest[34:]
	f, err1 := wal.Parse(first)
	l, err2 := wal.Parse(last)
	if err1 != nil || err2 != nil || f.Kind != wal.Segment || l.Kind != wal.Segment || first[:8] != tliText || last[:8] != tliText {
		return GapKey{}, false
	}
	return GapKey{Key: key, Timeline: f.Timeline, First: first, Last: last}, true
}

// PutGap stores a gap record, only if absent. A record already stored under the same
// key (a publish retried after a lost acknowledgement, or the same range recorded
// twice) counts as written: the key is the fact, and it is there. The record is
// validated first; an error longer than pgb keeps is cut.
func (r *Repo) PutGap(ctx context.Context, g GapRecord) (string, error) {
	g.Format = GapFormat
	g.DroppedFrom, g.DroppedTo = g.DroppedFrom.UTC(), g.DroppedTo.UTC()
	if len(g.Error) > gapErrorMax {
		g.Error = cutUTF8(g.Error, gapErrorMax-len("…")) + "…"
	}
	if err := g.Validate(); err != nil {
		return "", fmt.Errorf("record the gap: %w", err)
	}
	key := gapKey(g.Timeline, g.First, g.Last)
	err := r.putJSON(ctx, key, g)
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return "", fmt.Errorf("record the gap in %s: %w", key, err)
	}
	return key, nil
}

// ListGapKeys lists the gap records in one listing, without reading them, in key
// order (per timeline, by first segment). Keys that are not gap records' names are
// left out.
func (r *Repo) ListGapKeys(ctx context.Context) ([]GapKey, error) {
	var out []GapKey
	err := r.st.List(ctx, gapsPrefix, func(o storage.ObjectInfo) error {
		if k, ok := parseGapKey(o.Key); ok {
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list gap records: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// ReadGap reads the record under key (as ListGapKeys returns it) and checks it
// against its key: a record that does not decode, fails Validate, or names other
// segments than its key wraps ErrDamagedGap (or ErrCorrupt, or ErrNewerFormat).
func (r *Repo) ReadGap(ctx context.Context, key string) (*GapRecord, error) {
	k, ok := parseGapKey(key)
	if !ok {
		return nil, fmt.Errorf("%s: %w: not a gap record's name", key, ErrDamagedGap)
	}
	var g GapRecord
	if err := r.getJSON(ctx, key, &g, gapLimit, "a gap record is a few hundred bytes"); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if g.Timeline != k.Timeline || g.First != k.First || g.Last != k.Last {
		return nil, fmt.Errorf("%s: %w: its document says timeline %d, %s to %s", key, ErrDamagedGap, g.Timeline, g.First, g.Last)
	}
	g.Key = key
	return &g, nil
}
