package status

import (
	"context"
	"strings"
	"testing"
)

// The store's clock ahead of this host: the newest WAL's age is 0, never negative
// (a drill copies it into its record), and status says why.
func TestStatusWithTheStoreClockAheadShowsNoNegativeAge(t *testing.T) {
	rp := fixture(t)
	now := t0 // the mem store stamps objects with the real time, later than t0
	r, err := Gather(context.Background(), rp, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if r.NewestWAL == nil || r.NewestWAL.AgeSeconds != 0 {
		t.Fatalf("newest WAL %+v, want age 0", r.NewestWAL)
	}
	if !strings.Contains(strings.Join(r.Warnings, "\n"), "clock") {
		t.Errorf("no warning about the clocks: %q", r.Warnings)
	}
}
