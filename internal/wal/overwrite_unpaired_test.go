package wal_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/wal"
)

// An XLOG_OVERWRITE_CONTRECORD that follows no abandoned record, in the middle of a
// continuous read: PostgreSQL's recovery stops there (FATAL "mismatching overwritten
// LSN", xlogrecovery.c), so the WAL is not replayable; the reader must say so.
func TestReaderRefusesAnOverwriteRecordThatFollowsNoAbandonedRecord(t *testing.T) {
	segs := loadSegments(t)
	data := concat(segs)
	start := startOf(t, segs[0].name)
	_, recs, err := readAll(t, data, start)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for i := 10; i < len(recs); i++ {
		r := recs[i]
		if uint64(r.LSN)/pageSize != uint64(r.EndLSN-1)/pageSize || r.TotLen < 26+8 || r.TotLen > 26+255 {
			continue
		}
		off := uint64(r.LSN) - uint64(start)
		rec := data[off : off+uint64(r.TotLen)]
		for j := 24; j < len(rec); j++ {
			rec[j] = 0
		}
		rec[4], rec[5], rec[6], rec[7] = 0, 0, 0, 0 // xl_xid
		rec[16], rec[17] = 0xD0, 0                  // XLOG_OVERWRITE_CONTRECORD, RM_XLOG_ID
		rec[24], rec[25] = 255, byte(r.TotLen-26)
		le.PutUint64(rec[26:], uint64(recs[i-1].LSN)) // names a record that was not abandoned
		le.PutUint32(rec[20:], crc32c.Checksum(append(append([]byte{}, rec[24:]...), rec[:20]...)))
		_, got, err := readAll(t, data, start)
		if !errors.Is(err, wal.ErrCorruptRecord) {
			t.Fatalf("an XLOG_OVERWRITE_CONTRECORD at %s after no abandoned record: read %d records, err %v; want corrupt WAL", r.LSN, len(got), err)
		}
		return
	}
	t.Skip("no suitable record")
}
