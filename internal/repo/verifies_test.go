package repo

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func verifyAt(t time.Time, problems int) VerifyRecord {
	v := VerifyRecord{Started: t.Add(-time.Minute), Finished: t, OK: problems == 0, Problems: problems, Scope: "backups and WAL", Backups: 2, Bytes: 1 << 20}
	for i := 0; i < problems; i++ {
		v.FirstProblems = append(v.FirstProblems, "wal/x: checksum mismatch")
	}
	return v
}

// The newest verify and the newest that passed are found; records dated in the future
// and damaged ones are passed over.
func TestVerifyRecordsTheNewestAndTheNewestPassed(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for i, problems := range []int{0, 0, 3, 1} {
		if _, err := r.PutVerify(ctx, verifyAt(t0.Add(time.Duration(i)*time.Hour), problems)); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(10 * time.Hour)
	// A record dated next year (a wrong clock) and a damaged one, newest of all.
	if _, err := r.PutVerify(ctx, verifyAt(now.Add(365*24*time.Hour), 0)); err != nil {
		t.Fatal(err)
	}
	damaged := verifiesPrefix + now.Add(-time.Minute).Format(drillTimeFormat) + "-0123456789abcdef-ok.json"
	if err := r.putDoc(ctx, damaged, []byte(`{"format":1}`)); err != nil {
		t.Fatal(err)
	}
	v, err := r.RecentVerifies(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if v.Last == nil || v.Last.OK || v.Last.Problems != 1 || !v.Last.Finished.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("last: %+v", v.Last)
	}
	if v.LastSuccess == nil || !v.LastSuccess.Finished.Equal(t0.Add(time.Hour)) {
		t.Errorf("last success: %+v", v.LastSuccess)
	}
	if v.Future != 1 || len(v.Damaged) != 1 {
		t.Errorf("future %d, damaged %v", v.Future, v.Damaged)
	}
	empty, err := New(mem.New(), Options{}).RecentVerifies(ctx, now)
	if err != nil || empty.Last != nil || empty.LastSuccess != nil {
		t.Errorf("no records: %+v %v", empty, err)
	}
}

// A record's long problems and error are cut; one whose outcome disagrees with its
// name is damaged.
func TestVerifyRecordsAreBoundedAndChecked(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	v := verifyAt(t0, 50)
	v.FirstProblems = append(v.FirstProblems[:0], strings.Repeat("é", 5000))
	for i := 0; i < 40; i++ {
		v.FirstProblems = append(v.FirstProblems, "p")
	}
	v.Error = strings.Repeat("x", 10000)
	key, err := r.PutVerify(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadVerify(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.FirstProblems) != VerifyProblemsKept || len(got.FirstProblems[0]) > verifyProblemMax || len(got.Error) > drillErrorMax {
		t.Errorf("not cut: %d problems, first %d bytes, error %d bytes", len(got.FirstProblems), len(got.FirstProblems[0]), len(got.Error))
	}
	lying := strings.Replace(key, "-failed.json", "-ok.json", 1)
	b, _ := json.Marshal(got)
	if err := r.putDoc(ctx, lying, b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadVerify(ctx, lying); !errors.Is(err, ErrDamagedVerify) {
		t.Errorf("a failed record under an ok name: %v", err)
	}
	if _, err := r.PutVerify(ctx, VerifyRecord{Started: t0, Finished: t0}); !errors.Is(err, ErrDamagedVerify) {
		t.Errorf("a failed record without a problem or error was written: %v", err)
	}
}

func FuzzVerifyRecord(f *testing.F) {
	t0 := time.Date(2026, 12, 1, 3, 0, 1, 0, time.UTC)
	good, _ := json.Marshal(VerifyRecord{Format: 1, Started: t0, Finished: t0, OK: true, Scope: "backups"})
	f.Add(good, verifiesPrefix+t0.Format(drillTimeFormat)+"-0123456789abcdef-ok.json")
	f.Add([]byte(`{"format":1,"finished":"2026-12-01T03:00:01Z","problems":-1,"first_problems":["a","b"]}`), "verifies/20261201T030001.000Z-0123456789abcdef-failed.json")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		ctx := context.Background()
		r := New(mem.New(), Options{})
		_, _, _ = parseRecordKey(verifiesPrefix, key)
		if storage.ValidKey(key) != nil {
			return
		}
		if err := r.putDoc(ctx, key, data); err != nil {
			return
		}
		v, err := r.ReadVerify(ctx, key)
		if err != nil {
			return
		}
		if v.Validate() != nil || len(v.FirstProblems) > VerifyProblemsKept {
			t.Fatalf("an invalid record was returned: %+v", v)
		}
		at, ok, valid := parseRecordKey(verifiesPrefix, key)
		if !valid || ok != v.OK || !at.Equal(v.Finished.UTC().Truncate(time.Millisecond)) {
			t.Fatalf("record %+v under %q", v, key)
		}
	})
}
