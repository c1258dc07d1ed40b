package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

const (
	sysID   = 7440292914373421110
	segSize = 1 << 20 // the smallest segment PostgreSQL allows: fast tests
)

// segment builds a WAL segment whose long page header says tli, segment no and sysID.
func segment(tli uint32, no uint64) []byte {
	b := make([]byte, segSize)
	for i := 4096; i < len(b); i += 4096 {
		b[i] = byte(no) ^ byte(i>>12)
	}
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002)
	le.PutUint32(b[4:], tli)
	le.PutUint64(b[8:], no*segSize)
	le.PutUint64(b[24:], sysID)
	le.PutUint32(b[32:], segSize)
	le.PutUint32(b[36:], 8192)
	return b
}

// fixture is a repository with a backup on timeline 1 (segments 2..3), WAL segments
// 1..8 of timeline 1, and a switch to timeline 2 at segment 6 with segments 6..9 there.
type fixture struct {
	t   testing.TB
	st  *mem.Store
	rp  *repo.Repo
	ctx context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, st: mem.New(), ctx: context.Background()}
	f.rp = repo.New(f.st, repo.Options{})
	if _, err := f.rp.EnsureIdentity(f.ctx, repo.Identity{Format: repo.FormatVersion, SystemID: sysID, PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for no := uint64(1); no <= 8; no++ {
		f.putSegment(1, no, segment(1, no))
	}
	f.putWAL(wal.File{Name: "00000002.history", Kind: wal.History, Timeline: 2}, []byte("1\t0/680000\tno recovery target specified\n"))
	for no := uint64(6); no <= 9; no++ {
		data := segment(2, no)
		if no == 6 { // the switch segment starts with timeline 1's pages
			binary.LittleEndian.PutUint32(data[4:], 1)
		}
		f.putSegment(2, no, data)
	}
	f.putBackup("20261202T000000Z", 2*segSize+0x28, 3*segSize+0x100, map[int][]tfile{
		1: {{"PG_VERSION", "15\n"}, {"global/pg_control", strings.Repeat("c", 8192)}},
		2: {{"base/1/1259", strings.Repeat("x", 70000)}, {"base/1/1249", "some catalog"}},
	})
	return f
}

func (f *fixture) putWAL(wf wal.File, data []byte) {
	f.t.Helper()
	if _, err := f.rp.PutWAL(f.ctx, wf, bytes.NewReader(data), int64(len(data))); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) putSegment(tli uint32, no uint64, data []byte) {
	f.t.Helper()
	name := wal.SegmentFileName(tli, no, segSize)
	f.putWAL(wal.File{Name: name, Kind: wal.Segment, Timeline: tli, Log: uint32(no >> 12), Seg: uint32(no & 0xFFF)}, data)
}

type tfile struct{ path, body string }

func crcOf(s string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32c.Checksum([]byte(s)))
	return hex.EncodeToString(b[:])
}

func (f *fixture) putBackup(name string, start, stop uint64, parts map[int][]tfile) {
	f.t.Helper()
	f.putBackupEdited(name, start, stop, parts, func(*repo.Manifest) {})
}

// putBackupEdited stores a backup whose manifest edit changes before it is written.
func (f *fixture) putBackupEdited(name string, start, stop uint64, parts map[int][]tfile, edit func(*repo.Manifest)) {
	f.t.Helper()
	m := &repo.Manifest{Summary: repo.Summary{Name: name, SystemID: sysID, PGVersion: 15, WALSegSize: segSize, Timeline: 1,
		StartLSN: wal.LSN(start), StopLSN: wal.LSN(stop), StartWAL: wal.SegmentFileName(1, start/segSize, segSize),
		StopWAL: wal.SegmentFileName(1, stop/segSize, segSize)}}
	for n := 1; n <= len(parts); n++ {
		w, err := f.rp.CreatePart(f.ctx, name, n)
		if err != nil {
			f.t.Fatal(err)
		}
		tw := tar.NewWriter(w)
		var size int64
		for _, tf := range parts[n] {
			if err := tw.WriteHeader(&tar.Header{Name: tf.path, Mode: 0o600, Size: int64(len(tf.body)), Typeflag: tar.TypeReg}); err != nil {
				f.t.Fatal(err)
			}
			if _, err := tw.Write([]byte(tf.body)); err != nil {
				f.t.Fatal(err)
			}
			size += int64(len(tf.body))
			m.Files = append(m.Files, repo.File{Path: tf.path, Size: int64(len(tf.body)), Mode: 0o600, CRC: crcOf(tf.body), Part: n})
		}
		if err := tw.Close(); err != nil {
			f.t.Fatal(err)
		}
		stored, err := w.Close()
		if err != nil {
			f.t.Fatal(err)
		}
		m.Parts = append(m.Parts, repo.Part{N: n, Files: len(parts[n]), Size: size, Stored: stored})
	}
	edit(m)
	m.Sort()
	if err := f.rp.PutBackup(f.ctx, m); err != nil {
		f.t.Fatal(err)
	}
}

