package repo

import (
	"context"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A drill host whose clock runs a year ahead records a success dated next year: it
// must not stay "the newest drill" for a year, hiding today's failed drill.
func TestDrillRecordedInTheFutureDoesNotHideTodaysFailure(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	now := time.Now().UTC()
	future := drillAt(now.AddDate(1, 0, 0), true)
	future.Host = "db-drill-7"
	if _, err := r.PutDrill(ctx, future); err != nil {
		t.Fatal(err)
	}
	failed, err := r.PutDrill(ctx, drillAt(now, false))
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.RecentDrillsAt(ctx, 5, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Last == nil || d.Last.Key != failed {
		t.Fatalf("newest drill is %+v, want today's failed %s", d.Last, failed)
	}
	if len(d.Successes) != 0 {
		t.Errorf("the future success counts as a success: %+v", d.Successes)
	}
	if d.Future != 1 || d.FutureHost != "db-drill-7" {
		t.Errorf("future records %d, host %q: want 1 from db-drill-7", d.Future, d.FutureHost)
	}
}
