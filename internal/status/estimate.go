package status

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/pgb-project/pgb/internal/bytesize"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/window"
)

// NoDrillNote is what an estimate says when no drill measured a throughput.
const NoDrillNote = "no drill recorded: run pgb drill to measure"

// Estimate is the time a recovery would take, from the bytes it restores and
// replays and the throughput the newest successful drills measured on this
// repository (the median of each, restore and replay apart).
type Estimate struct {
	RestoreBytes int64  `json:"restore_bytes"` // the chosen backup's size
	WALBytes     uint64 `json:"wal_bytes"`     // from the backup's start to where recovery stops
	// WALAtLeast: the target lies beyond the archive (--target-beyond-archive), and
	// WALBytes is only the WAL archived so far, from the backup's start to the end of
	// its window: recovery replays at least that.
	WALAtLeast bool `json:"wal_bytes_at_least,omitempty"`
	// Throughputs measured (bytes per second) and the estimate; absent with Note.
	RestoreBytesPerSecond float64 `json:"restore_bytes_per_second,omitempty"`
	ReplayBytesPerSecond  float64 `json:"replay_bytes_per_second,omitempty"`
	RestoreSeconds        float64 `json:"restore_seconds,omitempty"`
	ReplaySeconds         float64 `json:"replay_seconds,omitempty"`
	TotalSeconds          float64 `json:"total_seconds,omitempty"`
	// Drills is how many drills the throughputs come from.
	Drills int    `json:"drills"`
	Note   string `json:"note,omitempty"`
}

// EstimateRTO estimates recovering restoreBytes of backup and replaying walBytes of
// WAL at the median throughput of drills (newest first, successful). A drill gives a
// restore throughput when it restored bytes in a measured time, a replay throughput
// likewise; without any, the estimate is only the byte counts and NoDrillNote.
func EstimateRTO(drills []*repo.DrillRecord, restoreBytes int64, walBytes uint64) *Estimate {
	e := &Estimate{RestoreBytes: restoreBytes, WALBytes: walBytes}
	var restoreRates, replayRates []float64
	for _, d := range drills {
		if !d.OK {
			continue
		}
		used := false
		if r, ok := rate(d.RTO.BytesRestored, d.RTO.RestoreSeconds); ok {
			restoreRates, used = append(restoreRates, r), true
		}
		if r, ok := rate(d.RTO.BytesReplayed, d.RTO.ReplaySeconds); ok {
			replayRates, used = append(replayRates, r), true
		}
		if used {
			e.Drills++
		}
	}
	if len(restoreRates) == 0 || len(replayRates) == 0 {
		e.Note = NoDrillNote
		if e.Drills > 0 {
			e.Note = "the drills recorded measured no restore or no WAL replay: run pgb drill to the end of the archive to measure"
		}
		return e
	}
	e.RestoreBytesPerSecond, e.ReplayBytesPerSecond = median(restoreRates), median(replayRates)
	e.RestoreSeconds = float64(restoreBytes) / e.RestoreBytesPerSecond
	e.ReplaySeconds = float64(walBytes) / e.ReplayBytesPerSecond
	e.TotalSeconds = e.RestoreSeconds + e.ReplaySeconds
	return e
}

