package walstream

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/waltest"
)

func testStreamer(t *testing.T) (*Streamer, *server) {
	t.Helper()
	c, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &archive.Archive{Repo: repo.New(mem.New(), repo.Options{Codec: c}), Log: log}
	s := &Streamer{Archives: []*archive.Archive{a}, Log: log}
	return s, &server{segSize: waltest.SegSize, cluster: archive.Cluster{SystemID: 42, PGVersion: 15}, tli: 1}
}

// A segment streamed a little at a time is stored as chunks that are merged as they
// pile up, readable at every step as far as it was flushed; once complete it is
// stored whole and its chunks are gone. A stream restarted from the segment's start
// does not store again what its chunks hold.
func TestAStreamedSegmentIsChunksUntilCompleteThenWhole(t *testing.T) {
	ctx := context.Background()
	s, srv := testStreamer(t)
	const name = "000000010000000000000005"
	seg := waltest.Stamped(name, waltest.Segment(42, 5))
	f, _ := wal.Parse(name)
	start := Position{Timeline: 1, LSN: wal.LSN(5 * waltest.SegSize)}
	rp := s.Archives[0].Repo
	w, err := s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	const piece = 1000
	for i := 0; i < 100; i++ {
		if err := w.add(ctx, start.LSN+wal.LSN(i*piece), seg[i*piece:(i+1)*piece]); err != nil {
			t.Fatal(err)
		}
		if err := w.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := rp.ListWALChunks(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	// 100 flushes: six merged chunks of 16 and four single ones.
	if len(cs) != 10 {
		t.Fatalf("%d chunks after 100 flushes, want 10 (merged 16 to 1)", len(cs))
	}
	if s.resumeAt().LSN != start.LSN+100*piece {
		t.Fatalf("durable position %s, want %s", s.resumeAt().LSN, start.LSN+100*piece)
	}
	want := make([]byte, waltest.SegSize)
	copy(want, seg[:100*piece])
	fetchAndCompare(t, s.Archives[0], name, want)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}

	// A restart from the segment's start: what the chunks hold is not stored again.
	w2, err := s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	if w2.flushed != 100*piece || w2.pending() != 0 {
		t.Fatalf("a restarted writer counts %d bytes durable (pending %d), want %d", w2.flushed, w2.pending(), 100*piece)
	}
	if err := w2.add(ctx, start.LSN, seg[:50*piece]); err != nil {
		t.Fatal(err)
	}
	if w2.pending() != 0 {
		t.Fatalf("bytes the chunks hold are pending again: %d", w2.pending())
	}
	if err := w2.add(ctx, start.LSN+50*piece, seg[50*piece:]); err != nil {
		t.Fatal(err)
	}
	if err := w2.close(); err != nil { // the segment is stored in the background
		t.Fatal(err)
	}
	if cs, err := rp.ListWALChunks(ctx, f); err != nil || len(cs) != 0 {
		t.Fatalf("chunks left once the segment is whole: %d (%v)", len(cs), err)
	}
	fetchAndCompare(t, s.Archives[0], name, seg)
	if s.resumeAt().LSN != start.LSN+waltest.SegSize || w2.segNo != 6 || w2.n != 0 {
		t.Fatalf("after the segment: durable %s, segment %d, %d bytes", s.resumeAt().LSN, w2.segNo, w2.n)
	}
	// Data that is not where the stream is, is refused.
	if err := w2.add(ctx, start.LSN, seg[:10]); err == nil {
		t.Fatal("WAL out of order was taken")
	}
}

func fetchAndCompare(t *testing.T, a *archive.Archive, name string, want []byte) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "x")
	if _, err := a.Fetch(context.Background(), name, dest); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("fetched %s differs from what was streamed", name)
	}
}

