package retention

import (
	"context"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A success recorded by a drill host whose clock ran a year ahead must not take the
// place of the real last successful drill: pgb delete keeps that one (status and the
// RTO estimate read it), and the newest 30 real records besides the one dated in the
// future, which is left for the operator to remove (status names it).
func TestDeleteKeepsTheRealLastSuccessDespiteARecordDatedInTheFuture(t *testing.T) {
	ctx := context.Background()
	r := repo.New(mem.New(), repo.Options{})
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	put := func(fin time.Time, ok bool) string {
		d := repo.DrillRecord{Started: fin.Add(-time.Minute), Finished: fin, OK: ok, Backup: "20261101T000000Z"}
		if !ok {
			d.Error = "drill failed"
		}
		k, err := r.PutDrill(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	success := put(now.Add(-40*24*time.Hour), true)
	for i := 0; i < KeepDrills+2; i++ {
		put(now.Add(-time.Duration(KeepDrills+2-i)*time.Hour), false)
	}
	future := put(now.AddDate(1, 0, 0), true)
	if _, err := Delete(ctx, r, Options{Policy: Policy{RetainFull: 1}, Now: now, Confirm: true}); err != nil {
		t.Fatal(err)
	}
	keys, err := r.ListDrillKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, k := range keys {
		kept[k.Key] = true
	}
	if !kept[success] || !kept[future] || len(keys) != KeepDrills+2 {
		t.Errorf("kept %d records: the real last success %v, the future one %v; want %d", len(keys), kept[success], kept[future], KeepDrills+2)
	}
}
