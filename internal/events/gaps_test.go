package events

import (
	"bytes"
	"context"
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
)

// Timeline 1's segment 7 (which holds the DROP) is archived on no timeline:
// timeline 1 has segment 6, timeline 2 branched in segment 8. The WAL between
// is a gap in the history of timeline 2 and must be a problem.
func TestFindReportsWALMissingBetweenTheParentAndTheSwitchPoint(t *testing.T) {
	ctx := context.Background()
	segs := testSegments(t)
	segs["000000020000000000000008"] = segs["000000010000000000000008"]
	delete(segs, "000000010000000000000007")
	delete(segs, "000000010000000000000008")
	rp := testRepo(t, segs)
	hist := []byte("1\t0/880000\tno recovery target specified\n")
	f, _ := wal.Parse("00000002.history")
	if _, err := rp.PutWAL(ctx, f, bytes.NewReader(hist), int64(len(hist))); err != nil {
		t.Fatal(err)
	}
	for _, tli := range []uint32{0, 2} {
		res, err := Find(ctx, rp, Options{MinRows: 50, Timeline: tli})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Problems) == 0 {
			t.Errorf("--timeline %d: segment 7 is missing, yet no problem (%d events, %d segments read)", tli, len(res.Events), res.Segments)
		}
	}
}

// With --timeline 2 whose parent timeline 1 has no archived segment at all in
// its span, nothing is read there and nothing is said.
func TestFindWithTimelineReportsAnAncestorWithoutArchivedWAL(t *testing.T) {
	ctx := context.Background()
	segs := map[string][]byte{}
	all := testSegments(t)
	segs["000000020000000000000008"] = all["000000010000000000000008"]
	rp := testRepo(t, segs)
	hist := []byte("1\t0/880000\tno recovery target specified\n")
	f, _ := wal.Parse("00000002.history")
	if _, err := rp.PutWAL(ctx, f, bytes.NewReader(hist), int64(len(hist))); err != nil {
		t.Fatal(err)
	}
	res, err := Find(ctx, rp, Options{MinRows: 50, Timeline: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) == 0 {
		t.Errorf("timeline 1 from the backup's start 0/600028 to 0/880000 is not archived, yet no problem (%d segments read)", res.Segments)
	}
}
