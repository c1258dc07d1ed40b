package archive

import (
	"github.com/pgb-project/pgb/internal/wal"
)

// NextNames returns, for each of the k segments after the segment req, the names
// PostgreSQL may ask restore_command for, in the order it asks: recovering towards the
// timeline whose history is spans (wal.ParseHistory: ancestors first, the target
// last), it tries a segment on every timeline of that history that began at or before
// the segment (the newest first), never going back to a timeline older than the one
// of the file it read last (XLogFileReadAnyTLI). The plan assumes that the newest
// candidate of each segment is the one found. segSize is the WAL segment size.
//
// spans that do not hold req's timeline (a history of another branch) are ignored:
// then only req's own timeline is followed.
func NextNames(req wal.File, segSize uint64, spans []wal.TimelineSpan, k int) [][]string {
	if req.Kind != wal.Segment || segSize == 0 || k <= 0 {
		return nil
	}
	if !holdsTimeline(spans, req.Timeline) {
		spans = []wal.TimelineSpan{{TLI: req.Timeline, Begin: 0, End: wal.EndOfTimeline}}
	}
	perLog := uint64(0x100000000) / segSize
	maxSeg := uint64(0xFFFFFFFF)*perLog + perLog - 1
	seg := req.SegmentNumber(segSize)
	cur := req.Timeline
	out := make([][]string, 0, k)
	for i := 1; i <= k; i++ {
		if seg > maxSeg-uint64(i) {
			break
		}
		s := seg + uint64(i)
		var names []string
		for j := len(spans) - 1; j >= 0; j-- {
			sp := spans[j]
			if sp.TLI < cur {
				break
			}
			if uint64(sp.Begin)/segSize > s {
				continue
			}
			names = append(names, wal.SegmentFileName(sp.TLI, s, segSize))
		}
		if len(names) == 0 {
			break
		}
		out = append(out, names)
		cur = max(cur, timelineOf(names[0]))
	}
	return out
}

func holdsTimeline(spans []wal.TimelineSpan, tli uint32) bool {
	for _, s := range spans {
		if s.TLI == tli {
			return true
		}
	}
	return false
}

func timelineOf(name string) uint32 {
	f, err := wal.Parse(name)
	if err != nil {
		return 0
	}
	return f.Timeline
}
