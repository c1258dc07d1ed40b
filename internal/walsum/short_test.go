package walsum_test

import (
	"bytes"
	"testing"

	"github.com/pgb-project/pgb/internal/walsum"
)

// R7: a stored segment shorter than the segment size (wal-fetch refuses it: "must
// decode to exactly the segment size") is summarised without error, its commits
// counted, and — when it does not end in an open record — cached.
func TestASegmentObjectShorterThanASegmentIsNotSummarised(t *testing.T) {
	segs := testdata(t)
	n := names[2]
	short := segs[n][:0xD8000] // 8 KiB pages: cut after the page holding commit 736
	s, err := walsum.Compute(file(t, n), segSize, bytes.NewReader(short), nextFrom())
	if err == nil {
		t.Fatalf("a %d-byte segment of %d-byte WAL summarised: open=%v last commit %+v records %d", len(short), segSize, s.Open, s.LastCommit, s.Records)
	}
}