// run verifies the repository through st and returns the problems found.
func run(t *testing.T, st storage.Store, opt Options) (*Report, []Problem) {
	t.Helper()
	var ps []Problem
	opt.OnProblem = func(p Problem) { ps = append(ps, p) }
	opt.Concurrency = 2
	rep, err := Run(context.Background(), repo.New(st, repo.Options{}), opt)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Problems != len(ps) {
		t.Fatalf("report counts %d problems, %d were reported", rep.Problems, len(ps))
	}
	return rep, ps
}

// wantOne checks that exactly one problem was found, on object, saying what.
func wantOne(t *testing.T, ps []Problem, object, what string) {
	t.Helper()
	if len(ps) != 1 || ps[0].Object != object || !strings.Contains(ps[0].Problem, what) {
		t.Fatalf("problems = %v, want one on %s saying %q", ps, object, what)
	}
}

func TestCleanRepositoryPasses(t *testing.T) {
	f := newFixture(t)
	for _, withWAL := range []bool{false, true} {
		rep, ps := run(t, f.st, Options{WAL: withWAL})
		if len(ps) != 0 || !rep.OK() {
			t.Fatalf("wal=%v: problems on a clean repository: %v", withWAL, ps)
		}
		if rep.Backups != 1 || rep.Parts != 2 || rep.Files != 4 || rep.Bytes != 3+8192+70000+12 {
			t.Fatalf("wal=%v: report %+v", withWAL, rep)
		}
		// Timeline 1 to its end: segments 2..8; timeline 2, which branched off it in
		// segment 6: 6..9. The history file and every segment are read.
		if withWAL && (rep.WALSegments != 11 || rep.WALObjects != 13) {
			t.Fatalf("wal: report %+v", rep)
		}
		if !withWAL && (rep.WALSegments != 2 || rep.WALObjects != 2) {
			t.Fatalf("no wal: report %+v", rep)
		}
	}
}

func TestFlippedByteInAPartIsNamed(t *testing.T) {
	f := newFixture(t)
	key := repo.PartKey("20261202T000000Z", 2)
	st := faulty.New(f.st, faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Corrupt, Offset: 30000})
	_, ps := run(t, st, Options{})
	// The file the byte is in fails its checksum, and the part its trailer's.
	if len(ps) != 2 || ps[0].Object != "20261202T000000Z/base/1/1259" || !strings.Contains(ps[0].Problem, "checksum mismatch in part 2") ||
		ps[1].Object != key || !strings.Contains(ps[1].Problem, "corrupt") {
		t.Fatalf("problems = %v, want base/1/1259 and %s", ps, key)
	}
}

