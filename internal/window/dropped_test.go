package window

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

const cause = "WAL dropped by wal-push-queue-max on 2026-12-01T00:06:00Z"

func dropped(tli uint32, a, b uint64) RecordedGap {
	return RecordedGap{Timeline: tli, First: wal.SegmentFileName(tli, a, seg), Last: wal.SegmentFileName(tli, b, seg), Cause: cause}
}

// A user whose wal-push-queue-max dropped segments 6 and 7 while the repository was
// unreachable: the window ends before them, the gap carries the cause, and a target
// after them is refused with that cause.
func TestRecordedGapCutsTheWindowWithItsCause(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: append(span(2, 5), span(8, 12)...)}}
	in := f.input(backup("B1", 1, 2, 2))
	in.Dropped = []RecordedGap{dropped(1, 6, 7)}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Windows) != 1 || !ws.Windows[0].CutByGap || ws.Windows[0].CutCause != cause || ws.Windows[0].LastSegment != wal.SegmentFileName(1, 5, seg) {
		t.Fatalf("windows %+v", ws.Windows)
	}
	if len(ws.Gaps) != 1 || !ws.Gaps[0].Dropped || ws.Gaps[0].Cause != cause || ws.Gaps[0].Count != 2 {
		t.Fatalf("gaps %+v", ws.Gaps)
	}
	v := ws.Check(Target{Kind: ToTime, Time: at(10), Text: "10 minutes in"})
	if v.Reachable || !errors.Is(v.Err, ErrInGap) || !strings.Contains(v.Reason, cause) || !strings.Contains(v.Reason, "dropped") {
		t.Fatalf("verdict %+v, %v", v, v.Err)
	}
	if v := ws.Check(Target{Kind: ToTime, Time: at(4), Text: "4 minutes in"}); !v.Reachable {
		t.Fatalf("a target before the gap: %v", v.Err)
	}
	if d := ws.Describe(); !strings.Contains(d, "cut by "+cause) || !strings.Contains(d, "dropped") {
		t.Fatalf("describe: %s", d)
	}
}

// Dropped segments newest of all — nothing archived after them yet — still end the
// window: a target after the last archived commit is refused as in a gap, with the
// cause, not as "after the archive" (which --target-beyond-archive could override).
func TestRecordedGapAfterTheNewestSegmentCutsTheWindow(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 5)}}
	in := f.input(backup("B1", 1, 2, 2))
	in.Dropped = []RecordedGap{dropped(1, 6, 9)}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Windows) != 1 || !ws.Windows[0].CutByGap || ws.Windows[0].CutCause != cause {
		t.Fatalf("windows %+v", ws.Windows[0])
	}
	if len(ws.Gaps) != 1 || ws.Gaps[0].From != wal.SegmentFileName(1, 6, seg) || ws.Gaps[0].Count != 4 || !ws.Gaps[0].Dropped {
		t.Fatalf("gaps %+v", ws.Gaps)
	}
	v := ws.Check(Target{Kind: ToTime, Time: at(30), Text: "later"})
	if v.Reachable || !errors.Is(v.Err, ErrInGap) || errors.Is(v.Err, ErrAfterArchive) || !strings.Contains(v.Reason, cause) {
		t.Fatalf("verdict %+v", v)
	}
}

// Inside a longer stretch of missing WAL, only the recorded part says dropped.
func TestRecordedGapInsideMissingWAL(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: append(span(2, 5), span(12, 14)...)}}
	in := f.input(backup("B1", 1, 2, 2))
	in.Dropped = []RecordedGap{dropped(1, 8, 9)}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range ws.Gaps {
		got = append(got, g.From[16:]+"-"+g.To[16:]+map[bool]string{true: " dropped", false: " missing"}[g.Dropped])
	}
	want := "00000006-00000007 missing,00000008-00000009 dropped,0000000A-0000000B missing"
	if strings.Join(got, ",") != want {
		t.Fatalf("gaps %s, want %s", strings.Join(got, ","), want)
	}
	if ws.Windows[0].CutCause != "" {
		t.Fatalf("cut right after 5 by missing WAL, not by the drop: %+v", ws.Windows[0])
	}
}