// rate is bytes per second, when both were measured and the throughput is finite and
// positive (a record is untrusted: a time of 5e-324 s would make it infinite).
func rate(bytes int64, seconds float64) (float64, bool) {
	if bytes <= 0 || !(seconds >= 1e-3) || seconds > 1e9 {
		return 0, false
	}
	r := float64(bytes) / seconds
	return r, r > 0 && !math.IsInf(r, 0)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// replayEnd is where recovery from the verdict's backup stops replaying: the end of
// the last segment it replays.
func replayEnd(v window.Verdict, from *repo.Summary, segSize uint64) wal.LSN {
	if from == nil || segSize == 0 {
		return 0
	}
	start := uint64(from.StartLSN) / segSize * segSize
	return wal.LSN(start + v.WALBytes)
}

// walBetween is the WAL from start to end, 0 when end is not after start.
func walBetween(start, end wal.LSN) uint64 {
	if end <= start {
		return 0
	}
	return uint64(end - start)
}

// EstimateRestore is the RTO estimate of restoring backup m to target (as
// restore.Plan settled them): pgb restore --dry-run. It reads the newest drills and
// runs restore's check for the WAL that recovery replays.
func EstimateRestore(ctx context.Context, rp *repo.Repo, m *repo.Summary, target restore.Target) (*Estimate, error) {
	rec, err := rp.RecentDrills(ctx, estimateDrills)
	if err != nil {
		return nil, err
	}
	var walBytes uint64
	atLeast := false
	switch target.Kind {
	case restore.ToImmediate:
		walBytes = walBetween(m.StartLSN, m.StopLSN)
	default:
		backups, _, err := rp.ListBackups(ctx)
		if err != nil {
			return nil, err
		}
		t := target
		reach, err := restore.Check(ctx, rp, backups, &t)
		if err != nil {
			return nil, err
		}
		// restore.Check takes a target beyond the archive for reachable with
		// --target-beyond-archive, in no window.
		beyond := target.BeyondArchive && reach.Verdict.Reachable && reach.Verdict.Window == nil
		if target.Kind == restore.ToEnd || beyond {
			// To the end of the archive: to the end of the backup's window. Beyond
			// the archive: at least as much.
			atLeast = beyond
			for _, w := range reach.Windows.Windows {
				if w.Backup == m.Name || slices.Contains(w.Backups, m.Name) {
					walBytes = walBetween(m.StartLSN, w.EndLSN)
				}
			}
		} else if reach.Verdict.Reachable {
			walBytes = walBetween(m.StartLSN, replayEnd(reach.Verdict, reach.Backup, window.SegSize(backups)))
		}
	}
	e := EstimateRTO(rec.Successes, m.Size, walBytes)
	e.WALAtLeast = atLeast
	return e, nil
}

// Text is the estimate in lines of at most 80 columns, each indented.
func (e *Estimate) Text(indent string) []string {
	atLeast := ""
	if e.WALAtLeast {
		atLeast = "at least "
	}
	if e.Note != "" {
		return []string{
			fmt.Sprintf("%sRTO estimate: none (restore %s, replay %s%s of WAL)", indent, bytesize.Text(e.RestoreBytes), atLeast, bytesize.Text(int64(e.WALBytes))),
			indent + "  " + e.Note,
		}
	}
	drills := "the last drill"
	if e.Drills > 1 {
		drills = fmt.Sprintf("the median of the last %d drills", e.Drills)
	}
	return []string{
		fmt.Sprintf("%sRTO estimate: %s%s (restore %s, replay %s%s)", indent, atLeast, dur(e.TotalSeconds), dur(e.RestoreSeconds), atLeast, dur(e.ReplaySeconds)),
		fmt.Sprintf("%s  restore %s at %s/s, replay %s%s of WAL at %s/s", indent, bytesize.Text(e.RestoreBytes), rateText(e.RestoreBytesPerSecond),
			atLeast, bytesize.Text(int64(e.WALBytes)), rateText(e.ReplayBytesPerSecond)),
		fmt.Sprintf("%s  (throughput: %s on this repository)", indent, drills),
	}
}

// dur is a duration for a person: seconds with a decimal up to two minutes, then
// minutes, hours, days.
func dur(s float64) string {
	if s < 120 {
		return secs(s)
	}
	return ageText(s)
}

// rateText is a throughput in bytes per second, as size says sizes, without the
// conversion to an integer (which a rate beyond int64 would overflow).
func rateText(r float64) string {
	switch {
	case r >= 1<<40:
		return fmt.Sprintf("%.1f TiB", r/(1<<40))
	case r >= 1<<30:
		return fmt.Sprintf("%.1f GiB", r/(1<<30))
	case r >= 1<<20:
		return fmt.Sprintf("%.1f MiB", r/(1<<20))
	case r >= 1<<10:
		return fmt.Sprintf("%.1f KiB", r/(1<<10))
	case r >= 10:
		return fmt.Sprintf("%.0f B", r)
	}
	return fmt.Sprintf("%.3g B", r)
}
