package events

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

var t0 = time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)

func rel(n uint32) wal.RelFileNode {
	return wal.RelFileNode{Tablespace: 1663, Database: 5, Relation: n}
}

func commit(lsn wal.LSN, xid uint32, subs []uint32, dropped ...wal.RelFileNode) wal.Record {
	return wal.Record{LSN: lsn, Xid: xid, RmgrID: wal.RmgrXact, Xact: &wal.Xact{Kind: wal.Commit, Xid: xid, Time: t0.Add(time.Duration(lsn)), Database: 5, Subxacts: subs, DroppedRels: dropped}}
}

func abort(lsn wal.LSN, xid uint32) wal.Record {
	return wal.Record{LSN: lsn, Xid: xid, RmgrID: wal.RmgrXact, Xact: &wal.Xact{Kind: wal.Abort, Xid: xid, Time: t0}}
}

func heapDelete(xid uint32, r wal.RelFileNode) wal.Record {
	return wal.Record{Xid: xid, RmgrID: wal.RmgrHeap, Info: 0x10, MainData: make([]byte, 8), Blocks: []wal.BlockRef{{Rel: r, Block: 3}}}
}

func heapUpdate(xid uint32, r wal.RelFileNode) wal.Record {
	return wal.Record{Xid: xid, RmgrID: wal.RmgrHeap, Info: 0x40, MainData: make([]byte, 14), Blocks: []wal.BlockRef{{Rel: r, Block: 3}}}
}

func create(xid uint32, r wal.RelFileNode) wal.Record {
	d := binary.LittleEndian.AppendUint32(nil, r.Tablespace)
	d = binary.LittleEndian.AppendUint32(d, r.Database)
	d = binary.LittleEndian.AppendUint32(d, r.Relation)
	d = binary.LittleEndian.AppendUint32(d, 0)
	return wal.Record{Xid: xid, RmgrID: wal.RmgrSmgr, Info: 0x10, MainData: d}
}

func pageWrite(xid uint32, r wal.RelFileNode, blk uint32) wal.Record {
	return wal.Record{Xid: xid, RmgrID: wal.RmgrXLOG, Info: 0xB0, Blocks: []wal.BlockRef{{Rel: r, Block: blk, HasImage: true}}}
}

func dropDatabase(xid, db uint32) wal.Record {
	return wal.Record{Xid: xid, RmgrID: wal.RmgrDbase, Info: 0x20, MainData: binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, db), 0)}
}

func checkpoint(oldest uint32) wal.Record {
	return wal.Record{RmgrID: wal.RmgrXLOG, Checkpoint: &wal.Checkpoint{OldestActiveXid: oldest, Time: t0}}
}