func TestFlippedByteInAFileWithAMatchingEnvelopeIsNamed(t *testing.T) {
	// A part whose envelope is sound but whose file differs from its manifest entry:
	// the manifest's CRC catches it, naming the file.
	f := newFixture(t)
	f.putBackup("20261202T010000Z", 2*segSize+0x28, 3*segSize+0x100, map[int][]tfile{1: {{"base/1/2", "abc"}}})
	m, err := f.rp.ReadManifest(f.ctx, "20261202T010000Z")
	if err != nil {
		t.Fatal(err)
	}
	_ = m
	// Rewrite the part with other bytes of the same size, sealed properly.
	if err := f.st.Delete(f.ctx, repo.PartKey("20261202T010000Z", 1)); err != nil {
		t.Fatal(err)
	}
	w, err := f.rp.CreatePart(f.ctx, "20261202T010000Z", 1)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(w)
	_ = tw.WriteHeader(&tar.Header{Name: "base/1/2", Mode: 0o600, Size: 3, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("abd"))
	_ = tw.Close()
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, ps := run(t, f.st, Options{Backup: "20261202T010000Z"})
	wantOne(t, ps, "20261202T010000Z/base/1/2", "checksum mismatch")
}

func TestMissingPartIsNamed(t *testing.T) {
	f := newFixture(t)
	key := repo.PartKey("20261202T000000Z", 1)
	if err := f.st.Delete(f.ctx, key); err != nil {
		t.Fatal(err)
	}
	_, ps := run(t, f.st, Options{})
	wantOne(t, ps, key, "missing")
}

func TestManifestFileInNoPartIsNamed(t *testing.T) {
	f := newFixture(t)
	const name = "20261202T010000Z"
	f.putBackupEdited(name, 2*segSize+0x28, 3*segSize+0x100, map[int][]tfile{1: {{"base/1/2", "abc"}}}, func(m *repo.Manifest) {
		m.Files = append(m.Files, repo.File{Path: "base/1/9999", Size: 5, CRC: crcOf("hello"), Part: 1})
	})
	_, ps := run(t, f.st, Options{Backup: name})
	wantOne(t, ps, name+"/base/1/9999", "in the manifest (part 1) but in no part")
}

func TestPartEntryNotInTheManifestIsNamed(t *testing.T) {
	f := newFixture(t)
	const name = "20261202T010000Z"
	f.putBackupEdited(name, 2*segSize+0x28, 3*segSize+0x100, map[int][]tfile{1: {{"base/1/2", "abc"}, {"base/1/3", "x"}}}, func(m *repo.Manifest) {
		m.Files = m.Files[:1]
	})
	_, ps := run(t, f.st, Options{Backup: name})
	wantOne(t, ps, repo.PartKey(name, 1), `holds "base/1/3", which the manifest does not list`)
}

func TestMissingWALSegmentInTheMiddleIsNamed(t *testing.T) {
	f := newFixture(t)
	name := wal.SegmentFileName(1, 4, segSize)
	key := repo.WALKey(wal.File{Name: name, Kind: wal.Segment, Timeline: 1})
	if err := f.st.Delete(f.ctx, key); err != nil {
		t.Fatal(err)
	}
	_, ps := run(t, f.st, Options{WAL: true})
	wantOne(t, ps, key, "missing from the archive: WAL segment "+name)
	// Without --wal only the backup's own start..stop WAL (segments 2..3) is checked.
	if _, ps := run(t, f.st, Options{}); len(ps) != 0 {
		t.Fatalf("without --wal: %v", ps)
	}
}

func TestMissingRunOfSegmentsIsNamedAsARange(t *testing.T) {
	f := newFixture(t)
	for _, no := range []uint64{3, 4} {
		key := repo.WALKey(wal.File{Name: wal.SegmentFileName(1, no, segSize), Kind: wal.Segment, Timeline: 1})
		if err := f.st.Delete(f.ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	_, ps := run(t, f.st, Options{WAL: true})
	wantOne(t, ps, repo.WALKey(wal.File{Name: "000000010000000000000003", Kind: wal.Segment, Timeline: 1}),
		"000000010000000000000003 to 000000010000000000000004 (2 segments)")
	// The stop segment is the backup's own: without --wal it is missed too.
	_, ps = run(t, f.st, Options{})
	wantOne(t, ps, repo.WALKey(wal.File{Name: "000000010000000000000003", Kind: wal.Segment, Timeline: 1}),
		"missing from the archive")
}

func TestMissingSegmentAfterATimelineSwitchIsNamed(t *testing.T) {
	f := newFixture(t)
	key := repo.WALKey(wal.File{Name: wal.SegmentFileName(2, 7, segSize), Kind: wal.Segment, Timeline: 2})
	if err := f.st.Delete(f.ctx, key); err != nil {
		t.Fatal(err)
	}
	_, ps := run(t, f.st, Options{WAL: true})
	wantOne(t, ps, key, "missing from the archive")
}

func TestSegmentWhoseHeaderNamesAnotherTimelineIsNamed(t *testing.T) {
	f := newFixture(t)
	name := wal.SegmentFileName(2, 8, segSize)
	key := repo.WALKey(wal.File{Name: name, Kind: wal.Segment, Timeline: 2})
	if err := f.st.Delete(f.ctx, key); err != nil {
		t.Fatal(err)
	}
	f.putSegment(2, 8, segment(3, 8))
	_, ps := run(t, f.st, Options{WAL: true})
	wantOne(t, ps, key, "header names timeline 3, its name says 2")
}

func TestSegmentHeaderThatDisagreesWithItsNameIsNamed(t *testing.T) {
	other := segment(1, 5)
	binary.LittleEndian.PutUint64(other[24:], sysID+1)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"address", segment(1, 4), "starts at 0/400000, its name says 0/500000"},
		{"system", other, "system identifier"},
		{"short", segment(1, 5)[:segSize/2], "decodes to 524288 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			key := repo.WALKey(wal.File{Name: wal.SegmentFileName(1, 5, segSize), Kind: wal.Segment, Timeline: 1})
			if err := f.st.Delete(f.ctx, key); err != nil {
				t.Fatal(err)
			}
			f.putSegment(1, 5, tc.data)
			_, ps := run(t, f.st, Options{WAL: true})
			wantOne(t, ps, key, tc.want)
		})
	}
}

