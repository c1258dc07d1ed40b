package wal

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxHistorySize bounds a timeline history file. Each ancestor takes one short line
// (parent timeline, switch point, reason), so a megabyte is thousands of timelines.
// wal-fetch (internal/archive) and restore's parser both use it: a history file one
// of them accepts, the other accepts too.
const MaxHistorySize = 1 << 20

// EndOfTimeline is the End of the timeline a history file describes: it goes on.
const EndOfTimeline = LSN(^uint64(0))

// TimelineSpan is one timeline in a history: it holds WAL from Begin up to (not
// including) End, where its child branched off.
type TimelineSpan struct {
	TLI        uint32
	Begin, End LSN
}

// ErrBadHistory means a timeline history file does not parse.
var ErrBadHistory = errors.New("invalid timeline history file")

// ParseHistory parses the history file of timeline tli (00000003.history): one line
// per ancestor, "parent-timeline<TAB>switch-point<TAB>reason", oldest first, as
// PostgreSQL writes it; blank lines and lines starting with '#' are skipped. It
// returns the ancestors followed by tli itself (End EndOfTimeline). Timelines must
// increase and stay below tli, switch points must not go back: the file comes from a
// repository and is not trusted.
func ParseHistory(tli uint32, b []byte) ([]TimelineSpan, error) {
	bad := func(line int, format string, a ...any) ([]TimelineSpan, error) {
		return nil, fmt.Errorf("%w of timeline %d, line %d: %s", ErrBadHistory, tli, line, fmt.Sprintf(format, a...))
	}
	if tli == 0 {
		return nil, fmt.Errorf("%w: timeline 0 does not exist", ErrBadHistory)
	}
	if len(b) > MaxHistorySize {
		return nil, fmt.Errorf("%w of timeline %d: %d bytes, more than %d", ErrBadHistory, tli, len(b), MaxHistorySize)
	}
	var out []TimelineSpan
	begin := LSN(0)
	for i, raw := range bytes.Split(b, []byte("\n")) {
		line := strings.TrimLeft(string(raw), " \t\r\v\f")
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return bad(i+1, "want a timeline and a switch point")
		}
		parent, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil || parent == 0 {
			return bad(i+1, "%.20q is not a timeline", fields[0])
		}
		end, err := ParseLSN(fields[1])
		if err != nil {
			return bad(i+1, "%.30q is not a switch point", fields[1])
		}
		if len(out) > 0 && uint32(parent) <= out[len(out)-1].TLI {
			return bad(i+1, "timeline %d does not follow %d", parent, out[len(out)-1].TLI)
		}
		if uint32(parent) >= tli {
			return bad(i+1, "parent timeline %d is not below %d", parent, tli)
		}
		if end < begin {
			return bad(i+1, "switch point %s is before the previous one, %s", end, begin)
		}
		out = append(out, TimelineSpan{TLI: uint32(parent), Begin: begin, End: end})
		begin = end
	}
	return append(out, TimelineSpan{TLI: tli, Begin: begin, End: EndOfTimeline}), nil
}