// collect turns segments of records into facts, one Facts per segment.
func collect(t *testing.T, segs ...[]wal.Record) []Facts {
	t.Helper()
	var out []Facts
	for _, recs := range segs {
		c := NewCollector(15)
		for i := range recs {
			if err := c.Add(&recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, c.Facts())
	}
	return out
}

func fold(f *Folder, facts []Facts) []Event {
	var out []Event
	for _, fa := range facts {
		out = append(out, f.Fold(fa, 1)...)
	}
	return out
}

func repeat(n int, r wal.Record) []wal.Record {
	out := make([]wal.Record, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func TestFoldFindsEachKindOfEvent(t *testing.T) {
	var seg1, seg2 []wal.Record
	// DROP TABLE: files dropped, none created.
	seg1 = append(seg1, commit(0x100, 100, nil, rel(16384), rel(16387)))
	// TRUNCATE: a new heap without pages, a new index with its metapage.
	seg1 = append(seg1, create(101, rel(16400)), create(101, rel(16401)), pageWrite(101, rel(16401), 0),
		commit(0x200, 101, nil, rel(16390), rel(16391)))
	// VACUUM FULL: the new heap has pages.
	seg1 = append(seg1, create(102, rel(16410)), pageWrite(102, rel(16410), 0), pageWrite(102, rel(16410), 1),
		commit(0x300, 102, nil, rel(16395)))
	// A mass DELETE in a subtransaction (103 under 104), its commit in the next segment.
	seg1 = append(seg1, repeat(1200, heapDelete(103, rel(16500)))...)
	seg1 = append(seg1, repeat(300, heapUpdate(104, rel(16500)))...)
	seg2 = append(seg2, repeat(10, heapDelete(104, rel(16501)))...)
	seg2 = append(seg2, commit(0x400, 104, []uint32{103}))
	// An aborted mass delete, and DROP DATABASE.
	seg2 = append(seg2, repeat(5000, heapDelete(105, rel(16500)))...)
	seg2 = append(seg2, abort(0x500, 105), dropDatabase(106, 16600), commit(0x600, 106, nil))
	// A table created and dropped in one transaction loses nothing.
	seg2 = append(seg2, create(107, rel(16700)), commit(0x700, 107, nil, rel(16700)))

	f := &Folder{MinRows: 1000}
	got := fold(f, collect(t, seg1, seg2))
	var kinds []Kind
	for _, e := range got {
		kinds = append(kinds, e.Kind)
	}
	want := []struct {
		kind     Kind
		xid      uint32
		rels     int
		del, upd int64
	}{
		{TableDropped, 100, 2, 0, 0},
		{TableTruncated, 101, 2, 0, 0},
		{TableRewritten, 102, 1, 0, 0},
		{RowsChanged, 104, 1, 1200, 300},
		{DatabaseDropped, 106, 0, 0, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events %v, want %d", len(got), kinds, len(want))
	}
	for i, w := range want {
		e := got[i]
		if e.Kind != w.kind || e.Xid != w.xid || len(e.Relations) != w.rels || e.Deleted != w.del || e.Updated != w.upd {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
		if e.Time.IsZero() || e.LSN == 0 || e.Timeline != 1 {
			t.Errorf("event %d lacks its time, LSN or timeline: %+v", i, e)
		}
	}
	if got[4].Database != 16600 {
		t.Errorf("DROP DATABASE of %d, want 16600", got[4].Database)
	}
	if f.Pending() != 0 {
		t.Errorf("%d transactions still pending after they all ended", f.Pending())
	}
}

func TestFoldForgetsTransactionsACheckpointSaysEnded(t *testing.T) {
	f := &Folder{MinRows: 1}
	// 200 crashed (never ends); a checkpoint says the oldest open one is 201.
	fold(f, collect(t, []wal.Record{heapDelete(200, rel(1)), heapDelete(201, rel(1)), checkpoint(201)}))
	if f.Pending() != 1 {
		t.Fatalf("%d pending, want only 201", f.Pending())
	}
	// Across the xid wraparound: 0xFFFFFFF0 is older than 5.
	f = &Folder{MinRows: 1}
	fold(f, collect(t, []wal.Record{heapDelete(0xFFFFFFF0, rel(1)), checkpoint(5)}))
	if f.Pending() != 0 {
		t.Fatalf("%d pending, want none", f.Pending())
	}
}

func TestFoldLeavesTheParentTimelinesCommitsToIt(t *testing.T) {
	f := &Folder{MinRows: 1, Begin: 0x300}
	got := fold(f, collect(t, []wal.Record{commit(0x200, 1, nil, rel(1)), commit(0x400, 2, nil, rel(2))}))
	if len(got) != 1 || got[0].Xid != 2 {
		t.Fatalf("got %+v, want only the commit after the switch point", got)
	}
}

func TestWriteTextFitsEightyColumns(t *testing.T) {
	long := strings.Repeat("x", 40)
	res := &Result{Segments: 3, Events: []Event{
		{Kind: TableDropped, Time: t0, Xid: 4294967295, LSN: 0xFFFFFFFF_FFFFFFFF, Timeline: 4294967295, Database: 5, DatabaseName: "app",
			Relations: []Relation{{Name: long, Schema: "public", Kind: "r"}, {Name: long + "2", Schema: "public", Kind: "r"}, {FileID: "1663/5/16400"}, {Kind: "i", Name: "i", Schema: "s"}},
			NamesFrom: "20261202T030000Z"},
		{Kind: RowsChanged, Time: t0, Xid: 7, Database: 5, Relations: []Relation{{FileID: "1663/5/16500"}}, Deleted: 1500},
		{Kind: DatabaseDropped, Time: t0, Xid: 8, Database: 16600},
		{Kind: TableTruncated, Time: t0, Xid: 9, Database: 5, DatabaseName: "db\x1b[2J", Relations: []Relation{{Name: "evil\nname", Schema: "public", Kind: "r"}}},
	}}
	for i := range res.Events {
		res.Events[i].Restore = RestoreCommand(res.Events[i].LSN, res.Events[i].Timeline)
	}
	var b bytes.Buffer
	if err := WriteText(&b, res, 1000); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if len(line) > 80 {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
	for _, want := range []string{"DROP TABLE\n  public." + long + " and 2 more\n  (+1 index, TOAST or sequence files) in database app",
		"--target-lsn FFFFFFFF/FFFFFFFF --target-exclusive \\\n      --target-timeline 4294967295", "DELETE 1500 rows of\n  file 1663/5/16500 in database with oid 5",
		"DROP DATABASE\n  with oid 16600\n", "created after it",
		"TRUNCATE\n  " + `"public.evil\nname" in database "db\x1b[2J"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

// A prepared transaction survives a shutdown: its work must still count when
// COMMIT PREPARED comes after the restart.
func TestFoldKeepsAPreparedTransactionsWorkAcrossAShutdown(t *testing.T) {
	f := &Folder{MinRows: 100}
	shutdown := wal.Record{RmgrID: wal.RmgrXLOG, Checkpoint: &wal.Checkpoint{Shutdown: true, NextXid: 400, Time: t0}}
	recs := append(repeat(150, heapDelete(300, rel(16500))), shutdown)
	cp := commit(0x900, 300, nil)
	cp.Xact.Kind, cp.Xid = wal.CommitPrepared, 0
	got := fold(f, collect(t, recs, []wal.Record{cp}))
	if len(got) != 1 || got[0].Kind != RowsChanged || got[0].Deleted != 150 {
		t.Fatalf("got %+v, want the prepared transaction's 150 deletes", got)
	}
}

// DROP DATABASE marks its pg_database row invalid in place (no xid) before it
// deletes the row and the files: recovery must stop before that update, even
// when it is in the segment before the rest of the transaction. PostgreSQL 12
// writes one dbase DROP per tablespace: the database is listed once.
func TestFoldStopsADropDatabaseBeforeItsInplaceUpdate(t *testing.T) {
	pgdb := wal.RelFileNode{Tablespace: 1664, Database: 0, Relation: 1262}
	c := NewCollector(12)
	inplace := wal.Record{LSN: 0x100, RmgrID: wal.RmgrHeap, Info: 0x70, MainData: []byte{4, 0}, Blocks: []wal.BlockRef{{Rel: pgdb}}}
	if err := c.Add(&inplace); err != nil {
		t.Fatal(err)
	}
	first := c.Facts()
	del := wal.Record{LSN: 0x200, Xid: 900, RmgrID: wal.RmgrHeap, Info: 0x10, MainData: []byte{0, 0, 0, 0, 4, 0, 0, 0}, Blocks: []wal.BlockRef{{Rel: pgdb}}}
	drop1 := wal.Record{LSN: 0x300, Xid: 900, RmgrID: wal.RmgrDbase, Info: 0x10, MainData: le32s(16500, 1663)}
	drop2 := wal.Record{LSN: 0x380, Xid: 900, RmgrID: wal.RmgrDbase, Info: 0x10, MainData: le32s(16500, 16401)}
	commit := wal.Record{LSN: 0x400, Xid: 900, RmgrID: wal.RmgrXact}
	for _, r := range []*wal.Record{&del, &drop1, &drop2} {
		if err := c.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	second := c.Facts()
	second.Steps = append(second.Steps, Step{Kind: StepEnd, LSN: commit.LSN, Xid: 900, Committed: true})
	f := &Folder{MinRows: 1000}
	if ev := f.Fold(first, 1); len(ev) != 0 {
		t.Fatalf("events from the in-place update alone: %+v", ev)
	}
	ev := f.Fold(second, 1)
	if len(ev) != 1 || ev[0].Kind != DatabaseDropped || ev[0].Database != 16500 || ev[0].LSN != 0x400 || ev[0].RestoreLSN != 0x100 {
		t.Fatalf("want one drop_database of 16500 committed at 0/400 restoring to 0/100, got %+v", ev)
	}
}

func le32s(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// --until stops the scan only after a segment whose every commit is after it:
// commit times are taken before the records are inserted, so a commit before
// the cut-off can follow one after it in the WAL.
func TestUntilStopsOnlyWhereEveryCommitIsAfterIt(t *testing.T) {
	until := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	c := NewCollector(15)
	for i, d := range []time.Duration{-time.Second, time.Millisecond} {
		rec := wal.Record{LSN: wal.LSN(0x100 * (i + 1)), Xact: &wal.Xact{Kind: wal.Commit, Xid: uint32(800 + i), Time: until.Add(d)}}
		if err := c.Add(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if f := c.Facts(); f.PastUntil(until) {
		t.Fatalf("a segment with a commit before --until (first %s, last %s) ends the scan", f.FirstTime, f.LastTime)
	}
	later := wal.Record{LSN: 0x300, Xact: &wal.Xact{Kind: wal.Commit, Xid: 802, Time: until.Add(time.Second)}}
	if err := c.Add(&later); err != nil {
		t.Fatal(err)
	}
	if f := c.Facts(); !f.PastUntil(until) {
		t.Fatal("a segment whose every commit is after --until does not end the scan")
	}
}
