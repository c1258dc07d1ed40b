package walstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// mergeFanout is how many chunks of one size class are merged into one: a segment
// streamed a commit at a time (a chunk per commit) is left with a few dozen chunks,
// not tens of thousands, and each byte is stored a few times at most.
const mergeFanout = 16

// storeMemory bounds the buffers of complete segments being stored while the next one
// is received (receiving overlaps compressing and storing): four 16 MiB segments, one
// of the largest (1 GiB) segments; the segment being received has a buffer too.
const storeMemory = 64 << 20

// maxStoreWorkers is how many complete segments are stored at once.
const maxStoreWorkers = 2

// writer holds the segment being received and stores it: chunks as it fills, the
// whole segment once complete. Complete segments are stored in the background, two at
// once and a few more waiting (storeMemory); the position reported durable never
// passes one that is not stored yet.
type writer struct {
	s       *Streamer
	srv     *server
	tli     uint32
	segNo   uint64
	buf     []byte // the segment, as far as received
	n       int    // bytes of the segment received
	flushed int    // bytes of the segment durable in the repository
	// pendingSince is when the first byte not yet stored arrived.
	pendingSince time.Time
	// written are the chunks this writer stored of this segment, oldest first, each
	// with its size class, for merging.
	written []written
	// prior holds what chunks stored before (by an earlier run) hold of this segment:
	// the bytes received again must be the same, or they are not this WAL.
	prior []byte

	ctx   context.Context
	queue chan segJob   // complete segments to store, in order
	spare chan []byte   // buffers to receive into
	done  chan struct{} // closed when the storing goroutine has ended
	mu    sync.Mutex
	// queued counts the segments handed to the queue and not stored yet; storedEnd is
	// the end of the segments stored without a hole from the writer's start; stored
	// holds those stored past a hole (another still being stored).
	queued    int
	storedEnd wal.LSN
	stored    map[uint64]bool
	err       error // the storing goroutine's failure: the session ends with it
	closed    bool
}

type segJob struct {
	segNo uint64
	buf   []byte
}

type written struct {
	start, end int
	level      int
}

// newWriter starts at pos, which is at the start of a segment. Chunks stored of that
// segment before (by an earlier run) are not stored again: the server must send the
// same bytes there (add compares), and they count as durable once it has. close must be
// called once the writer is done with.
func (s *Streamer) newWriter(ctx context.Context, srv *server, pos Position) (*writer, error) {
	if uint64(pos.LSN)%srv.segSize != 0 {
		return nil, fmt.Errorf("the stream must start at a segment's start, not %s", pos.LSN)
	}
	extra := int(min(max(storeMemory/srv.segSize, 1), 4))
	workers := min(extra, maxStoreWorkers)
	w := &writer{s: s, srv: srv, tli: pos.Timeline, segNo: uint64(pos.LSN) / srv.segSize, buf: make([]byte, srv.segSize),
		ctx: ctx, queue: make(chan segJob, extra-workers), spare: make(chan []byte, extra), done: make(chan struct{}),
		stored: map[uint64]bool{}}
	for i := 0; i < extra; i++ {
		w.spare <- make([]byte, srv.segSize)
	}
	var mu sync.Mutex
	w.flushed = len(w.buf)
	err := s.each(func(a *archive.Archive) error {
		cs, err := a.Repo.ListWALChunks(ctx, w.file())
		if err != nil {
			return err
		}
		mu.Lock()
		w.flushed = min(w.flushed, int(repo.CoverFromStart(cs).End))
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if w.flushed > 0 {
		if w.prior, err = priorBytes(ctx, s.Archives[0], w.file(), w.flushed); err != nil {
			// Chunks that cannot be read back count for nothing: this run stores the
			// segment's bytes again.
			s.Log.Warn("the streamed chunks stored before of this segment cannot be read back; storing its bytes again",
				"file", w.file().Name, "error", err.Error())
			w.flushed, w.prior = 0, nil
		}
	}
	w.storedEnd = pos.LSN
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.storeLoop()
		}()
	}
	go func() {
		wg.Wait()
		close(w.done)
	}()
	return w, nil
}

// priorBytes reads the first n bytes chunks stored before hold of segment f.
func priorBytes(ctx context.Context, a *archive.Archive, f wal.File, n int) ([]byte, error) {
	sw, err := a.Repo.OpenStreamedWAL(ctx, f)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sw.Close() }() // read-only
	b := make([]byte, n)
	if _, err := io.ReadFull(sw, b); err != nil {
		return nil, fmt.Errorf("read the chunks stored of %s: %w", f.Name, err)
	}
	return b, nil
}

