package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/wal/waldumptest"
)

// testdata/pg15 holds three consecutive 1 MiB segments archived from a
// PostgreSQL 15 cluster and pg_waldump's output on them, both zstd-compressed;
// integration.TestArchivedWALCommitsAndRestorePointsMatchPgWaldump makes them
// (PGB_WAL_TESTDATA). The workload: commits, an abort, a two-phase commit and
// a two-phase abort, subtransactions, restore points "before_drop" and
// "the end", DROP TABLE, CHECKPOINT, and a 1.5 MiB logical message spanning
// segments.
const testSegSize = 1 << 20

type segment struct {
	name string
	data []byte
}

func loadSegments(t testing.TB) []segment {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "pg15", "0*.zst"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no test segments: %v", err)
	}
	sort.Strings(paths)
	var segs []segment
	for _, p := range paths {
		segs = append(segs, segment{strings.TrimSuffix(filepath.Base(p), ".zst"), waldumptest.Unzstd(t, p)})
	}
	return segs
}

func startOf(t testing.TB, name string) wal.LSN {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	return wal.LSN(f.SegmentNumber(testSegSize) * testSegSize)
}

func concat(segs []segment) []byte {
	var b []byte
	for _, s := range segs {
		b = append(b, s.data...)
	}
	return b
}

// readAll reads every record; it returns the records before the first error
// and that error (nil at a clean end).
func readAll(t testing.TB, data []byte, start wal.LSN) (*wal.Reader, []wal.Record, error) {
	t.Helper()
	rd, err := wal.NewReader(bytes.NewReader(data), testSegSize, start)
	if err != nil {
		t.Fatal(err)
	}
	var recs []wal.Record
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd, recs, nil
		}
		if err != nil {
			return rd, recs, err
		}
		r.MainData, r.Blocks = nil, nil
		recs = append(recs, r)
	}
}

func TestReaderAgreesWithPgWaldumpOnArchivedSegments(t *testing.T) {
	segs := loadSegments(t)
	entries, err := waldumptest.Parse(string(waldumptest.Unzstd(t, filepath.Join("testdata", "pg15", "pg_waldump.txt.zst"))))
	if err != nil {
		t.Fatal(err)
	}
	rd, recs, err := readAll(t, concat(segs), startOf(t, segs[0].name))
	if err != nil {
		t.Fatal(err)
	}
	if cont := segs[0].data[2]&0x01 != 0; rd.SkippedContinuation() != cont {
		t.Errorf("the first page's XLP_FIRST_IS_CONTRECORD is %v, the reader's SkippedContinuation %v", cont, rd.SkippedContinuation())
	}
	if rd.PostgreSQLMajor() != 15 || rd.SystemID() == 0 {
		t.Errorf("major %d system id %d", rd.PostgreSQLMajor(), rd.SystemID())
	}
	s, err := waldumptest.Compare(entries, recs)
	if err != nil {
		t.Fatal(err)
	}
	if s.Commits == 0 || s.Aborts != 1 || s.CommitsPrepared != 1 || s.AbortsPrepared != 1 ||
		s.RestorePoints != 2 || s.Checkpoints == 0 || s.Subxacts != 2 || s.DroppedRels != 3 {
		t.Fatalf("unexpected summary %+v", s)
	}

	// The DROP TABLE commit keeps the dropped relation files.
	var drop *wal.Xact
	for _, r := range recs {
		if r.Xact != nil && len(r.Xact.DroppedRels) > 0 {
			drop = r.Xact
		}
	}
	if drop == nil || drop.Database == 0 || drop.DroppedRels[0].Database != drop.Database || drop.DroppedStats != 3 || drop.Invals == 0 {
		t.Fatalf("DROP TABLE commit decoded as %+v", drop)
	}
}

func TestReaderSkipsAContinuationAtTheStart(t *testing.T) {
	segs := loadSegments(t)
	_, all, err := readAll(t, concat(segs), startOf(t, segs[0].name))
	if err != nil {
		t.Fatal(err)
	}
	last := segs[len(segs)-1]
	rd, recs, err := readAll(t, last.data, startOf(t, last.name))
	if err != nil {
		t.Fatal(err)
	}
	if !rd.SkippedContinuation() {
		t.Fatalf("%s starts inside the big logical message; the reader did not say it skipped it", last.name)
	}
	if len(recs) == 0 {
		t.Fatal("no records after the continuation")
	}
	tail := all[len(all)-len(recs):]
	for i := range recs {
		if recs[i].LSN != tail[i].LSN || recs[i].Prev != tail[i].Prev {
			t.Fatalf("record %d: %s, reading from the start gives %s", i, recs[i].LSN, tail[i].LSN)
		}
	}
}

