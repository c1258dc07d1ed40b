package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// Drill records with absurd figures (a restore of 1 GiB in 5e-324 s, a second of
// WAL in 1e15 s — a hostile writer, or a broken clock): the repository refuses to
// keep them, and an estimate made from them anyway stays finite and readable, so
// that pgb status --json --at never fails to encode it.
func TestStatusEstimateWithAHostileDrillRecordStaysReadable(t *testing.T) {
	fin := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for _, d := range []repo.DrillRecord{
		{RTO: repo.DrillRTO{BytesRestored: 1 << 30, RestoreSeconds: 5e-324, BytesReplayed: 1 << 30, ReplaySeconds: 1}},
		{RTO: repo.DrillRTO{BytesRestored: 1, RestoreSeconds: 1e15, BytesReplayed: 1, ReplaySeconds: 1e15}},
		{RTO: repo.DrillRTO{BytesRestored: 1 << 20, RestoreSeconds: 1, BytesReplayed: 1 << 20, ReplaySeconds: 1, TotalSeconds: 1e300}},
	} {
		d.Started, d.Finished, d.OK, d.Backup, d.Format = fin, fin, true, "20261201T030000Z", 1
		if err := d.Validate(); err == nil {
			t.Errorf("Validate accepts %+v", d.RTO)
		}
		e := EstimateRTO([]*repo.DrillRecord{&d}, 100<<30, 100<<30)
		_, jerr := json.Marshal(&TargetReport{RTOEstimate: e})
		text := strings.Join(e.Text(""), "\n")
		if jerr != nil || strings.Contains(text, "RTO estimate: 0s") || strings.Contains(text, "-") || strings.Contains(text, "Inf") {
			t.Errorf("%+v: json %v, text %q", d.RTO, jerr, text)
		}
	}
	// Ages and durations beyond what a time.Duration holds are printed as days.
	for _, s := range []float64{1e15, 1e300} {
		if got := ageText(s); strings.HasPrefix(got, "0") || strings.Contains(got, "-") {
			t.Errorf("ageText(%g) = %q", s, got)
		}
	}
}