// storeLoop stores queued segments until the queue is closed (several run at once);
// after a failure they store nothing more (the session ends and starts again from what
// is durable). They store with a context that a signal does not cancel: what was
// received is stored before pgb exits.
func (w *writer) storeLoop() {
	ctx := context.WithoutCancel(w.ctx)
	for j := range w.queue {
		err := w.failed()
		if err == nil {
			err = w.storeSegment(ctx, j)
		}
		w.mu.Lock()
		w.queued--
		if err != nil && w.err == nil {
			w.err = err
		}
		before := w.storedEnd
		if err == nil {
			w.stored[j.segNo] = true
			for next := uint64(w.storedEnd) / w.srv.segSize; w.stored[next]; next++ {
				delete(w.stored, next)
				w.storedEnd = wal.LSN((next + 1) * w.srv.segSize)
			}
		}
		end := w.storedEnd
		w.mu.Unlock()
		w.spare <- j.buf
		if end != before {
			w.s.durableNow(Position{Timeline: w.tli, LSN: end})
		}
	}
}

// storeSegment stores a complete segment exactly as wal-push would, then removes its
// chunks.
func (w *writer) storeSegment(ctx context.Context, j segJob) error {
	f, err := wal.Parse(wal.SegmentFileName(w.tli, j.segNo, w.srv.segSize))
	if err != nil {
		return err
	}
	err = w.s.each(func(a *archive.Archive) error {
		res, err := a.PushData(ctx, f, j.buf, &w.srv.cluster)
		if err != nil {
			return err
		}
		w.s.Log.Debug("stored segment", "file", f.Name, "stored_bytes", res.Stored, "duplicate", res.Duplicate, "repository", a.Repo.String())
		return nil
	})
	if err != nil {
		return err
	}
	w.dropChunks(ctx, f)
	return nil
}

// failed is the storing goroutine's failure, if any.
func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close waits until the queued segments are stored (or failed) and returns the first
// failure. It may be called more than once.
func (w *writer) close() error {
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	<-w.done
	return w.failed()
}

// waiting says whether complete segments are still being stored.
func (w *writer) waiting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued > 0
}

func (w *writer) file() wal.File {
	f, err := wal.Parse(wal.SegmentFileName(w.tli, w.segNo, w.srv.segSize))
	if err != nil {
		panic(err) // SegmentFileName always makes a valid name: a defect
	}
	return f
}

func (w *writer) segStart() wal.LSN { return wal.LSN(w.segNo * w.srv.segSize) }

// received is the position up to which WAL arrived.
func (w *writer) received() wal.LSN { return w.segStart() + wal.LSN(w.n) }

// durable is the position up to which WAL is stored in the repository: while complete
// segments wait to be stored, the end of the last one stored.
func (w *writer) durable() wal.LSN {
	w.mu.Lock()
	end, err := w.storedEnd, w.err
	w.mu.Unlock()
	if err != nil || end < w.segStart() {
		return end // a segment before this one is not stored (yet, or at all)
	}
	return w.segStart() + wal.LSN(w.flushed)
}

// pending is how many received bytes are not stored yet.
func (w *writer) pending() int { return max(w.n-w.flushed, 0) }

