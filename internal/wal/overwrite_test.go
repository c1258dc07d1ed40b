package wal_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/wal"
)

const pageSize = 8192

// crashCut is the test segments as PostgreSQL 14+ leaves them when a crash cut a
// record that spans pages and recovery wrote over where its continuation would
// be: the WAL up to the page where the record goes on, then that page marked
// XLP_FIRST_IS_OVERWRITE_CONTRECORD and beginning with an XLOG_OVERWRITE_CONTRECORD
// record (naming overwritten) linked to the record before the abandoned one, then
// zeros. It returns the bytes, the records the reader must give, and the index of
// the abandoned record.
func crashCut(t *testing.T, overwritten func(abandoned wal.LSN) wal.LSN) ([]byte, []wal.Record, int) {
	t.Helper()
	segs := loadSegments(t)
	data := concat(segs)
	start := startOf(t, segs[0].name)
	_, recs, err := readAll(t, data, start)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(recs); i++ {
		r := recs[i]
		page := (uint64(r.LSN)/pageSize + 1) * pageSize
		if uint64(r.LSN)+uint64(r.TotLen) <= page || page%testSegSize == 0 {
			continue // does not cross a page, or crosses into a new segment's long header
		}
		off := page - uint64(start)
		out := make([]byte, len(data))
		copy(out, data[:off])
		p := out[off:]
		le := binary.LittleEndian
		le.PutUint16(p[0:], le.Uint16(data[0:]))     // xlp_magic
		le.PutUint16(p[2:], 0x0008)                  // XLP_FIRST_IS_OVERWRITE_CONTRECORD
		le.PutUint32(p[4:], le.Uint32(data[4:]))     // xlp_tli
		le.PutUint64(p[8:], page)                    // xlp_pageaddr
		rec := p[24:]                                // the short header is MAXALIGNed to 24 bytes
		const totLen = 24 + 2 + 16                   // header, XLR_BLOCK_ID_DATA_SHORT + length, xl_overwrite_contrecord
		le.PutUint32(rec[0:], totLen)                // xl_tot_len
		le.PutUint64(rec[8:], uint64(recs[i-1].LSN)) // xl_prev: the record before the abandoned one
		rec[16] = 0xD0                               // XLOG_OVERWRITE_CONTRECORD
		rec[17] = 0                                  // RM_XLOG_ID
		rec[24], rec[25] = 255, 16                   // XLR_BLOCK_ID_DATA_SHORT, 16 bytes of main data
		le.PutUint64(rec[26:], uint64(overwritten(r.LSN)))
		le.PutUint64(rec[34:], 0) // overwrite_time
		crc := crc32c.Checksum(append(append([]byte{}, rec[24:totLen]...), rec[:20]...))
		le.PutUint32(rec[20:], crc)
		want := append([]wal.Record{}, recs[:i]...)
		want = append(want, wal.Record{LSN: wal.LSN(page + 24), Prev: recs[i-1].LSN, RmgrID: 0, Info: 0xD0})
		return out, want, i
	}
	t.Fatal("the test segments hold no record that crosses a page inside a segment")
	return nil, nil, 0
}

func TestReaderFollowsWALOverwrittenAfterACrashCutARecord(t *testing.T) {
	data, want, abandoned := crashCut(t, func(a wal.LSN) wal.LSN { return a })
	_, recs, err := readAll(t, data, startOf(t, loadSegments(t)[0].name))
	if !errors.Is(err, wal.ErrEndOfWAL) {
		t.Fatalf("reading WAL overwritten after a crash: %v, want the end of written WAL after the overwrite record", err)
	}
	if len(recs) != len(want) {
		t.Fatalf("read %d records, want %d (the %d before the abandoned one and the overwrite record)", len(recs), len(want), abandoned)
	}
	for i, w := range want {
		if recs[i].LSN != w.LSN || recs[i].Prev != w.Prev || recs[i].RmgrID != w.RmgrID || recs[i].Info != w.Info {
			t.Fatalf("record %d: LSN %s prev %s rmgr %d info %#x, want LSN %s prev %s rmgr %d info %#x",
				i, recs[i].LSN, recs[i].Prev, recs[i].RmgrID, recs[i].Info, w.LSN, w.Prev, w.RmgrID, w.Info)
		}
	}
}

func TestReaderRefusesAnOverwriteThatNamesAnotherRecord(t *testing.T) {
	data, _, _ := crashCut(t, func(a wal.LSN) wal.LSN { return a + 8 })
	_, _, err := readAll(t, data, startOf(t, loadSegments(t)[0].name))
	if !errors.Is(err, wal.ErrCorruptRecord) {
		t.Fatalf("an overwrite record naming another record: %v, want corrupt WAL", err)
	}
}
