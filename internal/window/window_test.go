package window

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

const seg = 16 << 20

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// at is a minute after t0.
func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func lsn(segNo uint64, off uint64) wal.LSN { return wal.LSN(segNo*seg + off) }

func backup(name string, tli uint32, segNo uint64, stop int) *repo.Summary {
	return &repo.Summary{Name: name, Timeline: tli, StartLSN: lsn(segNo, 0x28), StopLSN: lsn(segNo, 0x1000),
		StartTime: at(stop - 1), StopTime: at(stop), NextXID: uint64(1000 + stop), WALSegSize: seg}
}

// fake is a repository listing with a summary per segment: segment n holds one commit
// of xid 1000+n at minute n (none when noCommit[n]); open[n] makes its summary open with
// its commit left out.
type fake struct {
	segs     map[uint32][]uint64
	noCommit map[uint64]bool
	open     map[uint64]bool
	read     int
}

func (f *fake) input(backups ...*repo.Summary) *Input {
	in := &Input{SegSize: seg, Backups: backups, Segments: map[uint32][]Segment{}, History: map[uint32][]wal.TimelineSpan{}}
	for tli, ns := range f.segs {
		for _, n := range ns {
			in.Segments[tli] = append(in.Segments[tli], Segment{Name: wal.SegmentFileName(tli, n, seg), Timeline: tli, SegNo: n, Size: 1 << 20, Stored: at(int(n)).Add(30 * time.Second)})
		}
	}
	in.Summary = func(s Segment) (*walsum.Summary, error) {
		f.read++
		n := s.SegNo
		sum := &walsum.Summary{Version: 1, Segment: s.Name, SegSize: seg, Records: 3, FirstLSN: lsn(n, 0x28), LastLSN: lsn(n, 0x2000), EndLSN: lsn(n, 0x2040)}
		if !f.noCommit[n] && !f.open[n] {
			c := &walsum.Commit{Xid: uint32(1000 + n), Time: at(int(n)).Add(10 * time.Second), LSN: lsn(n, 0x1800)}
			sum.Commits, sum.FirstCommit, sum.LastCommit, sum.MinXid, sum.MaxXid = 1, c, c, c.Xid, c.Xid
		}
		sum.Open = f.open[n]
		return sum, nil
	}
	return in
}

func span(a, b uint64) []uint64 {
	var out []uint64
	for n := a; n <= b; n++ {
		out = append(out, n)
	}
	return out
}

