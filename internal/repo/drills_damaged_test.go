package repo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage/mem"
)

// Thousands of damaged records under "ok" names (a writer gone wrong, or hostile):
// pgb status, and a failed drill's --prom, read a bounded number of them, name those
// and count the rest, instead of reading, logging and keeping every one.
func TestStatusReadsOnlyAFewOfManyDamagedDrillRecords(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: mem.New()}
	r := New(st, Options{})
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	if _, err := r.PutDrill(ctx, drillAt(t0, true)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3000; i++ {
		key := drillKey(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("%016x", i), true)
		if err := r.putDoc(ctx, key, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	st.gets = 0
	d, err := r.RecentDrillsAt(ctx, 5, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.gets > 100 || len(d.Damaged) > 100 {
		t.Fatalf("%d reads, %d damaged errors kept, for one status", st.gets, len(d.Damaged))
	}
	if len(d.Damaged)+d.Unread != 3001 {
		t.Errorf("%d damaged named + %d not read, want all 3001 passed over (the success under them unread)", len(d.Damaged), d.Unread)
	}
}