// Damaged input: every case ends in an error wrapping the right sentinel and
// naming an LSN, after only the records before the damage.
func TestReaderRefusesDamagedWAL(t *testing.T) {
	segs := loadSegments(t)
	seg := segs[1] // the busiest segment; its last record continues into the next
	start := startOf(t, seg.name)
	_, good, err := readAll(t, seg.data, start)
	if !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("reading %s alone: %v, want ErrTruncated for its last record", seg.name, err)
	}
	// A record in the middle of the segment that does not cross a page.
	var victim wal.Record
	for _, r := range good[len(good)/2:] {
		if uint64(r.LSN)/8192 == uint64(r.EndLSN-1)/8192 && r.TotLen > 40 {
			victim = r
			break
		}
	}
	off := func(l wal.LSN) int { return int(uint64(l) - uint64(start)) }
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(seg.data)) }
	le := binary.LittleEndian

	for _, tc := range []struct {
		name string
		data []byte
		want error
		at   string // an LSN the message must name
	}{
		{"cut inside a page", seg.data[:100000], wal.ErrTruncated, ""},
		{"cut at a page boundary inside a record", mutate(func(b []byte) []byte {
			// the first record that crosses a page, cut at that page
			for _, r := range good {
				if uint64(r.LSN)/8192 != uint64(r.EndLSN-1)/8192 {
					return b[:(off(r.LSN)/8192+1)*8192]
				}
			}
			t.Fatal("no record crosses a page")
			return nil
		}), wal.ErrTruncated, ""},
		{"a flipped byte in a record body", mutate(func(b []byte) []byte {
			b[off(victim.LSN)+30] ^= 0x40
			return b
		}), wal.ErrCorruptRecord, victim.LSN.String()},
		{"a forged 1 GiB record length", mutate(func(b []byte) []byte {
			le.PutUint32(b[off(victim.LSN):], 0x3fffff00)
			return b
		}), wal.ErrCorruptRecord, ""},
		{"a record length beyond the maximum", mutate(func(b []byte) []byte {
			le.PutUint32(b[off(victim.LSN):], 0xffffffff)
			return b
		}), wal.ErrCorruptRecord, victim.LSN.String()},
		{"a broken xl_prev link", mutate(func(b []byte) []byte {
			le.PutUint64(b[off(victim.LSN)+8:], uint64(victim.Prev)+8)
			return b
		}), wal.ErrCorruptRecord, victim.LSN.String()},
		{"a page from elsewhere", mutate(func(b []byte) []byte {
			p := (off(victim.LSN)/8192 + 1) * 8192
			le.PutUint64(b[p+8:], le.Uint64(b[p+8:])+8192)
			return b
		}), wal.ErrCorruptRecord, ""},
		{"zeros where a record should be", mutate(func(b []byte) []byte {
			clear(b[off(victim.LSN):])
			return b
		}), wal.ErrEndOfWAL, victim.LSN.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, recs, err := readAll(t, tc.data, start)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v after %d records, want %v", err, len(recs), tc.want)
			}
			if tc.at != "" && !strings.Contains(err.Error(), tc.at) {
				t.Fatalf("error %q does not name %s", err, tc.at)
			}
			for i, r := range recs {
				if r.LSN != good[i].LSN {
					t.Fatalf("record %d at %s, undamaged %s", i, r.LSN, good[i].LSN)
				}
			}
		})
	}
}

func TestNewReaderRefusesBadGeometry(t *testing.T) {
	for _, tc := range []struct {
		seg   uint64
		start wal.LSN
	}{{3 << 20, 0}, {1 << 19, 0}, {1 << 20, 8192}} {
		if _, err := wal.NewReader(bytes.NewReader(nil), tc.seg, tc.start); err == nil {
			t.Errorf("NewReader(%d, %s) accepted", tc.seg, tc.start)
		}
	}
	seg := loadSegments(t)[0]
	rd, err := wal.NewReader(bytes.NewReader(seg.data), 2<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); !errors.Is(err, wal.ErrCorruptRecord) {
		t.Fatalf("a 1 MiB segment read as 2 MiB: %v", err)
	}
}

func BenchmarkReadSegment(b *testing.B) {
	segs := loadSegments(b)
	data := concat(segs)
	start := startOf(b, segs[0].name)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		rd, err := wal.NewReader(bytes.NewReader(data), testSegSize, start)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := rd.Next(); err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

// A record header claiming nearly 1 GiB costs only the bytes that actually
// arrive: the reader allocates as the record's pages come in, not up front.
func TestForgedRecordLengthAllocatesOnlyWhatArrives(t *testing.T) {
	seg := loadSegments(t)[1]
	start := startOf(t, seg.name)
	rd, err := wal.NewReader(bytes.NewReader(seg.data), testSegSize, start)
	if err != nil {
		t.Fatal(err)
	}
	first, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	// Forge the second record's length.
	data := bytes.Clone(seg.data)
	at := int(uint64(first.EndLSN)-uint64(start)+7) &^ 7
	binary.LittleEndian.PutUint32(data[at:], 0x3fffff00)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err = readAll(t, data, start)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, wal.ErrCorruptRecord) {
		t.Fatalf("got %v, want ErrCorruptRecord", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("reading a 1 MiB segment with a forged 1 GiB record allocated %d MiB", grew>>20)
	}
}
