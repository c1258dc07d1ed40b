package drill

import (
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
	"github.com/pgb-project/pgb/internal/window"
)

// The RPO is measured against the window of the backup the drill restored, as it was
// when the drill began: WAL archived meanwhile, or another window, must not count.
func TestMeasureRPOUsesTheDrilledWindowAsSeenBeforeTheRestore(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	drilled := &window.Window{Backup: "b1", FirstSegment: "000000010000000000000002", LastSegment: "000000010000000000000005",
		LastCommit: &window.Commit{Time: t0}}
	newer := &window.Window{Backup: "b2", FirstSegment: "000000020000000000000007", LastSegment: "000000020000000000000009",
		LastCommit: &window.Commit{Time: t0.Add(time.Minute)}}
	st := &status.Report{Windows: []*window.Window{drilled, newer}, NewestWAL: &status.NewestWAL{Segment: "000000020000000000000009", AgeSeconds: 4}}
	got := t0.Add(-250 * time.Millisecond)
	r, wr, warn := measureRPO(st, drilled, restore.Target{Kind: restore.ToEnd}, &got)
	if r.GapSeconds == nil || *r.GapSeconds != 0.25 || !r.LastArchivedCommit.Equal(t0) {
		t.Errorf("RPO = %+v, want a gap of 0.25 s to the drilled window's last commit %s", r, t0)
	}
	if wr.First != drilled.FirstSegment || wr.Last != drilled.LastSegment {
		t.Errorf("WAL range = %+v, want the drilled window's", wr)
	}
	if r.NewestWAL != "000000020000000000000009" || r.NewestWALAgeSeconds != 4 || len(warn) != 0 {
		t.Errorf("newest WAL = %s %v s, warnings %v", r.NewestWAL, r.NewestWALAgeSeconds, warn)
	}

	target := restore.Target{Kind: restore.ToTime, Time: t0.Add(-time.Second)}
	got = t0.Add(-1500 * time.Millisecond)
	if r, _, _ := measureRPO(st, drilled, target, &got); r.GapSeconds == nil || *r.GapSeconds != 0.5 {
		t.Errorf("RPO to a time target = %+v, want the target minus the last commit recovered: 0.5 s", r)
	}
	if r, wr, warn := measureRPO(st, nil, restore.Target{Kind: restore.ToEnd}, nil); r.GapSeconds != nil || wr.First != "" || len(warn) != 1 {
		t.Errorf("no window, nothing replayed: %+v %+v %v", r, wr, warn)
	}
}

// A source that keeps writing during the drill archives WAL that recovery fetches
// too: the last commit recovered is then later than the last archived commit pgb
// status saw before the restore. Nothing was lost: the gap is 0, never negative.
func TestDrillOfAClusterStillWritingMeasuresNoNegativeRPO(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	win := &window.Window{Backup: "b1", LastCommit: &window.Commit{Time: t0}}
	st := &status.Report{Windows: []*window.Window{win}}
	got := t0.Add(3 * time.Second)
	if r, _, _ := measureRPO(st, win, restore.Target{Kind: restore.ToEnd}, &got); r.GapSeconds == nil || *r.GapSeconds != 0 {
		t.Errorf("RPO = %+v (gap %v), want a gap of 0 s", r, deref(r.GapSeconds))
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
