// Package waltest makes WAL segments and data directories that look like PostgreSQL
// 15's, for unit tests and benchmarks that must not need a server.
package waltest

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/pg"
)

// SegSize is the default WAL segment size.
const SegSize = 16 << 20

// Segment builds a 16 MiB WAL segment of cluster sysid: a long page header, then data
// that compresses roughly like real WAL (a quarter of each 4 KiB noise, the rest
// structure). seed varies the content.
func Segment(sysid uint64, seed int64) []byte {
	b := make([]byte, SegSize)
	rng := rand.New(rand.NewSource(seed))
	for i := 4096; i < len(b); i += 4096 {
		rng.Read(b[i : i+1024])
		for j := i + 1024; j < i+4096; j += 8 {
			binary.LittleEndian.PutUint64(b[j:], uint64(j/64))
		}
	}
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110) // PostgreSQL 15's XLOG_PAGE_MAGIC
	le.PutUint16(b[2:], 0x0002) // XLP_LONG_HEADER
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[24:], sysid)
	le.PutUint32(b[32:], SegSize)
	le.PutUint32(b[36:], 8192)
	return b
}

// DataDir makes a directory holding what pgb reads of a data directory: the leading
// fields of global/pg_control, PG_VERSION, and an empty pg_wal.
func DataDir(t testing.TB, sysid uint64) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"global", "pg_wal"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl[0:], sysid)
	binary.LittleEndian.PutUint32(ctl[8:], 1300)
	binary.LittleEndian.PutUint32(ctl[12:], 202209061)
	if err := pg.SealControl(ctl); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "global", "pg_control"), ctl)
	write(t, filepath.Join(dir, "PG_VERSION"), []byte("15\n"))
	return dir
}

// WriteWAL writes data as dir/pg_wal/name and returns its path.
func WriteWAL(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	Stamped(name, data)
	p := filepath.Join(dir, "pg_wal", name)
	write(t, p, data)
	return p
}

func write(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Stamped writes into a segment made by Segment (whose page address is zero) the address
// its name says, as PostgreSQL's header would hold, and returns it: wal-push refuses a
// segment whose first page is for another position. WriteWAL stamps what it writes, in
// place; a test comparing with a fresh Segment stamps that one too.
func Stamped(name string, data []byte) []byte {
	if len(name) < 24 || len(data) < 40 || binary.LittleEndian.Uint64(data[8:]) != 0 {
		return data
	}
	var log, seg uint64
	if _, err := fmt.Sscanf(name[8:24], "%08X%08X", &log, &seg); err != nil {
		return data
	}
	segSize := uint64(binary.LittleEndian.Uint32(data[32:]))
	if segSize == 0 || segSize > 1<<30 {
		return data
	}
	binary.LittleEndian.PutUint64(data[8:], (log*(0x100000000/segSize)+seg)*segSize)
	return data
}
