package status

import (
	"context"
	"fmt"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// DefaultDrillMaxAge is how old the last successful drill may be before status warns:
// a weekly drill plus a day's slack (the same threshold as the alert docs/drill.md
// suggests).
const DefaultDrillMaxAge = 8 * 24 * time.Hour

// estimateDrills is how many of the newest successful drills the RTO estimate uses.
const estimateDrills = 5

// Drills is what status says about the drills the repository records.
type Drills struct {
	// LastSuccess is the newest successful drill; absent when there is none.
	LastSuccess *Drill `json:"last_success,omitempty"`
	// LastFailed is the newest drill when it failed after LastSuccess (or there is no
	// success at all).
	LastFailed    *Drill  `json:"last_failed,omitempty"`
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	// Warning: no successful drill, or the last one is older than the max age.
	Warning string `json:"warning,omitempty"`
	// Damaged counts the records passed over because they are damaged.
	Damaged int `json:"damaged_records,omitempty"`
	// Future counts the records passed over because they are dated in the future
	// (after now + repo.DrillClockSlack), FutureWarning says so.
	Future        int    `json:"future_records,omitempty"`
	FutureWarning string `json:"future_warning,omitempty"`
	// Unread counts the older records not read once many damaged ones were met;
	// UnreadWarning says so.
	Unread        int    `json:"unread_records,omitempty"`
	UnreadWarning string `json:"unread_warning,omitempty"`
}

// Drill is one drill's record, as status shows it.
type Drill struct {
	Finished            time.Time `json:"finished"`
	AgeSeconds          float64   `json:"age_seconds"`
	Backup              string    `json:"backup,omitempty"`
	Target              string    `json:"target,omitempty"`
	RTOSeconds          float64   `json:"rto_seconds"`
	RestoreSeconds      float64   `json:"restore_seconds"`
	ReplaySeconds       float64   `json:"replay_seconds"`
	BytesRestored       int64     `json:"bytes_restored"`
	BytesReplayed       int64     `json:"bytes_replayed"`
	RPOSeconds          *float64  `json:"rpo_seconds,omitempty"`
	NewestWALAgeSeconds *float64  `json:"newest_wal_age_seconds,omitempty"`
	Error               string    `json:"error,omitempty"`
	Record              string    `json:"record"`
}

func drillOf(d *repo.DrillRecord, now time.Time) *Drill {
	return &Drill{Finished: d.Finished.UTC(), AgeSeconds: now.Sub(d.Finished).Round(time.Second).Seconds(), Backup: d.Backup,
		Target: d.Target, RTOSeconds: d.RTO.TotalSeconds, RestoreSeconds: d.RTO.RestoreSeconds, ReplaySeconds: d.RTO.ReplaySeconds,
		BytesRestored: d.RTO.BytesRestored, BytesReplayed: d.RTO.BytesReplayed, RPOSeconds: d.RPO.GapSeconds,
		NewestWALAgeSeconds: d.RPO.NewestWALAgeSeconds, Error: d.Error, Record: d.Key}
}

// gatherDrills reads the newest drill records: one listing of drills/, and one read
// of the newest drill and of each of the newest successful ones the RTO estimate uses.
func gatherDrills(ctx context.Context, rp *repo.Repo, now time.Time, maxAge time.Duration) (*Drills, []*repo.DrillRecord, error) {
	if maxAge <= 0 {
		maxAge = DefaultDrillMaxAge
	}
	rec, err := rp.RecentDrillsAt(ctx, estimateDrills, now)
	if err != nil {
		return nil, nil, err
	}
	out := &Drills{MaxAgeSeconds: maxAge.Seconds(), Damaged: len(rec.Damaged), Future: rec.Future}
	if rec.Unread > 0 {
		out.Unread = rec.Unread
		out.UnreadWarning = fmt.Sprintf("%d older drill record(s) not read after %d damaged ones (named on stderr): remove the damaged records from drills/",
			rec.Unread, len(rec.Damaged))
	}
	if rec.Future > 0 {
		host := ""
		if h := []rune(printable(rec.FutureHost)); len(h) > 0 { // untrusted: the record's
			host = " on host " + string(h[:min(len(h), 64)])
		}
		out.FutureWarning = fmt.Sprintf("%d drill record(s) dated in the future passed over, the newest %s: clock skew%s; fix the clock, remove the record",
			rec.Future, rec.FutureKey, host)
	}
	last := rec.LastSuccess()
	if last != nil {
		out.LastSuccess = drillOf(last, now)
	}
	if l := rec.Last; l != nil && !l.OK {
		out.LastFailed = drillOf(l, now)
	}
	switch {
	case last == nil:
		out.Warning = "no successful drill recorded: nothing proves this repository restores; run pgb drill"
	case now.Sub(last.Finished) > maxAge:
		out.Warning = fmt.Sprintf("the last successful drill is %s old, more than %s: run pgb drill",
			ageText(now.Sub(last.Finished).Seconds()), ageText(maxAge.Seconds()))
	}
	return out, rec.Successes, nil
}
