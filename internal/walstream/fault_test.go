package walstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/waltest"
)

func faultyStreamer(t *testing.T, rules ...faulty.Rule) (*Streamer, *server) {
	t.Helper()
	c, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &archive.Archive{Repo: repo.New(faulty.New(mem.New(), rules...), repo.Options{Codec: c}), Log: log}
	s := &Streamer{Archives: []*archive.Archive{a}, Log: log}
	return s, &server{segSize: waltest.SegSize, cluster: archive.Cluster{SystemID: 42, PGVersion: 15}, tli: 1,
		history: []wal.TimelineSpan{{TLI: 1, End: wal.EndOfTimeline}}}
}

func seg(tli uint32, n uint64) []byte {
	return waltest.Stamped(wal.SegmentFileName(tli, n, waltest.SegSize), waltest.Segment(42, int64(n)))
}

func segKey(tli uint32, n uint64) string {
	f, _ := wal.Parse(wal.SegmentFileName(tli, n, waltest.SegSize))
	return repo.WALKey(f)
}

// segmentEightFails is a writer that has received segment 8 of timeline 1 whole, whose
// store fails.
func segmentEightFails(t *testing.T) (*Streamer, *writer, Position) {
	t.Helper()
	s, srv := faultyStreamer(t, faulty.Rule{Op: faulty.Put, Key: segKey(1, 8)})
	start := Position{Timeline: 1, LSN: wal.LSN(8 * waltest.SegSize)}
	w, err := s.newWriter(context.Background(), srv, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.add(context.Background(), start.LSN, seg(1, 8)); err != nil {
		t.Fatal(err)
	}
	return s, w, start
}

// Segment 8 fails to store in the background while segment 9 comes in: neither the
// durable position (reported to PostgreSQL) nor where the next session resumes passes
// segment 8, and no chunk of 9 is stored after the failure.
func TestAFailedSegmentStoreHoldsTheDurablePositionBack(t *testing.T) {
	ctx := context.Background()
	s, w, start := segmentEightFails(t)
	if err := w.add(ctx, start.LSN+waltest.SegSize, seg(1, 9)[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err == nil { // waits for the store
		t.Fatal("segment 8's store failed, and close says nothing")
	}
	if d := w.durable(); d > start.LSN {
		t.Errorf("durable %s after segment 8 failed to store; want at most %s", d, start.LSN)
	}
	if err := w.flush(ctx); err == nil {
		t.Error("a chunk of segment 9 was flushed after segment 8 failed")
	}
	if r := s.resumeAt(); r.LSN > start.LSN {
		t.Errorf("resume at %s after segment 8 failed to store: it would never be stored", r.LSN)
	}
}

// The timeline ends at a segment's end while that segment is stored in the background
// and its store fails: the end of the timeline fails with it, and the switch is not
// followed past the missing segment.
func TestATimelineEndingAtASegmentsEndWaitsForItsStore(t *testing.T) {
	_, w, _ := segmentEightFails(t)
	if err := w.endTimeline(context.Background()); err == nil {
		t.Errorf("endTimeline returned nil though segment 8 failed to store; durable %s", w.durable())
	}
}

// A signal arrives while a segment completes: the segment is still stored, and close
// (on the way out) returns (a deadlock here fails the test by its timeout).
func TestASignalWhileASegmentCompletesStillStoresIt(t *testing.T) {
	for trial := 0; trial < 4; trial++ {
		s, srv := faultyStreamer(t)
		start := Position{Timeline: 1, LSN: wal.LSN(8 * waltest.SegSize)}
		w, err := s.newWriter(context.Background(), srv, start)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := w.add(cctx, start.LSN, seg(1, 8)); err != nil {
			t.Fatal(err)
		}
		if err := w.close(); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if r := s.resumeAt(); r.LSN != start.LSN+waltest.SegSize {
			t.Fatalf("trial %d: durable %s, want the segment stored", trial, r.LSN)
		}
	}
}

// Two segments stored at once: 10 is stored, 9 is not (pgb killed, or 9's store
// failed). A new process starts no later than where the slot holds WAL from (9, as the
// flush reported never passed it), not after the newest whole segment.
func TestANewProcessStreamsAgainASegmentMissingBeforeTheNewest(t *testing.T) {
	ctx := context.Background()
	s, srv := faultyStreamer(t)
	srv.flushed = wal.LSN(20 * waltest.SegSize)
	for _, n := range []uint64{8, 10} {
		f, _ := wal.Parse(wal.SegmentFileName(1, n, waltest.SegSize))
		if _, err := s.Archives[0].PushData(ctx, f, seg(1, n), &srv.cluster); err != nil {
			t.Fatal(err)
		}
	}
	start, err := s.startPosition(ctx, srv, slot{restart: wal.LSN(9 * waltest.SegSize)})
	if err != nil {
		t.Fatal(err)
	}
	if start > wal.LSN(9*waltest.SegSize) {
		t.Errorf("start %s: segment 9 (missing, still on the server: slot restart 9) is skipped", start)
	}
}

// The repository holds timeline 1 past timeline 1's end in this server's history (the
// old primary archived on after the fork): those do not count, and the stream starts
// on timeline 2 right after its newest stored segment.
func TestTheStartCountsOnlySegmentsOnTheServersHistory(t *testing.T) {
	ctx := context.Background()
	s, srv := faultyStreamer(t)
	sw := wal.LSN(0x10*waltest.SegSize + 0x1000)
	srv.tli = 2
	srv.history = []wal.TimelineSpan{{TLI: 1, End: sw}, {TLI: 2, Begin: sw, End: wal.EndOfTimeline}}
	srv.flushed = wal.LSN(0x30 * waltest.SegSize)
	put := func(tli uint32, n uint64) {
		f, _ := wal.Parse(wal.SegmentFileName(tli, n, waltest.SegSize))
		if _, err := s.Archives[0].PushData(ctx, f, seg(tli, n), &srv.cluster); err != nil {
			t.Fatal(err)
		}
	}
	put(1, 0x18) // TL1 beyond the switch point: not on this server's history
	put(2, 0x10)
	put(2, 0x11)
	start, err := s.startPosition(ctx, srv, slot{})
	if err != nil {
		t.Fatal(err)
	}
	if start > wal.LSN(0x12*waltest.SegSize) {
		t.Errorf("start %s on timeline %d: timeline 2's segments 0x12..0x%x are skipped", start, srv.timelineOf(start), uint64(start)/waltest.SegSize-1)
	}
}

// Chunks stored before hold other bytes than the server now sends at the same place
// (another server on this timeline): the stream stops with a conflict instead of
// counting the old chunks as what it was sent.
func TestChunksStoredBeforeMustHoldWhatTheServerSendsAgain(t *testing.T) {
	ctx := context.Background()
	s, srv := faultyStreamer(t)
	start := Position{Timeline: 1, LSN: wal.LSN(4 * waltest.SegSize)}
	w, err := s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	old := seg(1, 4)
	if err := w.add(ctx, start.LSN, old[:50_000]); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	other := append([]byte(nil), old[:60_000]...)
	other[40_000] ^= 1
	w, err = s.newWriter(ctx, srv, start)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.close() }()
	if err := w.add(ctx, start.LSN, other[:30_000]); err != nil {
		t.Fatalf("the same bytes again: %v", err)
	}
	if err := w.add(ctx, start.LSN+30_000, other[30_000:]); !errors.Is(err, repo.ErrChunkConflict) {
		t.Fatalf("other bytes where chunks are stored: %v, want ErrChunkConflict", err)
	}
}