func TestCorruptWALObjectIsNamed(t *testing.T) {
	f := newFixture(t)
	key := repo.WALKey(wal.File{Name: wal.SegmentFileName(1, 7, segSize), Kind: wal.Segment, Timeline: 1})
	st := faulty.New(f.st, faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Corrupt, Offset: 5000})
	_, ps := run(t, st, Options{WAL: true})
	wantOne(t, ps, key, "")
}

func TestUnknownBackupIsAnError(t *testing.T) {
	f := newFixture(t)
	_, err := Run(f.ctx, f.rp, Options{Backup: "nope"})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", "nope")) {
		t.Fatalf("err = %v", err)
	}
}

func TestStoreFailureIsAnErrorNotAProblem(t *testing.T) {
	f := newFixture(t)
	st := faulty.New(f.st, faulty.Rule{Op: faulty.Get, Key: "backups/", Skip: 2})
	_, err := Run(f.ctx, repo.New(st, repo.Options{}), Options{})
	if err == nil {
		t.Fatal("verify through a failing store passed")
	}
}

func TestBackupWhoseSummaryGivesAnImplausibleWALRangeIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name        string
		start, stop uint64
		want        string
	}{
		{"stop before start", 3 * segSize, 2 * segSize, "stops at 0/200000, before it starts at 0/300000"},
		{"far beyond", 2 * segSize, 1 << 63, "spans more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			const name = "20261202T010000Z"
			f.putBackup(name, tc.start, tc.stop, map[int][]tfile{1: {{"base/1/2", "abc"}}})
			for _, withWAL := range []bool{false, true} {
				rep, ps := run(t, f.st, Options{Backup: name, WAL: withWAL})
				wantOne(t, ps, repo.SummaryKey(name), tc.want)
				if rep.WALSegments != 0 {
					t.Fatalf("wal=%v: %d segments counted", withWAL, rep.WALSegments)
				}
			}
		})
	}
}

func TestOneBackupWithWALReadsOnlyTheWALItNeeds(t *testing.T) {
	f := newFixture(t)
	// A later backup on timeline 2 needs only timeline 2 from segment 7 on.
	f.putBackupEdited("20261202T010000Z", 7*segSize+0x28, 7*segSize+0x200, map[int][]tfile{1: {{"base/1/2", "abc"}}}, func(m *repo.Manifest) {
		m.Timeline = 2
		m.StartWAL, m.StopWAL = wal.SegmentFileName(2, 7, segSize), wal.SegmentFileName(2, 7, segSize)
	})
	// A damaged segment the second backup does not need is not read for it.
	key := repo.WALKey(wal.File{Name: wal.SegmentFileName(1, 3, segSize), Kind: wal.Segment, Timeline: 1})
	st := faulty.New(f.st, faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Corrupt, Offset: 5000})
	rep, ps := run(t, st, Options{Backup: "20261202T010000Z", WAL: true})
	if len(ps) != 0 || rep.WALSegments != 3 || rep.WALObjects != 4 {
		t.Fatalf("report %+v, problems %v", rep, ps)
	}
	_, ps = run(t, st, Options{WAL: true})
	wantOne(t, ps, key, "corrupt")
}

func TestGapOnTheBackupsTimelineAfterAForkIsNamed(t *testing.T) {
	// Timeline 2 branched off in segment 6 while timeline 1 went on (a promoted copy):
	// both are recoverable from the backup, and a gap on either is a problem.
	f := newFixture(t)
	key := repo.WALKey(wal.File{Name: wal.SegmentFileName(1, 7, segSize), Kind: wal.Segment, Timeline: 1})
	if err := f.st.Delete(f.ctx, key); err != nil {
		t.Fatal(err)
	}
	_, ps := run(t, f.st, Options{WAL: true})
	wantOne(t, ps, key, "missing from the archive: WAL segment 000000010000000000000007")
}

