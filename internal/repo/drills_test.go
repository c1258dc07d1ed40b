package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func drillAt(t time.Time, ok bool) DrillRecord {
	d := DrillRecord{Started: t.Add(-time.Minute), Finished: t, OK: ok, Target: "end of the archive", Backup: "20261202T030001Z",
		RTO: DrillRTO{RestoreSeconds: 10, ReplaySeconds: 20, TotalSeconds: 30, BytesRestored: 1 << 30, BytesReplayed: 1 << 28}}
	if !ok {
		d.Error = "drill failed: check check-sql line 1: false"
	}
	return d
}

// Every drill leaves its own record, never overwriting another; the newest drill and
// the newest successful ones are found with one listing and a read each.
func TestDrillRecordsAreKeptAndTheNewestFound(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: mem.New()}
	r := New(st, Options{})
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	var keys []string
	for i, ok := range []bool{true, true, false, true, false, false} {
		k, err := r.PutDrill(ctx, drillAt(t0.Add(time.Duration(i)*time.Hour), ok))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	// The same instant twice: two records.
	if k, err := r.PutDrill(ctx, drillAt(t0, true)); err != nil || k == keys[0] {
		t.Fatalf("second record at the same time: %q, %v", k, err)
	}
	st.gets = 0
	d, err := r.RecentDrills(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if d.Last == nil || d.Last.Key != keys[5] || d.Last.OK {
		t.Fatalf("last %+v, want the failed %s", d.Last, keys[5])
	}
	if len(d.Successes) != 2 || d.Successes[0].Key != keys[3] || d.Successes[1].Key != keys[1] {
		t.Fatalf("successes %+v", d.Successes)
	}
	if st.gets != 3 {
		t.Errorf("%d reads, want 3 (the last drill and two successes)", st.gets)
	}
	if got := d.LastSuccess(); got.RTO.TotalSeconds != 30 || !got.Finished.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("last success %+v", got)
	}
}

// A record is untrusted: one that disagrees with its name, fails validation or is too
// large is passed over, and the next one found.
func TestDamagedDrillRecordsArePassedOver(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	good, err := r.PutDrill(ctx, drillAt(t0, true))
	if err != nil {
		t.Fatal(err)
	}
	// A failed drill's document under an "ok" name; a negative RTO; a bomb.
	lie := drillAt(t0.Add(time.Hour), false)
	lie.Format = 1
	if err := r.putJSON(ctx, drillKey(lie.Finished, "0011223344556677", true), lie); err != nil {
		t.Fatal(err)
	}
	neg := drillAt(t0.Add(2*time.Hour), true)
	neg.Format, neg.RTO.TotalSeconds = 1, -1
	if err := r.putJSON(ctx, drillKey(neg.Finished, "0011223344556678", true), neg); err != nil {
		t.Fatal(err)
	}
	if err := r.putDoc(ctx, drillKey(t0.Add(3*time.Hour), "0011223344556679", true), bytes.Repeat([]byte(" "), drillLimit+1)); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "drills/not-a-record.json", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	d, err := r.RecentDrills(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if d.Last == nil || d.Last.Key != good || len(d.Successes) != 1 || len(d.Damaged) != 3 {
		t.Fatalf("last %+v, successes %d, damaged %v", d.Last, len(d.Successes), d.Damaged)
	}
	for _, e := range d.Damaged {
		if !errors.Is(e, ErrDamagedDrill) && !errors.Is(e, ErrCorrupt) {
			t.Errorf("damage %v", e)
		}
	}
}

func TestDrillRecordValidation(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	ok := drillAt(t0, true)
	ok.Format = 1
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*DrillRecord){
		"no format":           func(d *DrillRecord) { d.Format = 0 },
		"finished before":     func(d *DrillRecord) { d.Finished = d.Started.Add(-time.Second) },
		"ok with an error":    func(d *DrillRecord) { d.Error = "x" },
		"failed without why":  func(d *DrillRecord) { d.OK = false },
		"bad backup name":     func(d *DrillRecord) { d.Backup = "../x" },
		"negative bytes":      func(d *DrillRecord) { d.RTO.BytesReplayed = -1 },
		"ok without a backup": func(d *DrillRecord) { d.Backup = "" },
	} {
		d := ok
		mod(&d)
		if err := d.Validate(); !errors.Is(err, ErrDamagedDrill) {
			t.Errorf("%s: %v", name, err)
		}
	}
	newer := ok
	newer.Format = DrillFormat + 1
	if err := newer.Validate(); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("newer format: %v", err)
	}
}

// A drill that could not run (no backup) is recorded too; a long error is cut.
func TestAFailedDrillWithoutABackupIsRecorded(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	d := DrillRecord{Started: t0, Finished: t0.Add(time.Second), Error: strings.Repeat("é", 5000)}
	k, err := r.PutDrill(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadDrill(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if got.OK || len(got.Error) > drillErrorMax || !strings.HasSuffix(got.Error, "…") || !strings.HasSuffix(k, "-failed.json") {
		t.Fatalf("%s: %+v", k, got)
	}
}

type countingStore struct {
	storage.Store
	gets int
}

func (c *countingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.gets++
	return c.Store.Get(ctx, key, off, n)
}

// FuzzDrillRecord reads hostile bytes as a drill record under a hostile name: errors
// are expected; a record returned must be valid and agree with its name.
func FuzzDrillRecord(f *testing.F) {
	t0 := time.Date(2026, 12, 1, 3, 0, 1, 0, time.UTC)
	good, _ := json.Marshal(DrillRecord{Format: 1, Started: t0, Finished: t0, OK: true, Backup: "20261201T030000Z"})
	f.Add(good, drillKey(t0, "0123456789abcdef", true))
	f.Add([]byte(`{"format":1,"finished":"2026-12-01T03:00:01Z","error":"x","rpo":{"gap_seconds":-1e309}}`), "drills/20261201T030001.000Z-0123456789abcdef-failed.json")
	f.Add([]byte(`{}`), "drills/x--ok.json")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		ctx := context.Background()
		r := New(mem.New(), Options{})
		_, _, _ = parseDrillKey(key)
		if storage.ValidKey(key) != nil {
			return
		}
		if err := r.putDoc(ctx, key, data); err != nil {
			return
		}
		d, err := r.ReadDrill(ctx, key)
		if err != nil {
			return
		}
		if d.Validate() != nil {
			t.Fatalf("an invalid record was returned: %+v", d)
		}
		at, ok, valid := parseDrillKey(key)
		if !valid || ok != d.OK || !at.Equal(d.Finished.UTC().Truncate(time.Millisecond)) {
			t.Fatalf("record %+v under %q", d, key)
		}
	})
}
