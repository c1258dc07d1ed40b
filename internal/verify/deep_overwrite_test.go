package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A crash cut the big record that runs into the last segment, after that segment's
// first page was written; recovery wrote XLOG_OVERWRITE_CONTRECORD on its second page
// and a backup started after that, in the same segment. The archive is sound: the
// reader that starts at the backup's segment must skip the abandoned continuation as
// PostgreSQL's XLogFindNextRecord does.
func TestDeepVerifyPassesABackupStartingAfterWALACrashOverwrote(t *testing.T) {
	w := loadRealWAL(t)
	le := binary.LittleEndian
	last := bytes.Clone(w.data[2])
	if le.Uint16(last[2:])&1 == 0 || le.Uint32(last[16:]) <= 8192-40 {
		t.Skip("the last test segment does not start inside a record longer than its first page")
	}
	start := (w.first + 2) * segSize
	p := last[8192:]
	clear(p)
	le.PutUint16(p[0:], le.Uint16(last[0:]))
	le.PutUint16(p[2:], 0x0008) // XLP_FIRST_IS_OVERWRITE_CONTRECORD
	le.PutUint32(p[4:], le.Uint32(last[4:]))
	le.PutUint64(p[8:], start+8192)
	rec := p[24:]
	const totLen = 24 + 2 + 16
	recs := w.records(t)
	var abandoned, before uint64
	for i, r := range recs {
		if uint64(r.LSN) < start && uint64(r.EndLSN) > start {
			abandoned, before = uint64(r.LSN), uint64(recs[i-1].LSN)
		}
	}
	le.PutUint32(rec[0:], totLen)
	le.PutUint64(rec[8:], before)
	rec[16], rec[17], rec[24], rec[25] = 0xD0, 0, 255, 16
	le.PutUint64(rec[26:], abandoned)
	le.PutUint32(rec[20:], crc32c.Checksum(append(append([]byte{}, rec[24:totLen]...), rec[:20]...)))
	// Then a segment switch, so the segment is whole as PostgreSQL archives it.
	sw := p[24+48:]
	le.PutUint32(sw[0:], 24)
	le.PutUint64(sw[8:], start+8192+24)
	sw[16], sw[17] = 0x40, 0 // XLOG_SWITCH, RM_XLOG_ID
	le.PutUint32(sw[20:], crc32c.Checksum(sw[:20]))

	f := &fixture{t: t, st: mem.New(), ctx: context.Background()}
	f.rp = repo.New(f.st, repo.Options{})
	if _, err := f.rp.EnsureIdentity(f.ctx, repo.Identity{Format: repo.FormatVersion, SystemID: repo.SystemID(w.sysID), PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	f.putSegment(1, w.first, w.data[0])
	f.putSegment(1, w.first+1, w.data[1])
	f.putSegment(1, w.first+2, last)
	b := start + 8192 + 24 + 48 + 24
	f.putBackupEdited("20261202T000000Z", b, b+0x100, map[int][]tfile{1: {{"PG_VERSION", "15\n"}}}, func(m *repo.Manifest) {
		m.SystemID = repo.SystemID(w.sysID)
	})
	if _, ps := run(t, f.st, Options{Deep: true}); len(ps) != 0 {
		t.Fatalf("verify --deep on a sound archive: %v", ps)
	}
}