// add takes WAL data that starts at lsn, which must be where the stream is.
func (w *writer) add(ctx context.Context, lsn wal.LSN, data []byte) error {
	if lsn != w.received() {
		return fmt.Errorf("receive WAL: the server sent WAL from %s, the stream is at %s", lsn, w.received())
	}
	for len(data) > 0 {
		if w.pending() == 0 {
			w.pendingSince = time.Now()
		}
		if w.n < len(w.prior) {
			k := min(len(data), len(w.prior)-w.n)
			if !bytes.Equal(data[:k], w.prior[w.n:w.n+k]) {
				return fmt.Errorf("%w: %s: the server sent other WAL at byte %d than the chunks stored before hold (another server on this timeline?); nothing was stored over them",
					repo.ErrChunkConflict, w.file().Name, w.n)
			}
			if w.n+k == len(w.prior) {
				w.prior = nil
			}
		}
		k := copy(w.buf[w.n:], data)
		w.n += k
		data = data[k:]
		if w.n == len(w.buf) {
			if err := w.complete(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// complete hands the whole segment to the storing goroutines and moves on to the next
// segment, in a spare buffer (waiting for one while the others are being stored).
func (w *writer) complete(ctx context.Context) error {
	if err := w.failed(); err != nil {
		return err
	}
	w.mu.Lock()
	w.queued++
	w.mu.Unlock()
	// Neither wait heeds ctx: the workers store with a context a signal does not
	// cancel, so a queue place and a spare buffer always come, and what was received is
	// stored on the way out.
	w.queue <- segJob{segNo: w.segNo, buf: w.buf}
	w.buf = <-w.spare
	w.segNo++
	w.n, w.flushed, w.written = 0, 0, w.written[:0]
	return nil
}

// dropChunks removes the chunks of f, stored whole now. A chunk left behind costs only
// space: the whole segment is what readers take.
func (w *writer) dropChunks(ctx context.Context, f wal.File) {
	err := w.s.each(func(a *archive.Archive) error {
		cs, err := a.Repo.ListWALChunks(ctx, f)
		if err == nil && len(cs) > 0 {
			err = a.Repo.DeleteWALChunks(ctx, cs)
		}
		return err
	})
	if err != nil {
		w.s.Log.Warn("could not remove the streamed chunks of a segment stored whole", "file", f.Name, "error", err.Error())
	}
}

// flush stores what was received and not stored yet as a chunk, then merges chunks of
// one size class when there are mergeFanout of them.
func (w *writer) flush(ctx context.Context) error {
	if err := w.failed(); err != nil {
		return err
	}
	if w.pending() == 0 {
		return nil
	}
	f := w.file()
	start, end := w.flushed, w.n
	err := w.s.each(func(a *archive.Archive) error {
		return a.Repo.PutWALChunk(ctx, f, int64(start), w.buf[start:end])
	})
	if err != nil {
		return err
	}
	w.flushed = end
	w.written = append(w.written, written{start: start, end: end})
	w.s.durableNow(Position{Timeline: w.tli, LSN: w.durable()})
	w.merge(ctx, f)
	return nil
}

// merge replaces the last mergeFanout chunks of one size class by one chunk holding
// their bytes, as long as there are that many. The merged chunk is durable before the
// others are removed, so that readers always find the bytes.
func (w *writer) merge(ctx context.Context, f wal.File) {
	for len(w.written) >= mergeFanout {
		top := w.written[len(w.written)-mergeFanout:]
		level := top[0].level
		for _, c := range top {
			if c.level != level {
				return
			}
		}
		m := written{start: top[0].start, end: top[len(top)-1].end, level: level + 1}
		err := w.s.each(func(a *archive.Archive) error {
			return a.Repo.PutWALChunk(ctx, f, int64(m.start), w.buf[m.start:m.end])
		})
		if err != nil {
			w.s.Log.Warn("could not merge streamed chunks; they stay as they are", "file", f.Name, "error", err.Error())
			return
		}
		cs := make([]repo.Chunk, 0, len(top))
		for _, c := range top {
			cs = append(cs, repo.Chunk{Start: int64(c.start), End: int64(c.end), Key: repo.ChunkKey(f, int64(c.start), int64(c.end))})
		}
		if err := w.s.each(func(a *archive.Archive) error { return a.Repo.DeleteWALChunks(ctx, cs) }); err != nil {
			w.s.Log.Warn("could not remove merged streamed chunks", "file", f.Name, "error", err.Error())
		}
		w.written = append(w.written[:len(w.written)-mergeFanout], m)
	}
}

// endTimeline stores what was received of the timeline that ended and waits for the
// segments being stored. The last segment's chunks stay as they are: they are that
// timeline's WAL (a recovery to it reads them), and removing them before the next
// timeline's copy of the segment is stored would leave nothing to read. No .partial is
// stored: the promoted server's archive_command stores its own, with bytes after the
// switch point that differ from zeros, and two copies would conflict.
func (w *writer) endTimeline(ctx context.Context) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	return w.close()
}

// durableNow records how far WAL is durable, for the next session and Progress. It
// never goes back on a timeline.
func (s *Streamer) durableNow(p Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Timeline == s.resume.Timeline && p.LSN <= s.resume.LSN {
		return
	}
	s.resume = p
	if s.Progress != nil {
		s.Progress(p)
	}
}

// resumeAt is where the next session starts from.
func (s *Streamer) resumeAt() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resume
}
