package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// realWAL is three consecutive 1 MiB segments archived from PostgreSQL 15
// (internal/wal/testdata/pg15: a record larger than a segment runs across them).
type realWAL struct {
	names []string
	data  [][]byte
	first uint64 // segment number of names[0]
	sysID uint64
}

func loadRealWAL(t testing.TB) *realWAL {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "wal", "testdata", "pg15", "0*.zst"))
	if err != nil || len(paths) < 3 {
		t.Fatalf("test segments: %v %v", paths, err)
	}
	sort.Strings(paths)
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	w := &realWAL{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seg, err := dec.DecodeAll(b, nil)
		if err != nil || len(seg) != segSize {
			t.Fatalf("%s: %d bytes, %v", p, len(seg), err)
		}
		w.names = append(w.names, strings.TrimSuffix(filepath.Base(p), ".zst"))
		w.data = append(w.data, seg)
	}
	f, err := wal.Parse(w.names[0])
	if err != nil {
		t.Fatal(err)
	}
	w.first = f.SegmentNumber(segSize)
	h, err := wal.ParseSegmentHeader(w.data[0])
	if err != nil {
		t.Fatal(err)
	}
	w.sysID = h.SystemID
	return w
}

// records reads the segments as one stream: every record, as the reader sees them.
func (w *realWAL) records(t testing.TB) []wal.Record {
	t.Helper()
	rd, err := wal.NewReader(bytes.NewReader(bytes.Join(w.data, nil)), segSize, wal.LSN(w.first*segSize))
	if err != nil {
		t.Fatal(err)
	}
	var recs []wal.Record
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatalf("the test segments do not decode: %v", err)
		}
		r.MainData, r.Blocks = nil, nil
		recs = append(recs, r)
	}
}

// key is the repository key of test segment i.
func (w *realWAL) key(i int) string {
	return repo.WALKey(wal.File{Name: w.names[i], Kind: wal.Segment, Timeline: 1})
}

// at is the segment and offset holding lsn.
func (w *realWAL) at(lsn wal.LSN) (seg, off int) {
	return int(uint64(lsn)/segSize - w.first), int(uint64(lsn) % segSize)
}

