package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/wal/waldumptest"
)

var (
	blkref0RE = regexp.MustCompile(`blkref #0: rel (\d+)/(\d+)/(\d+) `)
	copyRE    = regexp.MustCompile(`^CREATE_FILE_COPY copy dir (\d+)/(\d+) to (\d+)/(\d+)$`)
	createRE  = regexp.MustCompile(`^CREATE (base/(\d+)|global)/(\d+)(_\w+)?$`)
)

// TestDecodeChangeAgreesWithPgWaldump decodes every record of the committed
// segments and checks the row changes and created files against what
// pg_waldump says of the same records.
func TestDecodeChangeAgreesWithPgWaldump(t *testing.T) {
	segs := loadSegments(t)
	entries, err := waldumptest.Parse(string(waldumptest.Unzstd(t, filepath.Join("testdata", "pg15", "pg_waldump.txt.zst"))))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := wal.NewReader(bytes.NewReader(concat(segs)), testSegSize, startOf(t, segs[0].name))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[wal.ChangeKind]int{}
	for i := 0; ; i++ {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(entries) || entries[i].LSN != r.LSN {
			t.Fatalf("record %d at %s is not pg_waldump's", i, r.LSN)
		}
		e := entries[i]
		c, err := wal.DecodeChange(&r, rd.PostgreSQLMajor())
		if err != nil {
			t.Fatalf("%s: %v", r.LSN, err)
		}
		counts[c.Kind]++
		got := fmt.Sprint(c.Kind, " ", c.Rel)
		if c.Kind == wal.DatabaseCopy {
			got = fmt.Sprint(c.Kind, " ", c.Tablespaces, "/", c.Database)
		}
		if want := wantChange(t, e); want != got {
			t.Errorf("%s (%s %s): decoded %s, pg_waldump says %s", r.LSN, e.Rmgr, e.Desc, got, want)
		}
	}
	if counts[wal.RowDelete] == 0 || counts[wal.RowUpdate] == 0 || counts[wal.FileCreate] == 0 || counts[wal.DatabaseCopy] == 0 {
		t.Fatalf("the segments should hold deletes, updates and file creations: %v", counts)
	}
}

