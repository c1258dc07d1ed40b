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
	"github.com/pgb-project/pgb/internal/wal"
)

func gapRecord() GapRecord {
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	return GapRecord{Timeline: 1, First: "000000010000000000000006", Last: "000000010000000000000007", SegmentSize: 16 << 20, Segments: 2,
		Reason: GapReasonQueueMax, DroppedFrom: t0, DroppedTo: t0.Add(time.Minute), BacklogBytes: 5 << 30, LimitBytes: 4 << 30,
		Error: "repository unreachable", Host: "db1"}
}

// A gap wal-push-queue-max made is stored once under a key that names its segments,
// listed from that key alone and read back whole; storing it again counts as stored.
func TestGapRecordIsStoredListedAndRead(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	key, err := r.PutGap(ctx, gapRecord())
	if err != nil {
		t.Fatal(err)
	}
	if key != "gaps/00000001/000000010000000000000006-000000010000000000000007.json" {
		t.Fatalf("key %s", key)
	}
	if again, err := r.PutGap(ctx, gapRecord()); err != nil || again != key {
		t.Fatalf("stored again: %s, %v", again, err)
	}
	keys, err := r.ListGapKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].First != "000000010000000000000006" || keys[0].Last != "000000010000000000000007" || keys[0].Timeline != 1 {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	g, err := r.ReadGap(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if g.Key != key || g.BacklogBytes != 5<<30 || g.Host != "db1" {
		t.Fatalf("read %+v", g)
	}
	for _, w := range []string{"WAL dropped by wal-push-queue-max on 2026-12-01T03:00:00Z to 2026-12-01T03:01:00Z", "host db1", "5 GiB over the 4 GiB limit"} {
		if !strings.Contains(g.Cause(), w) {
			t.Errorf("cause %q lacks %q", g.Cause(), w)
		}
	}
}

func TestGapRecordValidation(t *testing.T) {
	cases := map[string]func(*GapRecord){
		"no format":               func(g *GapRecord) { g.Format = 0 },
		"timeline 0":              func(g *GapRecord) { g.Timeline = 0 },
		"segment size":            func(g *GapRecord) { g.SegmentSize = 3 << 20 },
		"last before first":       func(g *GapRecord) { g.First, g.Last = g.Last, g.First },
		"other timeline":          func(g *GapRecord) { g.First = "000000020000000000000006" },
		"not a segment":           func(g *GapRecord) { g.Last = "00000001.history" },
		"count disagrees":         func(g *GapRecord) { g.Segments = 3 },
		"no reason":               func(g *GapRecord) { g.Reason = "" },
		"no time":                 func(g *GapRecord) { g.DroppedFrom = time.Time{} },
		"times out of order":      func(g *GapRecord) { g.DroppedTo = g.DroppedFrom.Add(-time.Second) },
		"negative backlog":        func(g *GapRecord) { g.BacklogBytes = -1 },
		"segment beyond its size": func(g *GapRecord) { g.SegmentSize = 1 << 30; g.Last = "000000010000000000000009" },
		"host too long":           func(g *GapRecord) { g.Host = strings.Repeat("h", 2000) },
	}
	for name, spoil := range cases {
		g := gapRecord()
		g.Format = GapFormat
		if g.Validate() != nil {
			t.Fatal("the good record fails")
		}
		spoil(&g)
		if err := g.Validate(); !errors.Is(err, ErrDamagedGap) {
			t.Errorf("%s: %v", name, err)
		}
	}
	g := gapRecord()
	g.Format = GapFormat + 1
	if err := g.Validate(); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("newer format: %v", err)
	}
}

// A document that names other segments than its key, or does not decode, is damaged;
// its key still lists, so a reader never loses the gap.
func TestDamagedGapRecordStillLists(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	g := gapRecord()
	g.Format = GapFormat
	js, _ := json.Marshal(g)
	key := gapKey(1, "000000010000000000000006", "000000010000000000000009")
	if err := r.putDoc(ctx, key, js); err != nil {
		t.Fatal(err)
	}
	if err := r.st.Put(ctx, gapKey(1, "00000001000000000000000A", "00000001000000000000000A"), strings.NewReader("junk"), storage.PutOptions{Size: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadGap(ctx, key); !errors.Is(err, ErrDamagedGap) {
		t.Fatalf("read: %v", err)
	}
	if _, err := r.ReadGap(ctx, gapKey(1, "00000001000000000000000A", "00000001000000000000000A")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read junk: %v", err)
	}
	keys, err := r.ListGapKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %+v, %v", keys, err)
	}
}

func TestGapKeys(t *testing.T) {
	for key, ok := range map[string]bool{
		"gaps/00000001/000000010000000000000006-000000010000000000000007.json": true,
		"gaps/00000002/000000010000000000000006-000000010000000000000007.json": false,
		"gaps/00000001/000000010000000000000006-000000020000000000000007.json": false,
		"gaps/00000001/000000010000000000000006_000000010000000000000007.json": false,
		"gaps/00000001/000000010000000000000006-000000010000000000000007":      false,
		"gaps/00000000/000000000000000000000006-000000000000000000000007.json": false,
		"gaps/00000001/00000001000000000000000g-000000010000000000000007.json": false,
	} {
		if _, got := parseGapKey(key); got != ok {
			t.Errorf("%s: %v", key, got)
		}
	}
}

// FuzzGapRecord reads hostile bytes as a gap record under a hostile key: errors are
// expected; a panic, or a record returned that fails validation or disagrees with its
// key, is not.
func FuzzGapRecord(f *testing.F) {
	g := gapRecord()
	g.Format = GapFormat
	good, _ := json.Marshal(g)
	f.Add(good, gapKey(1, g.First, g.Last))
	f.Add([]byte(`{"format":1,"timeline":1,"first_segment":"000000010000000000000006","last_segment":"00000001FFFFFFFF000000FF","segment_size":16777216,"segments":18446744073709551615}`),
		"gaps/00000001/000000010000000000000006-00000001FFFFFFFF000000FF.json")
	f.Add([]byte(`{}`), "gaps/x.json")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		ctx := context.Background()
		r := New(mem.New(), Options{})
		k, keyOK := parseGapKey(key)
		if storage.ValidKey(key) != nil {
			return
		}
		if err := r.putDoc(ctx, key, data); err != nil {
			return
		}
		rec, err := r.ReadGap(ctx, key)
		if err != nil {
			return
		}
		if !keyOK || rec.Validate() != nil || rec.First != k.First || rec.Last != k.Last || rec.Timeline != k.Timeline {
			t.Fatalf("record %+v under %q", rec, key)
		}
		if f, err := wal.Parse(rec.First); err != nil || f.Timeline != rec.Timeline {
			t.Fatalf("first segment %q", rec.First)
		}
		_ = rec.Cause()
	})
}
