package repo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestValidRestorePointName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"before-drop", true},
		{"release_2026.11.23", true},
		{"v1:pre", true},
		{"A", true},
		{strings.Repeat("x", 63), true},
		{strings.Repeat("x", 64), false},
		{strings.Repeat("x", 100), false},
		{"", false},
		{"list", false},
		{".hidden", false},
		{".", false},
		{"..", false},
		{"with space", false},
		{"a/b", false},
		{"../x", false},
		{"tab\there", false},
		{"quote'", false},
		{"dollar$", false},
		{"é", false},
	} {
		err := ValidRestorePointName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidRestorePointName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err == nil {
			if kerr := storage.ValidKey(restorePointKey(tc.name)); kerr != nil {
				t.Errorf("valid name %q makes an invalid key: %v", tc.name, kerr)
			}
		}
	}
}

func TestRestorePoints(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if list, err := New(st, Options{}).ListRestorePoints(ctx); err != nil || len(list) != 0 {
		t.Fatalf("no restore points: %v, %v", list, err)
	}
	at := time.Date(2026, 11, 23, 20, 39, 44, 0, time.UTC)
	// Name order differs from LSN order.
	points := []RestorePoint{
		{Name: "b-middle", LSN: 0x3000000, Timeline: 1, Time: at.Add(time.Hour)},
		{Name: "a-last", LSN: 0x1_0000_0028, Timeline: 2, Time: at.Add(2 * time.Hour)},
		{Name: "c-first", LSN: 0x2000000, Timeline: 1, Time: at},
	}
	for _, rp := range points {
		if err := New(st, Options{}).PutRestorePoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	err := New(st, Options{}).PutRestorePoint(ctx, RestorePoint{Name: "b-middle", LSN: 0x9000000})
	if !errors.Is(err, ErrRestorePointExists) || !strings.Contains(err.Error(), "b-middle") {
		t.Errorf("second PutRestorePoint = %v, want ErrRestorePointExists naming it", err)
	}
	rp, err := New(st, Options{}).ReadRestorePoint(ctx, "b-middle")
	if err != nil || rp.LSN != 0x3000000 || rp.Timeline != 1 || !rp.Time.Equal(at.Add(time.Hour)) {
		t.Errorf("ReadRestorePoint = %+v, %v; the first one must stay", rp, err)
	}
	if _, err := New(st, Options{}).ReadRestorePoint(ctx, "nope"); !errors.Is(err, ErrNoRestorePoint) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing restore point: %v", err)
	}

	// Something else under the prefix is ignored.
	if err := st.Put(ctx, "restore-points/README", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	list, err := New(st, Options{}).ListRestorePoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var lsns []wal.LSN
	for _, rp := range list {
		got = append(got, rp.Name)
		lsns = append(lsns, rp.LSN)
	}
	if strings.Join(got, ",") != "c-first,b-middle,a-last" {
		t.Errorf("ListRestorePoints = %v (LSNs %v), want ordered by LSN", got, lsns)
	}
	if list[2].Timeline != 2 || list[2].LSN != 0x1_0000_0028 {
		t.Errorf("restore point = %+v", list[2])
	}
}

// A restore point whose write was stored but lost its acknowledgement is this run's:
// the retry finds it and counts the write as done, not as a taken name.
func TestRestorePointPutWithALostAcknowledgementIsOurs(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	fst := faulty.New(inner, faulty.Rule{Op: faulty.Put, Key: "restore-points/", Fault: faulty.FailAfter, Count: 1})
	rp := RestorePoint{Name: "before_release", LSN: 0x3000000, Timeline: 1}
	r := New(fst, Options{})
	if err := r.PutRestorePoint(ctx, rp); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("first put = %v, want the injected lost acknowledgement", err)
	}
	if err := r.PutRestorePoint(ctx, rp); err != nil {
		t.Fatalf("retried put of the same point = %v, want it counted as written", err)
	}
	other := rp
	other.LSN++
	if err := r.PutRestorePoint(ctx, other); !errors.Is(err, ErrRestorePointExists) {
		t.Fatalf("put of another point under the name = %v, want ErrRestorePointExists", err)
	}
}

// One damaged restore point record (or one that describes another name) is left out
// of the list with a warning; the others stay usable.
func TestListingRestorePointsSkipsADamagedOne(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	for _, rp := range []RestorePoint{{Name: "a", LSN: 1}, {Name: "b", LSN: 2}} {
		if err := r.PutRestorePoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.putJSON(ctx, restorePointKey("c"), RestorePoint{Name: "a", LSN: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadRestorePoint(ctx, "c"); !errors.Is(err, ErrDamagedRestorePoint) {
		t.Errorf("ReadRestorePoint(c) = %v, want ErrDamagedRestorePoint", err)
	}
	fst := faulty.New(st, faulty.Rule{Op: faulty.Get, Key: restorePointKey("b"), Fault: faulty.Corrupt, Offset: 12})
	list, err := New(fst, Options{}).ListRestorePoints(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("ListRestorePoints = %+v, %v; want a alone", list, err)
	}
}
