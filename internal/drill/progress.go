package drill

import (
	"context"
	"fmt"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/wal"
)

// progressLine is the replay position for a terminal: against the target's LSN when
// it is known (0: not known), with the share of the WAL from the backup's start.
func progressLine(replayed string, start, goal wal.LSN) string {
	s := "\rdrill: replayed to " + replayed
	if goal == 0 {
		return s
	}
	s += " of " + goal.String()
	if l, err := wal.ParseLSN(replayed); err == nil && goal > start {
		done := min(max(l, start)-start, goal-start)
		s += fmt.Sprintf(" (%d%%)", int64(done)*100/int64(goal-start))
	}
	return s
}

// goalLSN is where recovery to t ends, when known before it does: an LSN target, a
// restore point's LSN, the end of the archive's last record; 0 for a time or a
// transaction.
func (d *drill) goalLSN(ctx context.Context, t restore.Target) wal.LSN {
	switch t.Kind {
	case restore.ToLSN:
		return t.LSN
	case restore.ToName:
		if p, err := d.rp.ReadRestorePoint(ctx, t.Name); err == nil {
			return p.LSN
		}
	case restore.ToEnd:
		if d.win != nil {
			return d.win.LastRecord
		}
	}
	return 0
}
