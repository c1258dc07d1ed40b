package events

import (
	"context"
	"strings"
	"testing"
)

// zeroDrop zeroes segment 7 from the records of the DROP TABLE at
// 0/746E78..0/7475D0 to the end of their page: where a record should begin,
// the reader finds zeros (the end of written WAL).
func zeroDrop(segs map[string][]byte) {
	b := segs["000000010000000000000007"]
	const seg = 0x700000
	for i := 0x746E78 - seg; i < 0x748000-seg; i++ {
		b[i] = 0
	}
}

// Zeros where a record should begin in the last segment of a run cut by a gap
// are damage, reported on that segment, not the end of the archive.
func TestFindReportsZerosInASegmentThatIsNotTheNewest(t *testing.T) {
	segs := testSegments(t)
	segs["000000010000000000000009"] = segs["000000010000000000000008"]
	delete(segs, "000000010000000000000008")
	zeroDrop(segs)
	res, err := Find(context.Background(), testRepo(t, segs), Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		if strings.HasPrefix(p, "000000010000000000000007: ") {
			return
		}
	}
	t.Fatalf("zeros in segment 7, followed by segment 9, are not reported: problems %q", res.Problems)
}

// PostgreSQL archives a segment only once its records run to its end or to a
// segment switch: zeros where a record should begin are damage in the newest
// archived segment too (as pgb verify --deep judges them), not the end of WAL.
func TestFindReportsZerosInTheNewestSegment(t *testing.T) {
	segs := testSegments(t)
	delete(segs, "000000010000000000000008")
	zeroDrop(segs)
	res, err := Find(context.Background(), testRepo(t, segs), Options{MinRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		if strings.HasPrefix(p, "000000010000000000000007: ") {
			return
		}
	}
	t.Fatalf("zeros in the newest segment 7 are not reported: problems %q", res.Problems)
}
