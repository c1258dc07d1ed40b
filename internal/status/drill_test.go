package status

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func putDrill(t *testing.T, rp *repo.Repo, finished time.Time, ok bool) {
	t.Helper()
	gap := 0.25
	d := repo.DrillRecord{Started: finished.Add(-time.Minute), Finished: finished, OK: ok, Backup: "20261201T030000Z", Target: "the end of the archive",
		RTO: repo.DrillRTO{RestoreSeconds: 4, ReplaySeconds: 18, TotalSeconds: 22, BytesRestored: 400 << 20, BytesReplayed: 180 << 20},
		RPO: repo.DrillRPO{GapSeconds: &gap}}
	if !ok {
		d.Error = "drill failed: check check-sql line 3: SELECT count(*) > 0 FROM orders: returned false; " + strings.Repeat("and a long tail ", 30)
	}
	if _, err := rp.PutDrill(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func TestStatusShowsTheDrills(t *testing.T) {
	now := time.Date(2026, 12, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		drills  func(*repo.Repo)
		maxAge  time.Duration
		want    []string
		warning string
	}{
		{"none", func(*repo.Repo) {}, 0,
			[]string{"Last successful drill: none recorded"}, "no successful drill recorded"},
		{"a recent success", func(rp *repo.Repo) { putDrill(t, rp, now.Add(-2*time.Hour), true) }, 0,
			[]string{"Last successful drill: 2026-12-10 10:00:00Z (2h00m ago), backup 20261201T030000Z",
				"  RTO 22.0 s (restore 4.0 s, replay 18.0 s), RPO 0.250 s"}, ""},
		{"a failure after an old success", func(rp *repo.Repo) {
			putDrill(t, rp, now.Add(-9*24*time.Hour), true)
			putDrill(t, rp, now.Add(-time.Hour), false)
		}, 0, []string{"Last successful drill: 2026-12-01 12:00:00Z (9d ago)", "Last drill FAILED:     2026-12-10 11:00:00Z (1h00m ago)",
			"  drill failed: check check-sql line 3"}, "the last successful drill is 9d old, more than 8d"},
		{"a threshold of 10 days", func(rp *repo.Repo) { putDrill(t, rp, now.Add(-9*24*time.Hour), true) }, 10 * 24 * time.Hour,
			[]string{"Last successful drill: 2026-12-01 12:00:00Z (9d ago)"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := repo.New(mem.New(), repo.Options{})
			tc.drills(rp)
			r, err := Gather(context.Background(), rp, Options{Now: now, Drills: true, DrillMaxAge: tc.maxAge})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := r.Write(&b); err != nil {
				t.Fatal(err)
			}
			text := b.String()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in\n%s", w, text)
				}
			}
			for _, l := range strings.Split(text, "\n") {
				if n := len([]rune(l)); n > 80 {
					t.Errorf("%d columns: %q", n, l)
				}
			}
			if tc.warning == "" {
				if len(r.Warnings) != 0 || r.Drills.Warning != "" || strings.Contains(text, "WARNING") {
					t.Errorf("warnings %q\n%s", r.Warnings, text)
				}
				return
			}
			if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tc.warning) || !strings.Contains(r.Drills.Warning, tc.warning) ||
				!strings.Contains(text, "WARNING: "+tc.warning[:20]) {
				t.Errorf("warnings %q, want %q\n%s", r.Warnings, tc.warning, text)
			}
		})
	}
}

// A drill's own look at the window (status.Gather without Drills) reads no drill
// record: drills/ is not even listed (the six listings are wal/, backups/, the
// permanent marks, restore-points/, gaps/ and encryption/).
func TestGatherWithoutDrillsReadsNoDrillRecord(t *testing.T) {
	st := mem.New()
	bigRepo(t, st, 10, 1)
	c := &counting{Store: st}
	r, err := Gather(context.Background(), repo.New(c, repo.Options{}), Options{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Drills != nil || c.lists != 6 || c.gets != 1+1+r.Summaries.Read {
		t.Fatalf("drills %+v; %d lists, %d gets", r.Drills, c.lists, c.gets)
	}
}