// putSealed stores js as a sealed zstd document under key, replacing what is there.
func (f *fixture) putSealed(key string, js []byte) {
	f.t.Helper()
	codec, err := compress.New("zstd", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, codec)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := w.Write(js); err != nil {
		f.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.t.Fatal(err)
	}
	_ = f.st.Delete(f.ctx, key)
	if err := f.st.Put(f.ctx, key, &buf, storage.PutOptions{Size: int64(buf.Len())}); err != nil {
		f.t.Fatal(err)
	}
}

func TestSummaryThatDisagreesWithItsManifestIsNamed(t *testing.T) {
	f := newFixture(t)
	const name = "20261202T000000Z"
	m, err := f.rp.ReadManifest(f.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Summary
	s.Size++
	js, _ := json.Marshal(&s)
	f.putSealed(repo.SummaryKey(name), js)
	_, ps := run(t, f.st, Options{})
	wantOne(t, ps, repo.ManifestKey(name), "its summary and its manifest disagree")
}

func TestDamagedManifestIsNamed(t *testing.T) {
	f := newFixture(t)
	const name = "20261202T000000Z"
	f.putSealed(repo.ManifestKey(name), []byte("{not json"))
	if err := f.st.Delete(f.ctx, repo.SummaryKey(name)); err != nil {
		t.Fatal(err)
	}
	_, ps := run(t, f.st, Options{})
	wantOne(t, ps, repo.ManifestKey(name), "damaged")
}

func TestPartWhoseDataDisagreesWithItsManifestSizeIsNamed(t *testing.T) {
	f := newFixture(t)
	const name = "20261202T010000Z"
	f.putBackupEdited(name, 2*segSize+0x28, 3*segSize+0x100, map[int][]tfile{1: {{"base/1/2", "abc"}}}, func(m *repo.Manifest) {
		m.Parts[0].Size = 4
	})
	_, ps := run(t, f.st, Options{Backup: name})
	wantOne(t, ps, repo.PartKey(name, 1), "holds 3 bytes of file data, the manifest says 4")
}

// verify --wal reads the segment pgb wal-stream holds only as chunks, as wal-fetch
// serves it: sound chunks pass, a damaged one is named.
func TestStreamedChunksAreReadAndADamagedOneIsNamed(t *testing.T) {
	f := newFixture(t)
	wf, err := wal.Parse(wal.SegmentFileName(2, 10, segSize))
	if err != nil {
		t.Fatal(err)
	}
	data := segment(2, 10)
	for _, c := range [][2]int{{0, 4096}, {4096, 20000}} {
		if err := f.rp.PutWALChunk(f.ctx, wf, int64(c[0]), data[c[0]:c[1]]); err != nil {
			t.Fatal(err)
		}
	}
	rep, ps := run(t, f.st, Options{WAL: true})
	if len(ps) != 0 || rep.WALObjects != 14 {
		t.Fatalf("sound chunks: problems %v, %d WAL objects read (want 14)", ps, rep.WALObjects)
	}
	cs, err := f.rp.ListWALChunks(f.ctx, wf)
	if err != nil || len(cs) != 2 {
		t.Fatalf("chunks %v, %v", cs, err)
	}
	raw, err := f.st.Get(f.ctx, cs[1].Key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(raw)
	_ = raw.Close()
	b[len(b)/2] ^= 0xff
	if err := f.st.Put(f.ctx, cs[1].Key, bytes.NewReader(b), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, ps = run(t, f.st, Options{WAL: true})
	wantOne(t, ps, repo.WALKey(wf)+".stream/", "corrupt")
}

// Progress hears of each backup, never more than its total, and ends at the total: the
// file data the manifest lists.
func TestProgressEndsAtTheManifestsData(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var calls [][3]int64
	rep, ps := run(t, f.st, Options{Progress: func(backup string, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, [3]int64{int64(len(backup)), done, total})
	}})
	if len(ps) != 0 || len(calls) == 0 {
		t.Fatalf("problems %v, %d progress calls", ps, len(calls))
	}
	last := calls[len(calls)-1]
	if last[1] != rep.Bytes || last[2] != rep.Bytes {
		t.Errorf("last progress %d of %d, want %d of %d", last[1], last[2], rep.Bytes, rep.Bytes)
	}
	for _, c := range calls {
		if c[0] == 0 || c[1] > c[2] {
			t.Errorf("progress call %v", c)
		}
	}
}
