package drill

import (
	"time"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
	"github.com/pgb-project/pgb/internal/window"
)

// measureRPO compares got, the last commit recovered, with the window win the drill
// recovered in (nil if none was found), as st (pgb status, gathered once before the
// restore) saw it: WAL archived while the drill runs does not count against it. That
// WAL is replayed too (restore_command fetches what is there when recovery asks), so
// the last commit recovered may be later than the last archived commit: nothing was
// lost, the gap is 0, never negative.
func measureRPO(st *status.Report, win *window.Window, target restore.Target, got *time.Time) (RPO, WALRange, []string) {
	var r RPO
	var wr WALRange
	var warn []string
	if st.NewestWAL != nil {
		// Never below 0: the store's clock ahead of this host's must not make a passed
		// drill unrecordable (repo.DrillRecord.Validate refuses negative figures).
		r.NewestWAL, r.NewestWALAgeSeconds = st.NewestWAL.Segment, max(st.NewestWAL.AgeSeconds, 0)
	}
	if win != nil {
		wr = WALRange{First: win.FirstSegment, Last: win.LastSegment}
		if win.LastCommit != nil {
			t := win.LastCommit.Time.UTC()
			r.LastArchivedCommit = &t
		}
	}
	switch {
	case target.Kind == restore.ToEnd && r.LastArchivedCommit != nil && got != nil:
		gap := max(r.LastArchivedCommit.Sub(*got).Seconds(), 0)
		r.GapSeconds = &gap
	case target.Kind == restore.ToTime && got != nil:
		gap := max(target.Time.Sub(*got).Seconds(), 0)
		r.GapSeconds = &gap
	case target.Kind == restore.ToEnd && got == nil:
		warn = append(warn, "no transaction was replayed: RPO against the last archived commit not measured")
	}
	return r, wr, warn
}
