package backup

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// relPage is a valid page with pd_lsn lsn.
func relPage(lsn uint64) []byte {
	p := bytes.Repeat([]byte{7}, pagemap.BlockSize)
	ne := binary.NativeEndian
	ne.PutUint32(p[0:], uint32(lsn>>32))
	ne.PutUint32(p[4:], uint32(lsn))
	ne.PutUint16(p[8:], 0)
	ne.PutUint16(p[10:], 0)
	ne.PutUint16(p[12:], 40)
	ne.PutUint16(p[14:], 4096)
	ne.PutUint16(p[16:], pagemap.BlockSize)
	ne.PutUint16(p[18:], pagemap.BlockSize|4)
	return p
}

// judge stores what changed since the base and nothing else: a file with the base's
// size and an old modification time is not read; a relation file's pages at or past the
// base's start are stored, with every block beyond the base's end of it; a database
// directory created since the base has every file stored whole; --checksum-delta reads
// everything and finds an unchanged non-relation file by its checksum.
func TestJudgeStoresWhatChangedSinceTheBase(t *testing.T) {
	const since = 0x5000000
	dir := t.TempDir()
	baseStart := time.Now().Add(-time.Hour)
	old := baseStart.Add(-time.Hour)
	write := func(rel string, data []byte, mtime time.Time) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	cat := func(pages ...[]byte) []byte { return bytes.Join(pages, nil) }
	b := &base{sum: &repo.Summary{StartLSN: wal.LSN(since), StartTime: baseStart}, files: map[string]baseFile{}}
	inBase := func(rel string, size int64, mtime time.Time, crc string) {
		b.files[rel] = baseFile{size: size, mtime: mtime.UTC(), crc: crc}
	}
	// Database 5 existed in the base; database 6's PG_VERSION is new.
	write("base/5/PG_VERSION", []byte("15\n"), old)
	inBase("base/5/PG_VERSION", 3, old, "00000000")
	write("base/6/PG_VERSION", []byte("15\n"), time.Now())
	inBase("base/6/PG_VERSION", 3, old, "00000000")
	// 100: untouched since before the base. 200: two pages written since, one block
	// more (a third of it: more than half would be stored whole).
	untouched := cat(relPage(1), relPage(2))
	write("base/5/100", untouched, old)
	inBase("base/5/100", int64(len(untouched)), old, "00000000")
	write("base/5/200", cat(relPage(1), relPage(since), relPage(2), relPage(3), relPage(since+8), relPage(4), relPage(5), relPage(6), relPage(7)), time.Now())
	inBase("base/5/200", 8*pagemap.BlockSize, old, "00000000")
	// 300: rewritten, but no page newer than the base: the base's copy.
	write("base/5/300", cat(relPage(1), relPage(2)), time.Now())
	inBase("base/5/300", 2*pagemap.BlockSize, old, "00000000")
	// In database 6, created since the base: whole.
	write("base/6/100", cat(relPage(1), relPage(2)), time.Now())
	inBase("base/6/100", 2*pagemap.BlockSize, old, "00000000")
	// A non-relation file with the base's content but a new time.
	conf := []byte("shared_buffers = 128MB\n")
	write("postgresql.conf", conf, time.Now())
	inBase("postgresql.conf", int64(len(conf)), old, crc32c.Hex(crc32c.Checksum(conf)))
	// Not in the base.
	write("base/5/400", relPage(9), time.Now())

	var done atomic.Int64
	buf := make([]byte, 256<<10)
	judgeOf := func(in *increment, rel string) judgement {
		t.Helper()
		j, err := in.judge(entry{path: rel, abs: filepath.Join(dir, filepath.FromSlash(rel)), mode: 0o600}, os.Open, buf, nil, &done)
		if err != nil {
			t.Fatal(err)
		}
		if j.f != nil {
			_ = j.f.Close()
		}
		return j
	}
	in := newIncrement(b, false)
	for _, tc := range []struct {
		rel    string
		kind   kind
		blocks []uint32
	}{
		{"base/5/100", storeUnchanged, nil},
		{"base/5/200", storePages, []uint32{1, 4, 8}},
		{"base/5/300", storeUnchanged, nil},
		{"base/6/100", storeWhole, nil},
		{"postgresql.conf", storeWhole, nil},
		{"base/5/400", storeWhole, nil},
	} {
		j := judgeOf(in, tc.rel)
		var got []uint32
		j.pages.Blocks(func(b uint32) bool { got = append(got, b); return true })
		if j.kind != tc.kind || len(got) != len(tc.blocks) || (len(got) > 0 && !bytes.Equal(u32s(got), u32s(tc.blocks))) {
			t.Errorf("%s: kind %d blocks %v, want kind %d blocks %v", tc.rel, j.kind, got, tc.kind, tc.blocks)
		}
	}
	// --checksum-delta: the untouched file is read (and found unchanged by its pages),
	// the configuration file found unchanged by its checksum.
	cd := newIncrement(b, true)
	read := done.Load()
	if j := judgeOf(cd, "base/5/100"); j.kind != storeUnchanged || done.Load() == read {
		t.Errorf("--checksum-delta: base/5/100 judged %d without reading it", j.kind)
	}
	if j := judgeOf(cd, "postgresql.conf"); j.kind != storeUnchanged {
		t.Errorf("--checksum-delta: postgresql.conf with the base's content judged %d", j.kind)
	}
}

func u32s(v []uint32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.BigEndian.AppendUint32(out, x)
	}
	return out
}