// deepFixture is a repository holding the real segments and a backup starting in the
// first one; damage changes a segment's bytes before it is pushed, so that its
// envelope is sound and only the record decoder can see what is wrong.
func deepFixture(t testing.TB, w *realWAL, damage func(seg int, b []byte) []byte) *fixture {
	t.Helper()
	f := &fixture{t: t, st: mem.New(), ctx: context.Background()}
	f.rp = repo.New(f.st, repo.Options{})
	if _, err := f.rp.EnsureIdentity(f.ctx, repo.Identity{Format: repo.FormatVersion, SystemID: repo.SystemID(w.sysID),
		PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for i, b := range w.data {
		if b = damage(i, bytes.Clone(b)); b != nil {
			f.putSegment(1, w.first+uint64(i), b)
		}
	}
	start := w.first*segSize + 0x28
	f.putBackupEdited("20261202T000000Z", start, start+0x1000, map[int][]tfile{1: {{"PG_VERSION", "15\n"}}}, func(m *repo.Manifest) {
		m.SystemID = repo.SystemID(w.sysID)
	})
	return f
}

func undamaged(_ int, b []byte) []byte { return b }

// reseal recomputes the CRC of the record at off in b, which must lie in one page.
func reseal(b []byte, off int) {
	le := binary.LittleEndian
	n := int(le.Uint32(b[off:]))
	h := crc32c.New()
	_, _ = h.Write(b[off+24 : off+n])
	_, _ = h.Write(b[off : off+20])
	le.PutUint32(b[off+20:], h.Sum32())
}

// onOnePage picks a record in the middle of those that begin in segment seg and lie
// in one page.
func onOnePage(t *testing.T, w *realWAL, recs []wal.Record, seg int) wal.Record {
	t.Helper()
	var in []wal.Record
	for _, r := range recs {
		if s, _ := w.at(r.LSN); s == seg && uint64(r.LSN)/8192 == uint64(r.EndLSN-1)/8192 && r.TotLen > 40 {
			in = append(in, r)
		}
	}
	if len(in) == 0 {
		t.Fatalf("no record on one page in %s", w.names[seg])
	}
	return in[len(in)/2]
}

func TestDeepVerifyDecodesEveryRecordOfACleanArchive(t *testing.T) {
	w := loadRealWAL(t)
	f := deepFixture(t, w, undamaged)
	rep, ps := run(t, f.st, Options{Deep: true})
	if len(ps) != 0 {
		t.Fatalf("problems on a clean archive: %v", ps)
	}
	if want := len(w.records(t)); rep.WALRecords != int64(want) || rep.WALDecoded != 3*segSize || rep.WALObjects != 3 || rep.WALSegments != 3 {
		t.Fatalf("report %+v, want %d records and %d bytes decoded from 3 segments", rep, want, 3*segSize)
	}
	if rep, _ := run(t, f.st, Options{WAL: true}); rep.WALRecords != 0 || rep.WALDecoded != 0 {
		t.Fatalf("without --deep: report %+v", rep)
	}
}

func TestDeepVerifyNamesARecordWhoseBodyByteIsFlipped(t *testing.T) {
	w := loadRealWAL(t)
	victim := onOnePage(t, w, w.records(t), 1)
	f := deepFixture(t, w, func(seg int, b []byte) []byte {
		if _, off := w.at(victim.LSN); seg == 1 {
			b[off+int(victim.TotLen)-1] ^= 0x40
		}
		return b
	})
	if _, ps := run(t, f.st, Options{WAL: true}); len(ps) != 0 {
		t.Fatalf("the envelope and headers are sound, yet verify --wal says %v", ps)
	}
	rep, ps := run(t, f.st, Options{Deep: true})
	wantOne(t, ps, w.key(1), "at "+victim.LSN.String()+": record CRC")
	// Decoding goes on with the next segment: its records are counted.
	if rep.WALRecords == 0 || rep.WALDecoded < 2*segSize {
		t.Fatalf("report %+v", rep)
	}
}

func TestDeepVerifyNamesABrokenLinkAcrossASegmentBoundary(t *testing.T) {
	// A segment from another history of the same timeline (another cluster's, or one
	// restored and run twice): every record sound, but its first one does not follow
	// the last one of the segment before. Only decoding across the boundary sees it.
	w := loadRealWAL(t)
	recs := w.records(t)
	var victim wal.Record
	for _, r := range recs {
		s, _ := w.at(r.LSN)
		if p, _ := w.at(r.Prev); s == 2 && p == 1 && uint64(r.LSN)/8192 == uint64(r.EndLSN-1)/8192 {
			victim = r
			break
		}
	}
	if victim.LSN == 0 {
		t.Fatal("no record on one page links across into the last segment")
	}
	f := deepFixture(t, w, func(seg int, b []byte) []byte {
		if _, off := w.at(victim.LSN); seg == 2 {
			binary.LittleEndian.PutUint64(b[off+8:], uint64(victim.Prev)-8)
			reseal(b, off)
		}
		return b
	})
	if _, ps := run(t, f.st, Options{WAL: true}); len(ps) != 0 {
		t.Fatalf("verify --wal: %v", ps)
	}
	_, ps := run(t, f.st, Options{Deep: true})
	wantOne(t, ps, w.key(2), "at "+victim.LSN.String()+": record's xl_prev")
}

func TestDeepVerifyJudgesTheEndOfWrittenWALByWhereItIs(t *testing.T) {
	w := loadRealWAL(t)
	recs := w.records(t)
	zeroFrom := func(seg int) (wal.Record, func(int, []byte) []byte) {
		r := onOnePage(t, w, recs, seg)
		return r, func(s int, b []byte) []byte {
			if _, off := w.at(r.LSN); s == seg {
				clear(b[off:])
			}
			return b
		}
	}
	// PostgreSQL archives a segment only once it is written to its end (or to a
	// segment switch, whose padding the reader skips): zeros where a record should
	// begin are lost records, in the newest segment as in any other.
	for _, seg := range []int{1, 2} {
		r, dmg := zeroFrom(seg)
		_, ps := run(t, deepFixture(t, w, dmg).st, Options{Deep: true})
		wantOne(t, ps, w.key(seg), "end of written WAL at "+r.LSN.String())
	}
}

func TestDeepVerifyReportsAMissingOrDamagedSegmentOnce(t *testing.T) {
	// The record larger than a segment runs from the first segment into the last
	// through the middle one: without it the first reader ends inside that record and
	// the next starts inside it. Neither is a problem of its own.
	w := loadRealWAL(t)
	for _, tc := range []struct {
		name   string
		damage func(int, []byte) []byte
		want   string
	}{
		{"missing", func(s int, b []byte) []byte {
			if s == 1 {
				return nil
			}
			return b
		}, "missing from the archive: WAL segment " + w.names[1]},
		{"header", func(s int, b []byte) []byte {
			if s == 1 {
				binary.LittleEndian.PutUint64(b[24:], w.sysID+1)
			}
			return b
		}, "system identifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := deepFixture(t, w, tc.damage)
			rep, ps := run(t, f.st, Options{Deep: true})
			wantOne(t, ps, w.key(1), tc.want)
			if rep.WALDecoded != 2*segSize {
				t.Fatalf("report %+v: the segments around it are not decoded", rep)
			}
		})
	}
}

// BenchmarkVerifyDeep measures verify --deep against verify --wal on the real segments
// in a mem store (lz4): SetBytes is the WAL decoded.
func BenchmarkVerifyDeep(b *testing.B) {
	w := loadRealWAL(b)
	f := deepFixture(b, w, undamaged)
	for _, deep := range []bool{false, true} {
		name := map[bool]string{false: "wal", true: "deep"}[deep]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(w.data)) * segSize)
			for range b.N {
				rep, err := Run(context.Background(), repo.New(f.st, repo.Options{}), Options{WAL: true, Deep: deep, Concurrency: 1})
				if err != nil || !rep.OK() {
					b.Fatalf("%v %+v", err, rep)
				}
			}
		})
	}
}
