package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
)

// FuzzReader feeds arbitrary bytes to the reader as 1 MiB segments starting
// where the first page header says (so mutated real pages get past the page
// checks). Whatever the input: no panic, no endless loop (every record
// consumes input), and every error wraps one of the reader's sentinels.
// The kept corpus (testdata/fuzz/FuzzReader) holds the first pages of real
// segments; the test segments' first pages are added as seeds too.
func FuzzReader(f *testing.F) {
	for _, s := range loadSegments(f) {
		f.Add(s.data[:3*8192])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var start wal.LSN
		if len(data) >= 16 {
			start = wal.LSN(binary.LittleEndian.Uint64(data[8:]) / testSegSize * testSegSize)
		}
		rd, err := wal.NewReader(bytes.NewReader(data), testSegSize, start)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; ; n++ {
			if n > len(data)/8+1 {
				t.Fatalf("%d records from %d bytes", n, len(data))
			}
			r, err := rd.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !errors.Is(err, wal.ErrCorruptRecord) && !errors.Is(err, wal.ErrTruncated) && !errors.Is(err, wal.ErrEndOfWAL) {
					t.Fatalf("error wraps no sentinel: %v", err)
				}
				if _, again := rd.Next(); !errors.Is(again, err) {
					t.Fatalf("after %v the next call gave %v", err, again)
				}
				return
			}
			if r.EndLSN <= r.LSN || uint64(len(r.MainData)) > uint64(r.TotLen) {
				t.Fatalf("record %+v", r)
			}
		}
	})
}

// FuzzDecodeCommit decodes arbitrary commit and abort bodies: no panic, and no
// array longer than the bytes could hold.
func FuzzDecodeCommit(f *testing.F) {
	for _, s := range loadSegments(f) {
		rd, err := wal.NewReader(bytes.NewReader(s.data), testSegSize, startOf(f, s.name))
		if err != nil {
			f.Fatal(err)
		}
		for {
			r, err := rd.Next()
			if err != nil {
				break
			}
			if r.Xact != nil {
				f.Add(r.Info, r.Xid, bytes.Clone(r.MainData))
			}
		}
	}
	f.Fuzz(func(t *testing.T, info uint8, xid uint32, data []byte) {
		x, err := wal.DecodeXact(info, xid, data)
		if err != nil {
			return
		}
		if 12*len(x.DroppedRels)+4*len(x.Subxacts)+16*x.Invals+12*x.DroppedStats > len(data) {
			t.Fatalf("decoded more than %d bytes hold: %+v", len(data), x)
		}
	})
}

// FuzzDecodeChange decodes arbitrary heap, smgr and dbase bodies: no panic, and
// no array longer than the bytes could hold.
func FuzzDecodeChange(f *testing.F) {
	f.Add(uint8(wal.RmgrHeap), uint8(0x30), 15, []byte{5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0})
	f.Add(uint8(wal.RmgrDbase), uint8(0x20), 15, []byte{5, 0, 0, 0, 1, 0, 0, 0, 127, 6, 0, 0})
	f.Add(uint8(wal.RmgrSmgr), uint8(0x10), 14, make([]byte, 16))
	f.Add(uint8(wal.RmgrHeap), uint8(0x10), 15, make([]byte, 8))
	f.Fuzz(func(t *testing.T, rmgr, info uint8, major int, data []byte) {
		rec := wal.Record{RmgrID: rmgr, Info: info, MainData: data}
		if len(data) > 0 && data[0]&1 != 0 {
			rec.Blocks = []wal.BlockRef{{ID: 0}}
		}
		c, err := wal.DecodeChange(&rec, major)
		if err != nil {
			return
		}
		if 4*(len(c.RelOIDs)+len(c.Tablespaces)) > len(data) {
			t.Fatalf("decoded more than %d bytes hold: %+v", len(data), c)
		}
	})
}
