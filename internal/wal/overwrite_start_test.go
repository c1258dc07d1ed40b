package wal_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/wal"
)

// A reader that starts at a segment whose first page continues a record that a crash
// later abandoned (recovery wrote XLOG_OVERWRITE_CONTRECORD at the segment's second
// page) must find the overwrite record, as PostgreSQL's XLogFindNextRecord does: a page
// without XLP_FIRST_IS_CONTRECORD ends the continuation being skipped.
func TestReaderStartingInsideARecordACrashAbandonedFindsTheOverwrite(t *testing.T) {
	segs := loadSegments(t)
	le := binary.LittleEndian
	for _, s := range segs {
		p0 := s.data
		if le.Uint16(p0[2:])&0x0001 == 0 || le.Uint32(p0[16:]) <= 8192-40 {
			continue // first page does not continue a record past itself
		}
		data := append([]byte(nil), s.data...)
		start := startOf(t, s.name)
		page := uint64(start) + pageSize
		p := data[pageSize:]
		clear(p) // the rest of the segment: never written after recovery
		le.PutUint16(p[0:], le.Uint16(data[0:]))
		le.PutUint16(p[2:], 0x0008) // XLP_FIRST_IS_OVERWRITE_CONTRECORD
		le.PutUint32(p[4:], le.Uint32(data[4:]))
		le.PutUint64(p[8:], page)
		rec := p[24:]
		const totLen = 24 + 2 + 16
		le.PutUint32(rec[0:], totLen)
		le.PutUint64(rec[8:], uint64(start)-4096) // the record before the abandoned one (not in the input)
		rec[16], rec[17] = 0xD0, 0
		rec[24], rec[25] = 255, 16
		le.PutUint64(rec[26:], uint64(start)-2048) // the abandoned record, in the previous segment
		le.PutUint32(rec[20:], crc32c.Checksum(append(append([]byte{}, rec[24:totLen]...), rec[:20]...)))
		_, recs, err := readAll(t, data, start)
		if len(recs) == 0 || recs[0].Info != 0xD0 {
			t.Fatalf("reading from %s: records %v, err %v; want the XLOG_OVERWRITE_CONTRECORD at %#x first, then the end of WAL", s.name, recs, err, page+24)
		}
		if !errors.Is(err, wal.ErrEndOfWAL) {
			t.Fatalf("after the overwrite record: %v, want the end of written WAL", err)
		}
		return
	}
	t.Skip("no test segment starts with a continuation longer than its first page")
}
