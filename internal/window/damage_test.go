package window

import (
	"fmt"
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// damagedAt makes segment bad's summary fail as undecodable WAL.
func damagedAt(in *Input, bad uint64) {
	good := in.Summary
	in.Summary = func(s Segment) (*walsum.Summary, error) {
		if s.SegNo == bad {
			return nil, fmt.Errorf("summarise: %w: bad CRC", wal.ErrCorruptRecord)
		}
		return good(s)
	}
}

// A damaged segment is a gap: a usable backup after it starts a new window.
func TestABackupAfterADamagedSegmentStartsAWindow(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 12)}, noCommit: map[uint64]bool{10: true, 11: true, 12: true}}
	in := f.input(backup("B1", 1, 2, 2), backup("B2", 1, 10, 10))
	damagedAt(in, 9)
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	v := ws.Check(Target{Kind: ToLSN, LSN: lsn(12, 0x1800)})
	if !v.Reachable || v.Backup != "B2" || len(ws.Windows) != 2 || len(ws.Gaps) != 1 || !ws.Gaps[0].Damaged {
		t.Fatalf("windows %s; gaps %+v; verdict %+v", ws.Describe(), ws.Gaps, v)
	}
}

// The stop segment of an old backup does not decode: that backup is unusable, the
// segment is listed as damaged, and a newer backup's window still works.
func TestADamagedStopSegmentMakesOnlyItsBackupUnusable(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: append(span(2, 3), span(8, 12)...)}, noCommit: map[uint64]bool{3: true}}
	in := f.input(backup("B1", 1, 2, 2), backup("B2", 1, 9, 9))
	damagedAt(in, 2)
	ws, err := Compute(in)
	if err != nil {
		t.Fatalf("one damaged segment in an old window: %v", err)
	}
	if v := ws.Check(Target{Kind: ToEnd}); !v.Reachable || v.Backup != "B2" {
		t.Fatalf("%+v", v)
	}
	if _, bad := ws.Unusable["B1"]; !bad || len(ws.Damaged) != 1 || len(ws.Windows) != 1 {
		t.Fatalf("unusable %v, damaged %v, windows %s", ws.Unusable, ws.Damaged, ws.Describe())
	}
}

// Zeros after a segment's records, with later segments archived: PostgreSQL's replay
// stops at the zeros, so the window ends in that segment.
func TestWALEndingEarlyInASegmentCutsTheWindow(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 10)}, noCommit: map[uint64]bool{9: true, 10: true}}
	in := f.input(backup("B1", 1, 2, 2))
	good := in.Summary
	in.Summary = func(s Segment) (*walsum.Summary, error) {
		sum, err := good(s)
		if err == nil && s.SegNo == 9 {
			sum.EndOfWAL = true
		}
		return sum, err
	}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	w := ws.Windows[0]
	if w.LastCommit == nil || w.LastCommit.Xid != 1008 || !w.EndOfWAL || w.LastSegment != wal.SegmentFileName(1, 9, seg) {
		t.Fatalf("window %+v", w)
	}
	if v := ws.Check(Target{Kind: ToLSN, LSN: lsn(10, 0x100)}); v.Reachable {
		t.Fatalf("an LSN past the zeros: %+v", v)
	}
}

// A transaction id is never refused on approximate bounds: one committed before a
// lower-numbered one, and one that began before the backup and committed after it, are
// both reachable.
func TestXidTargetsAreNotRefusedOnApproximateBounds(t *testing.T) {
	for _, xid := range []uint32{2000, 900} {
		t.Run(fmt.Sprint(xid), func(t *testing.T) {
			f := fake{segs: map[uint32][]uint64{1: span(2, 10)}}
			in := f.input(backup("B1", 1, 2, 2))
			good := in.Summary
			in.Summary = func(s Segment) (*walsum.Summary, error) {
				sum, err := good(s)
				if err == nil && s.SegNo == 5 {
					c := *sum.LastCommit
					c.Xid = xid
					sum.FirstCommit, sum.LastCommit, sum.MinXid, sum.MaxXid = &c, &c, xid, xid
				}
				return sum, err
			}
			ws, err := Compute(in)
			if err != nil {
				t.Fatal(err)
			}
			if v := ws.Check(Target{Kind: ToXID, XID: uint64(xid)}); !v.Reachable || v.Backup != "B1" || v.Note == "" {
				t.Fatalf("xid %d, committed in segment 5: %+v", xid, v)
			}
		})
	}
}

// A long stretch without a commit costs at most MaxCommitScan summaries, and the
// window says its end was not looked up.
func TestTheCommitScanIsBounded(t *testing.T) {
	nc := map[uint64]bool{}
	for n := uint64(100); n <= 1000; n++ {
		nc[n] = true
	}
	f := fake{segs: map[uint32][]uint64{1: span(2, 1000)}, noCommit: nc}
	ws, err := Compute(f.input(backup("B1", 1, 2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	w := ws.Windows[0]
	if f.read != MaxCommitScan || w.LastCommit != nil || w.NoCommitIn != MaxCommitScan || w.LastRecord != lsn(1000, 0x2000) {
		t.Fatalf("read %d summaries; window %+v", f.read, w)
	}
	if v := ws.Check(Target{Kind: ToLSN, LSN: lsn(999, 0)}); !v.Reachable {
		t.Fatalf("an LSN inside: %+v", v)
	}
}
