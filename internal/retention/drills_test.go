package retention

import (
	"context"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// pgb delete keeps the newest drill records and the newest successful one, however
// many failed drills came after it.
func TestDeleteKeepsTheNewestDrillsAndTheLastSuccessfulOne(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	t0 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	n := KeepDrills + 12
	for i := 0; i < n; i++ {
		d := repo.DrillRecord{Started: t0, Finished: t0.Add(time.Duration(i) * 24 * time.Hour), OK: i < 5, Backup: "20261101T000000Z"}
		if !d.OK {
			d.Error = "drill failed"
		}
		if _, err := r.PutDrill(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Delete(ctx, r, Options{Policy: Policy{RetainFull: 1}, Now: t0.Add(time.Duration(n) * 24 * time.Hour), Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drills) != n-KeepDrills-1 {
		t.Fatalf("%d drill records deleted, want %d", len(res.Drills), n-KeepDrills-1)
	}
	keys, err := r.ListDrillKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != KeepDrills+1 || !keys[0].OK || !keys[0].Finished.Equal(t0.Add(4*24*time.Hour)) {
		t.Fatalf("%d kept, the oldest %+v", len(keys), keys[0])
	}
	d, err := r.RecentDrills(ctx, 1)
	if err != nil || d.LastSuccess() == nil || !d.LastSuccess().Finished.Equal(keys[0].Finished) {
		t.Fatalf("%+v, %v", d, err)
	}
}

// Verify records are kept as drill records are: the newest, and the newest that passed.
func TestDeleteKeepsTheNewestVerifiesAndTheLastThatPassed(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	t0 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	n := KeepDrills + 7
	for i := 0; i < n; i++ {
		v := repo.VerifyRecord{Started: t0, Finished: t0.Add(time.Duration(i) * 24 * time.Hour), OK: i < 3, Scope: "backups"}
		if !v.OK {
			v.Problems = 1
		}
		if _, err := r.PutVerify(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(time.Duration(n) * 24 * time.Hour)
	res, err := Delete(ctx, r, Options{Policy: Policy{RetainFull: 1}, Now: now, Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Verifies) != n-KeepDrills-1 {
		t.Fatalf("%d verify records deleted, want %d", len(res.Verifies), n-KeepDrills-1)
	}
	v, err := r.RecentVerifies(ctx, now)
	if err != nil || v.LastSuccess == nil || !v.LastSuccess.Finished.Equal(t0.Add(2*24*time.Hour)) {
		t.Fatalf("%+v, %v", v, err)
	}
}