// A dropped segment that is archived after all (another pgb pushed it): the segment
// present wins, the window runs through, and the record shows as filled.
func TestRecordedGapFilledByArchivedSegments(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 12)}}
	in := f.input(backup("B1", 1, 2, 2))
	in.Dropped = []RecordedGap{dropped(1, 6, 7)}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Windows) != 1 || ws.Windows[0].CutByGap || len(ws.Gaps) != 0 {
		t.Fatalf("windows %+v gaps %+v", ws.Windows[0], ws.Gaps)
	}
	if len(ws.Filled) != 1 || ws.Filled[0].Cause != cause || ws.Filled[0].Count != 2 {
		t.Fatalf("filled %+v", ws.Filled)
	}
	if v := ws.Check(Target{Kind: ToTime, Time: at(10), Text: "t"}); !v.Reachable {
		t.Fatal(v.Err)
	}
}

// A backup taken after the drop starts a new window: recovery to a point after it
// needs no WAL across the gap.
func TestBackupAfterRecordedGapStartsANewWindow(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: append(span(2, 5), span(8, 12)...)}}
	in := f.input(backup("B1", 1, 2, 2), backup("B2", 1, 9, 9))
	in.Dropped = []RecordedGap{dropped(1, 6, 7)}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Windows) != 2 || ws.Windows[0].CutCause != cause || ws.Windows[1].CutByGap {
		t.Fatalf("windows %+v", ws.Windows)
	}
	if v := ws.Check(Target{Kind: ToTime, Time: at(11), Text: "t"}); !v.Reachable || v.Backup != "B2" {
		t.Fatalf("verdict %+v %v", v, v.Err)
	}
	v := ws.Check(Target{Kind: ToTime, Time: at(7), Text: "during the drop"})
	if v.Reachable || !errors.Is(v.Err, ErrInGap) || !strings.Contains(v.Reason, cause) {
		t.Fatalf("verdict %+v", v)
	}
}

// A drop on timeline 1 after timeline 2 branched off does not cut timeline 2's
// window; the same drop cuts timeline 1's.
func TestRecordedGapOnlyCutsTheTimelineItIsOn(t *testing.T) {
	// Timeline 2 begins in segment 6.
	hist := map[uint32][]wal.TimelineSpan{2: {{TLI: 1, Begin: 0, End: lsn(6, 0x100)}, {TLI: 2, Begin: lsn(6, 0x100), End: wal.EndOfTimeline}}}
	f := fake{segs: map[uint32][]uint64{1: span(2, 6), 2: span(6, 10)}}
	in := f.input(backup("B1", 1, 2, 2))
	in.History = hist
	in.Dropped = []RecordedGap{dropped(1, 7, 8)}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Timeline != 2 || len(ws.Windows) != 1 || ws.Windows[0].CutByGap || len(ws.Gaps) != 0 {
		t.Fatalf("timeline %d windows %+v gaps %+v", ws.Timeline, ws.Windows, ws.Gaps)
	}
	in.Timeline = 1
	ws, err = Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Windows) != 1 || ws.Windows[0].CutCause != cause {
		t.Fatalf("timeline 1: windows %+v", ws.Windows)
	}
}

// A hostile record spanning every segment there could be costs no loop over them.
func TestRecordedGapOfEverySegmentIsCheap(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 5)}}
	in := f.input(backup("B1", 1, 2, 2))
	in.Dropped = []RecordedGap{{Timeline: 1, First: "000000010000000000000001", Last: "00000001FFFFFFFF000000FF", Cause: cause}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ws, err := Compute(in)
		if err != nil || len(ws.Windows) != 1 || !ws.Windows[0].CutByGap {
			t.Errorf("%v %+v", err, ws)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // a failure guard only: the work is a handful of comparisons
		t.Fatal("Compute loops over the segments of a recorded gap")
	}
}
