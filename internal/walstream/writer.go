package walstream

import (
	"context"
	"fmt"
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

// writer holds the segment being received and stores it: chunks as it fills, the
// whole segment once complete.
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
}

type written struct {
	start, end int
	level      int
}

// newWriter starts at pos, which is at the start of a segment. Chunks stored of that
// segment before (by an earlier run) count as durable: the bytes they hold are not
// stored again.
func (s *Streamer) newWriter(ctx context.Context, srv *server, pos Position) (*writer, error) {
	if uint64(pos.LSN)%srv.segSize != 0 {
		return nil, fmt.Errorf("the stream must start at a segment's start, not %s", pos.LSN)
	}
	w := &writer{s: s, srv: srv, tli: pos.Timeline, segNo: uint64(pos.LSN) / srv.segSize, buf: make([]byte, srv.segSize)}
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
	s.resume = Position{Timeline: pos.Timeline, LSN: pos.LSN + wal.LSN(w.flushed)}
	return w, nil
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

// durable is the position up to which WAL is stored in the repository.
func (w *writer) durable() wal.LSN { return w.segStart() + wal.LSN(w.flushed) }

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

// complete stores the whole segment exactly as wal-push would, then removes its chunks,
// and moves on to the next segment.
func (w *writer) complete(ctx context.Context) error {
	f := w.file()
	err := w.s.each(func(a *archive.Archive) error {
		res, err := a.PushData(ctx, f, w.buf, &w.srv.cluster)
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
	w.segNo++
	w.n, w.flushed, w.written = 0, 0, w.written[:0]
	w.s.durableNow(Position{Timeline: w.tli, LSN: w.segStart()})
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

// endTimeline stores the last segment of a timeline that ended, as far as it was
// received, as PostgreSQL's own receiver does: <segment>.partial, zero-filled after
// the last byte. Its chunks go once it is stored.
func (w *writer) endTimeline(ctx context.Context) error {
	if w.n == 0 {
		return nil
	}
	if err := w.flush(ctx); err != nil {
		return err
	}
	clear(w.buf[w.n:])
	f := w.file()
	pf, err := wal.Parse(f.Name + ".partial")
	if err != nil {
		return err
	}
	err = w.s.each(func(a *archive.Archive) error {
		_, err := a.PushData(ctx, pf, w.buf, &w.srv.cluster)
		return err
	})
	if err != nil {
		return err
	}
	w.dropChunks(ctx, f)
	return nil
}

// durableNow records how far WAL is durable, for the next session and Progress.
func (s *Streamer) durableNow(p Position) {
	s.resume = p
	if s.Progress != nil {
		s.Progress(p)
	}
}