func TestSettingsAsTheServerShowsThem(t *testing.T) {
	for v, want := range map[string]uint64{"16MB": 16 << 20, "1GB": 1 << 30, "1024kB": 1 << 20} {
		if got, err := parseSize(v); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", v, got, err)
		}
	}
	for _, v := range []string{"", "16", "15MB", "2GB", "512kB", "xMB"} {
		if _, err := parseSize(v); err == nil {
			t.Errorf("parseSize(%q) accepted", v)
		}
	}
	for v, want := range map[string]int{"15.10": 15, "16beta1": 16, "12.1 (Debian 12.1-1)": 12} {
		if got, err := majorVersion(v); err != nil || got != want {
			t.Errorf("majorVersion(%q) = %d, %v", v, got, err)
		}
	}
	for v, want := range map[string]bool{
		"pgb": true, "'pgb'": false, "FIRST 1 (pgb, s1)": true, "ANY 2 (s1,pgb)": true, "*": true,
		`"pgb"`: true, "s1": false, "": false, "pgbx": false,
	} {
		if got := namesStandby(v, "pgb"); got != want {
			t.Errorf("namesStandby(%q) = %v", v, got)
		}
	}
	for _, n := range []string{"pgb", "pgb_2"} {
		if err := ValidSlotName(n); err != nil {
			t.Errorf("slot %q: %v", n, err)
		}
	}
	for _, n := range []string{"", "Pgb", "a-b", "a b", string(make([]byte, 64))} {
		if err := ValidSlotName(n); err == nil {
			t.Errorf("slot %q accepted", n)
		}
	}
}

// Segments completed faster than they are stored are stored two at a time, and the
// durable position only ever covers segments stored without a hole before them.
func TestSegmentsStoredInTheBackgroundAreDurableInOrder(t *testing.T) {
	ctx := context.Background()
	s, srv := testStreamer(t)
	var seen []wal.LSN
	s.Progress = func(p Position) { seen = append(seen, p.LSN) }
	start := Position{Timeline: 1, LSN: wal.LSN(8 * waltest.SegSize)}
	w, err := s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	var segs [][]byte
	for i := uint64(8); i < 12; i++ {
		segs = append(segs, waltest.Stamped(wal.SegmentFileName(1, i, waltest.SegSize), waltest.Segment(42, int64(i))))
	}
	for i, seg := range segs {
		if err := w.add(ctx, start.LSN+wal.LSN(i*waltest.SegSize), seg); err != nil {
			t.Fatal(err)
		}
		if d := w.durable(); d > start.LSN+wal.LSN(i*waltest.SegSize) {
			t.Fatalf("durable %s before segment %d is stored", d, i)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if got, want := w.durable(), start.LSN+4*waltest.SegSize; got != want {
		t.Fatalf("durable %s after all four, want %s", got, want)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] || uint64(seen[i])%waltest.SegSize != 0 {
			t.Fatalf("durable positions %v: not whole segments in order", seen)
		}
	}
	for i, seg := range segs {
		fetchAndCompare(t, s.Archives[0], wal.SegmentFileName(1, uint64(8+i), waltest.SegSize), seg)
	}
}

// With two repositories WAL is durable only once both hold it: one failing holds the
// durable position back, and a stream restarted from there fills it in.
func TestWithTwoRepositoriesDurableMeansStoredInBoth(t *testing.T) {
	ctx := context.Background()
	s, srv := testStreamer(t)
	broken := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: "wal/"})
	c, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	second := &archive.Archive{Repo: repo.New(broken, repo.Options{Codec: c}), Log: s.Log}
	s.Archives = append(s.Archives, second)
	const name = "000000010000000000000003"
	seg := waltest.Stamped(name, waltest.Segment(42, 3))
	start := Position{Timeline: 1, LSN: wal.LSN(3 * waltest.SegSize)}
	w, err := s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.add(ctx, start.LSN, seg[:5000]); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(ctx); err == nil || !strings.Contains(err.Error(), "repository") {
		t.Fatalf("a chunk the second repository refused: %v, want its error", err)
	}
	if d := w.durable(); d != start.LSN {
		t.Fatalf("durable %s after a failed store, want %s", d, start.LSN)
	}
	if err := w.add(ctx, start.LSN+5000, seg[5000:]); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err == nil {
		t.Fatal("the whole segment the second repository refused was taken as stored")
	}
	if d := s.resumeAt().LSN; d > start.LSN {
		t.Fatalf("resume at %s, past %s which the second repository lacks", d, start.LSN)
	}
	broken.Reset()
	w, err = s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.add(ctx, start.LSN, seg); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Archives {
		fetchAndCompare(t, a, name, seg)
	}
}