func TestWindows(t *testing.T) {
	type want struct {
		windows  []string // "backup→xid of last commit (cut)"
		gaps     []string
		unusable []string
	}
	cases := []struct {
		name    string
		f       fake
		backups []*repo.Summary
		history map[uint32][]wal.TimelineSpan
		want    want
	}{
		{
			name:    "one backup, WAL to the last commit",
			f:       fake{segs: map[uint32][]uint64{1: span(2, 10)}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2)},
			want:    want{windows: []string{"B1→1010"}},
		},
		{
			name: "no backups",
			f:    fake{segs: map[uint32][]uint64{1: span(2, 10)}},
			want: want{},
		},
		{
			name:    "a gap cuts the window; a backup after it starts another",
			f:       fake{segs: map[uint32][]uint64{1: append(span(2, 5), span(8, 12)...)}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2), backup("B2", 1, 9, 9)},
			want:    want{windows: []string{"B1→1005 cut", "B2→1012"}, gaps: []string{"0000000100000000000000060000000100000000000000072"}},
		},
		{
			name:    "a gap with no backup after it ends everything",
			f:       fake{segs: map[uint32][]uint64{1: append(span(2, 5), span(8, 12)...)}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2)},
			want:    want{windows: []string{"B1→1005 cut"}, gaps: []string{"0000000100000000000000060000000100000000000000072"}},
		},
		{
			name:    "a backup whose own WAL is missing is unusable",
			f:       fake{segs: map[uint32][]uint64{1: span(4, 9)}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2), backup("B2", 1, 5, 5)},
			want:    want{windows: []string{"B2→1009"}, unusable: []string{"B1"}},
		},
		{
			name:    "the last commit's record continues into an unarchived segment",
			f:       fake{segs: map[uint32][]uint64{1: span(2, 10)}, open: map[uint64]bool{10: true}, noCommit: map[uint64]bool{9: true}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2)},
			want:    want{windows: []string{"B1→1008"}},
		},
		{
			name:    "no commit after the backup: the window is the backup's end",
			f:       fake{segs: map[uint32][]uint64{1: span(2, 4)}, noCommit: map[uint64]bool{2: true, 3: true, 4: true}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2)},
			want:    want{windows: []string{"B1→none"}},
		},
		{
			name:    "timeline 2 branched in segment 6: its copy of 6 and after are followed",
			f:       fake{segs: map[uint32][]uint64{1: span(2, 8), 2: span(6, 9)}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2)},
			history: map[uint32][]wal.TimelineSpan{2: {{TLI: 1, End: lsn(6, 0x500)}, {TLI: 2, Begin: lsn(6, 0x500), End: wal.EndOfTimeline}}},
			want:    want{windows: []string{"B1→1009"}},
		},
		{
			name:    "a backup of timeline 1 after the branch point is off the history",
			f:       fake{segs: map[uint32][]uint64{1: span(2, 8), 2: span(6, 9)}},
			backups: []*repo.Summary{backup("B1", 1, 2, 2), backup("B7", 1, 7, 7)},
			history: map[uint32][]wal.TimelineSpan{2: {{TLI: 1, End: lsn(6, 0x500)}, {TLI: 2, Begin: lsn(6, 0x500), End: wal.EndOfTimeline}}},
			want:    want{windows: []string{"B1→1009"}, unusable: []string{"B7"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.f.input(c.backups...)
			if c.history != nil {
				in.History = c.history
			}
			ws, err := Compute(in)
			if err != nil {
				t.Fatal(err)
			}
			var got want
			for _, w := range ws.Windows {
				s := w.Backup + "→none"
				if w.LastCommit != nil {
					s = fmt.Sprintf("%s→%d", w.Backup, w.LastCommit.Xid)
				}
				if w.CutByGap {
					s += " cut"
				}
				got.windows = append(got.windows, s)
			}
			for _, g := range ws.Gaps {
				got.gaps = append(got.gaps, fmt.Sprintf("%s%s%d", g.From, g.To, g.Count))
			}
			for _, b := range c.backups {
				if _, ok := ws.Unusable[b.Name]; ok {
					got.unusable = append(got.unusable, b.Name)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: append(span(2, 5), span(8, 12)...)}}
	in := f.input(backup("B1", 1, 2, 2), backup("B1b", 1, 4, 4), backup("B2", 1, 9, 9))
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		t      Target
		backup string
		err    error
	}{
		{"a time inside the first window", Target{Kind: ToTime, Time: at(3)}, "B1", nil},
		{"the newest backup before the time", Target{Kind: ToTime, Time: at(5)}, "B1b", nil},
		{"a time before the first backup ends", Target{Kind: ToTime, Time: at(1)}, "", ErrBeforeFirstBackup},
		{"a time in the gap", Target{Kind: ToTime, Time: at(7)}, "", ErrInGap},
		{"a time in the second window", Target{Kind: ToTime, Time: at(11)}, "B2", nil},
		{"the time of the last commit itself", Target{Kind: ToTime, Time: at(12).Add(10 * time.Second)}, "", ErrAfterArchive},
		{"the last commit, exclusive", Target{Kind: ToTime, Time: at(12).Add(10 * time.Second), Exclusive: true}, "B2", nil},
		{"a time after the last commit", Target{Kind: ToTime, Time: at(13)}, "", ErrAfterArchive},
		{"an LSN in the gap", Target{Kind: ToLSN, LSN: lsn(6, 0)}, "", ErrInGap},
		{"an LSN in the second window", Target{Kind: ToLSN, LSN: lsn(10, 0)}, "B2", nil},
		{"an LSN past the last record", Target{Kind: ToLSN, LSN: lsn(12, 0x2001)}, "", ErrAfterArchive},
		{"an xid committed in the first window", Target{Kind: ToXID, XID: 1003}, "B1", nil},
		// An xid's commit is not looked up: never refused on approximate bounds.
		{"an xid between two backups' next xids", Target{Kind: ToXID, XID: 1007}, "B1b", nil},
		{"an xid above every archived one", Target{Kind: ToXID, XID: 1020}, "B2", nil},
		{"the end of the archive", Target{Kind: ToEnd}, "B2", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := ws.Check(c.t)
			if c.err != nil {
				if v.Reachable || !errors.Is(v.Err, c.err) || len(v.Nearest) == 0 {
					t.Fatalf("verdict %+v, want %v", v, c.err)
				}
				return
			}
			if !v.Reachable || v.Backup != c.backup || v.Err != nil {
				t.Fatalf("verdict %+v (%v), want reachable from %s", v, v.Err, c.backup)
			}
		})
	}
}

func TestNoBackupsIsNoWindow(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 3)}}
	ws, err := Compute(f.input())
	if err != nil {
		t.Fatal(err)
	}
	if v := ws.Check(Target{Kind: ToEnd}); v.Reachable || !errors.Is(v.Err, ErrNoWindow) {
		t.Fatalf("%+v", v)
	}
}

// Only the newest segments, back to the last commit, are summarised: not the whole
// archive.
func TestComputeReadsOnlyTheSummariesItNeeds(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 10001)}, noCommit: map[uint64]bool{10001: true, 10000: true}}
	ws, err := Compute(f.input(backup("B1", 1, 2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if f.read != 3 || ws.Windows[0].LastCommit.Xid != uint32(1000+9999) {
		t.Fatalf("read %d summaries, window %+v", f.read, ws.Windows[0])
	}
}

// A segment whose WAL does not decode, found while looking for the last commit, cuts
// the window before it, like a gap. (Damage further back is pgb verify's to find.)
func TestADamagedSegmentCutsTheWindow(t *testing.T) {
	f := fake{segs: map[uint32][]uint64{1: span(2, 10)}, noCommit: map[uint64]bool{10: true}}
	in := f.input(backup("B1", 1, 2, 2))
	good := in.Summary
	in.Summary = func(s Segment) (*walsum.Summary, error) {
		if s.SegNo == 9 {
			return nil, fmt.Errorf("summarise: %w at 0/9000028: bad CRC", wal.ErrCorruptRecord)
		}
		return good(s)
	}
	ws, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	w := ws.Windows[0]
	if w.LastCommit == nil || w.LastCommit.Xid != 1008 || !w.CutByGap || len(ws.Damaged) != 1 || len(ws.Gaps) != 1 || !ws.Gaps[0].Damaged {
		t.Fatalf("window %+v, damaged %+v, gaps %+v", w, ws.Damaged, ws.Gaps)
	}
}
