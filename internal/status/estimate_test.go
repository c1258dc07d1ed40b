package status

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func drillRates(ok bool, restored int64, restoreSec float64, replayed int64, replaySec float64) *repo.DrillRecord {
	return &repo.DrillRecord{OK: ok, RTO: repo.DrillRTO{BytesRestored: restored, RestoreSeconds: restoreSec, BytesReplayed: replayed, ReplaySeconds: replaySec}}
}

// The estimate divides the bytes by the median throughput of the successful drills,
// restore and replay apart.
func TestRTOEstimateIsTheMedianThroughputOfTheLastDrills(t *testing.T) {
	drills := []*repo.DrillRecord{
		drillRates(true, 1000, 10, 100, 10),  // 100 B/s, 10 B/s
		drillRates(false, 1, 100, 1, 100),    // failed: not counted
		drillRates(true, 2000, 10, 400, 20),  // 200 B/s, 20 B/s
		drillRates(true, 10000, 10, 300, 10), // 1000 B/s, 30 B/s
	}
	e := EstimateRTO(drills, 2000, 400)
	if e.Note != "" || e.Drills != 3 || e.RestoreBytesPerSecond != 200 || e.ReplayBytesPerSecond != 20 ||
		e.RestoreSeconds != 10 || e.ReplaySeconds != 20 || e.TotalSeconds != 30 {
		t.Fatalf("%+v", e)
	}
	// An even number of drills: the mean of the middle two.
	e = EstimateRTO(drills[:3], 3000, 300)
	if e.RestoreBytesPerSecond != 150 || e.ReplayBytesPerSecond != 15 || e.TotalSeconds != 20+20 {
		t.Fatalf("%+v", e)
	}
	for _, none := range [][]*repo.DrillRecord{nil, {drillRates(false, 1000, 1, 1000, 1)}} {
		e = EstimateRTO(none, 2000, 400)
		if e.Note != NoDrillNote || e.TotalSeconds != 0 || e.RestoreBytes != 2000 || e.WALBytes != 400 {
			t.Fatalf("%+v", e)
		}
		if text := strings.Join(e.Text("  "), "\n"); !strings.Contains(text, "no drill recorded: run pgb drill to measure") {
			t.Fatalf("%s", text)
		}
	}
}

// status --at estimates from the bytes the target needs and the drills' throughput.
func TestStatusOfATargetEstimatesTheRTOFromTheDrills(t *testing.T) {
	st := mem.New()
	bigRepo(t, st, 300, 3) // drills: 100 B restored in 1 s, 200 B replayed in 2 s
	at := t0.Add(250 * time.Minute)
	r, err := Gather(context.Background(), repo.New(st, repo.Options{}), Options{Now: time.Now(), Drills: true,
		Target: &restore.Target{Kind: restore.ToTime, Time: at, Timeline: "latest", Action: "pause"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := r.Target
	if tr == nil || !tr.Reachable || tr.RTOEstimate == nil {
		t.Fatalf("target %+v", tr)
	}
	e := tr.RTOEstimate
	// The WAL from the backup's start (0x28 into its segment) to the end of the last
	// segment replayed.
	if e.WALBytes != tr.WALBytes-0x28 || e.Drills != 5 || e.ReplayBytesPerSecond != 100 || e.RestoreBytesPerSecond != 100 ||
		math.Abs(e.ReplaySeconds-float64(e.WALBytes)/100) > 1e-6 || e.TotalSeconds != e.RestoreSeconds+e.ReplaySeconds {
		t.Fatalf("estimate %+v, target WAL %d bytes", e, tr.WALBytes)
	}
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "RTO estimate: ") || !strings.Contains(b.String(), "the median of the last 5 drills") {
		t.Fatalf("%s", b.String())
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if len([]rune(l)) > 80 {
			t.Errorf("%d columns: %q", len([]rune(l)), l)
		}
	}
	t.Logf("\n%s", b.String())
}
