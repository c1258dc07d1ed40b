package status

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// One success recorded by a host whose clock ran a year ahead: status still shows
// the failed drill of an hour ago, warns that no success is recorded, and names the
// record dated in the future.
func TestStatusShowsTodaysFailedDrillDespiteOneRecordedInTheFuture(t *testing.T) {
	now := time.Date(2026, 12, 10, 12, 0, 0, 0, time.UTC)
	rp := repo.New(mem.New(), repo.Options{})
	putDrill(t, rp, now.AddDate(1, 0, 0), true) // clock skew on the drill host
	putDrill(t, rp, now.Add(-time.Hour), false) // the real, recent drill failed
	r, err := Gather(context.Background(), rp, Options{Now: now, Drills: true})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	if r.Drills.LastFailed == nil || r.Drills.LastSuccess != nil || r.Drills.Warning == "" {
		t.Errorf("failed drill an hour ago not shown, or no warning:\n%s", b.String())
	}
	if r.Drills.Future != 1 || !strings.Contains(b.String(), "in the future") {
		t.Errorf("the record dated in the future is not named:\n%s", b.String())
	}
}