// wantChange is what pg_waldump's line says DecodeChange must find.
func wantChange(t *testing.T, e waldumptest.Entry) string {
	op, _, _ := strings.Cut(e.Desc, " ")
	kind := wal.NoChange
	switch {
	case e.Rmgr == "Heap" && op == "DELETE":
		kind = wal.RowDelete
	case e.Rmgr == "Heap" && (op == "UPDATE" || op == "HOT_UPDATE" || op == "UPDATE+INIT" || op == "HOT_UPDATE+INIT"):
		kind = wal.RowUpdate
	case e.Rmgr == "Heap" && op == "INPLACE":
		kind = wal.InplaceUpdate
	case e.Rmgr == "Storage" && op == "CREATE":
		m := createRE.FindStringSubmatch(e.Desc)
		if m == nil {
			t.Fatalf("pg_waldump line %q not understood", e.Desc)
		}
		spc, db := "1663", m[2]
		if m[1] == "global" {
			spc, db = "1664", "0"
		}
		return fmt.Sprintf("%v %s/%s/%s", wal.FileCreate, spc, db, m[3])
	case e.Rmgr == "Database" && op == "CREATE_FILE_COPY":
		// initdb creates template0 and postgres by copying template1.
		m := copyRE.FindStringSubmatch(e.Desc)
		if m == nil {
			t.Fatalf("pg_waldump line %q not understood", e.Desc)
		}
		return fmt.Sprintf("%v [%s]/%s", wal.DatabaseCopy, m[3], m[4])
	case e.Rmgr == "Heap" && op == "TRUNCATE", e.Rmgr == "Database" && op == "DROP":
		t.Fatalf("%s %s: not in the committed segments; update this test", e.Rmgr, e.Desc)
	}
	if kind == wal.NoChange {
		return fmt.Sprint(kind, " ", wal.RelFileNode{})
	}
	m := blkref0RE.FindStringSubmatch(e.Desc)
	if m == nil {
		t.Fatalf("pg_waldump line %q has no block reference 0", e.Desc)
	}
	return fmt.Sprintf("%v %s/%s/%s", kind, m[1], m[2], m[3])
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func TestDecodeChangeBodies(t *testing.T) {
	blk := []wal.BlockRef{{ID: 0, Rel: wal.RelFileNode{Tablespace: 1663, Database: 5, Relation: 16384}}}
	del := func(flags byte) []byte { return []byte{1, 2, 0, 0, 1, 0, 0, flags} }
	trunc := append(le32(5, 2), 0, 0, 0, 0) // dbId, nrelids, flags and padding
	cases := []struct {
		name    string
		rec     wal.Record
		major   int
		want    string
		wantErr bool
	}{
		{"delete", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x10, MainData: del(0), Blocks: blk}, 15, "row delete 1663/5/16384 0 []", false},
		{"delete, speculative insertion taken back", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x10, MainData: del(0x08), Blocks: blk}, 15, "none 0/0/0 0 []", false},
		{"delete moving a row to another partition", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x10, MainData: del(0x10), Blocks: blk}, 15, "row update 1663/5/16384 0 []", false},
		{"delete without a block", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x10, MainData: del(0)}, 15, "", true},
		{"delete, short", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x10, MainData: del(0)[:7], Blocks: blk}, 15, "", true},
		{"hot update with init page", wal.Record{RmgrID: wal.RmgrHeap, Info: 0xC0, MainData: make([]byte, 14), Blocks: blk}, 15, "row update 1663/5/16384 0 []", false},
		{"update, short", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x20, MainData: make([]byte, 13), Blocks: blk}, 15, "", true},
		{"insert", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x00, MainData: make([]byte, 3), Blocks: blk}, 15, "none 0/0/0 0 []", false},
		{"truncate", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x30, MainData: append(bytes.Clone(trunc), le32(16384, 16390)...)}, 15, "truncate 0/0/0 5 [16384 16390]", false},
		{"truncate, count past the end", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x30, MainData: append(bytes.Clone(trunc), le32(16384)...)}, 15, "", true},
		{"truncate, huge count", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x30, MainData: append(le32(5, 0xFFFFFFFF), 0, 0, 0, 0)}, 15, "", true},
		{"smgr create", wal.Record{RmgrID: wal.RmgrSmgr, Info: 0x10, MainData: le32(1663, 5, 16400, 0)}, 15, "file create 1663/5/16400 0 []", false},
		{"smgr create, bad fork", wal.Record{RmgrID: wal.RmgrSmgr, Info: 0x10, MainData: le32(1663, 5, 16400, 9)}, 15, "", true},
		{"smgr truncate", wal.Record{RmgrID: wal.RmgrSmgr, Info: 0x20, MainData: le32(1, 1663, 5, 16400, 7)}, 15, "none 0/0/0 0 []", false},
		{"drop database, 15", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x20, MainData: le32(16500, 2, 1663, 16401)}, 15, "database drop 0/0/0 16500 [1663 16401]", false},
		{"create database WAL_LOG, 15", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x10, MainData: le32(16500, 1663)}, 15, "none 0/0/0 0 []", false},
		{"drop database, 14", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x10, MainData: le32(16500, 1, 1663)}, 14, "database drop 0/0/0 16500 [1663]", false},
		{"drop database, 12", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x10, MainData: le32(16500, 1663)}, 12, "database drop 0/0/0 16500 [1663]", false},
		{"drop database, negative count", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x20, MainData: le32(16500, 0x80000000)}, 15, "", true},
		{"drop database, short", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x20, MainData: le32(16500)}, 15, "", true},
		{"create database FILE_COPY, 15", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x00, MainData: le32(16500, 16401, 1, 1663)}, 15, "database copy 0/0/0 16500 [16401]", false},
		{"create database, 14 (always a copy)", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x00, MainData: le32(16500, 1663, 1, 1663)}, 14, "database copy 0/0/0 16500 [1663]", false},
		{"create database FILE_COPY, short", wal.Record{RmgrID: wal.RmgrDbase, Info: 0x00, MainData: le32(16500, 1663, 1)}, 15, "", true},
		{"inplace update", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x70, MainData: []byte{4, 0}, Blocks: blk}, 15, "inplace update 1663/5/16384 0 []", false},
		{"inplace update, short", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x70, MainData: []byte{4}, Blocks: blk}, 15, "", true},
		{"inplace update without a block", wal.Record{RmgrID: wal.RmgrHeap, Info: 0x70, MainData: []byte{4, 0}}, 15, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := wal.DecodeChange(&c.rec, c.major)
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if got := fmt.Sprint(ch.Kind, " ", ch.Rel, " ", ch.Database, " ", append(ch.RelOIDs, ch.Tablespaces...)); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// DROP DATABASE overwrites its pg_database row in place (no transaction id)
// before deleting it: the DELETE and the INPLACE name the same row.
func TestDecodeChangeTellsWhichRowADeleteOrAnInplaceUpdateHits(t *testing.T) {
	blk := []wal.BlockRef{{ID: 0, Rel: wal.RelFileNode{Tablespace: 1664, Database: 0, Relation: 1262}, Block: 3}}
	for _, rec := range []wal.Record{
		{RmgrID: wal.RmgrHeap, Info: 0x70, MainData: []byte{4, 0}, Blocks: blk},
		{RmgrID: wal.RmgrHeap, Info: 0x10, MainData: []byte{1, 2, 0, 0, 4, 0, 0, 0}, Blocks: blk},
	} {
		ch, err := wal.DecodeChange(&rec, 15)
		if err != nil || ch.Rel != blk[0].Rel || ch.Block != 3 || ch.Offset != 4 {
			t.Errorf("info %#x: %+v, %v; want row (1664/0/1262, 3, 4)", rec.Info, ch, err)
		}
	}
}
