package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// Streamed WAL (pgb wal-stream) is stored as it arrives: the segment being written as
// immutable chunks, each holding bytes [Start, End) of the segment, under
// wal/<timeline+log>/<segment>.stream/<start>-<end> (eight hex digits each). Once the
// segment is complete it is stored like wal-push stores it and its chunks are
// removed. ListWAL never lists chunks (their last element is not a WAL file name), so
// restore, verify and retention see only complete segments; OpenStreamedWAL is how a
// reader gets what the chunks hold.

const chunkDirSuffix = ".stream/"

// Chunk is one stored piece of a segment being streamed.
type Chunk struct {
	Start, End int64 // byte offsets in the segment
	Key        string
	Size       int64 // bytes stored
	Stored     time.Time
}

func chunkPrefix(f wal.File) string { return WALKey(f) + chunkDirSuffix }

// ChunkKey is where the chunk [start, end) of segment f is stored.
func ChunkKey(f wal.File, start, end int64) string {
	return fmt.Sprintf("%s%08X-%08X", chunkPrefix(f), start, end)
}

// maxChunks bounds the chunks of one segment a reader lists: the stream merges them
// sixteen to one, so a segment has a few dozen; a repository holding far more is
// damaged or hostile, and listing them all would take unbounded memory.
const maxChunks = 1 << 16

// maxChunkEnd bounds a chunk's offsets: PostgreSQL's largest segment is 1 GiB.
const maxChunkEnd = 1 << 30

// parseChunk reads the offsets from a chunk's key; ok is false for anything that is
// not a chunk pgb writes.
func parseChunk(name string) (start, end int64, ok bool) {
	a, b, found := strings.Cut(name, "-")
	if !found || len(a) != 8 || len(b) != 8 || !isUpperHexString(a) || !isUpperHexString(b) {
		return 0, 0, false
	}
	s, err1 := strconv.ParseInt(a, 16, 64)
	e, err2 := strconv.ParseInt(b, 16, 64)
	if err1 != nil || err2 != nil || s >= e || e > maxChunkEnd {
		return 0, 0, false
	}
	return s, e, true
}

func isUpperHexString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// PutWALChunk stores data as bytes [start, start+len(data)) of segment f, durable
// before it returns. A chunk stored before under the same offsets (a stream restarted
// from the segment's start) must hold the same bytes: identical content is no error,
// different content is ErrConflict's kind of error (two clusters, or a timeline problem).
func (r *Repo) PutWALChunk(ctx context.Context, f wal.File, start int64, data []byte) error {
	end := start + int64(len(data))
	if f.Kind != wal.Segment || start < 0 || len(data) == 0 || end > maxChunkEnd {
		return fmt.Errorf("store a streamed chunk: bad chunk %s [%d, %d)", f.Name, start, end)
	}
	key := ChunkKey(f, start, end)
	if err := r.sealing(ctx, key); err != nil {
		return err
	}
	var buf bytes.Buffer
	ew, err := r.seal(&buf, r.codec, key)
	if err != nil {
		return err
	}
	if _, err := ew.Write(data); err != nil {
		return err
	}
	if err := ew.Close(); err != nil {
		return err
	}
	if Encrypts(key) {
		if err := r.registerRecipients(ctx); err != nil {
			return err
		}
	}
	err = r.st.Put(ctx, key, bytes.NewReader(buf.Bytes()), storage.PutOptions{IfAbsent: true, Size: int64(buf.Len())})
	if errors.Is(err, storage.ErrExist) {
		return r.sameChunk(ctx, key, data)
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// ErrChunkConflict means a streamed chunk already stored under the same offsets holds
// other bytes.
var ErrChunkConflict = errors.New("a streamed chunk already stored under these offsets holds other bytes")

func (r *Repo) sameChunk(ctx context.Context, key string, data []byte) error {
	// A stored chunk that cannot be read is not a conflict (yet): a retry compares.
	o, err := r.open(ctx, key)
	if err != nil {
		return fmt.Errorf("a streamed chunk is already stored under %s, and it could not be read to compare: %w", key, err)
	}
	defer func() { _ = o.Close() }() // read-only
	o.er.SetLimit(int64(len(data)))
	got, err := io.ReadAll(o)
	if err != nil {
		return fmt.Errorf("a streamed chunk is already stored under %s, and it could not be read to compare: %w", key, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("%s: %w", key, ErrChunkConflict)
	}
	return nil
}

// ListWALChunks lists the stored chunks of segment f, by start then end.
func (r *Repo) ListWALChunks(ctx context.Context, f wal.File) ([]Chunk, error) {
	prefix := chunkPrefix(f)
	var cs []Chunk
	err := r.st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		s, e, ok := parseChunk(strings.TrimPrefix(o.Key, prefix))
		if !ok {
			return nil
		}
		if len(cs) == maxChunks {
			return fmt.Errorf("%w: more than %d streamed chunks of one segment", ErrCorrupt, maxChunks)
		}
		cs = append(cs, Chunk{Start: s, End: e, Key: o.Key, Size: o.Size, Stored: o.ModTime})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Start != cs[j].Start {
			return cs[i].Start < cs[j].Start
		}
		return cs[i].End > cs[j].End
	})
	return cs, nil
}

// StreamedSegment is a segment of which only streamed chunks are stored.
type StreamedSegment struct {
	wal.File
	Stored time.Time // when its newest chunk was stored
}

// ListStreamedSegments lists the segments that have streamed chunks, in key order.
// One listing of wal/ (recursive): a segment also archived whole is listed too; the
// caller decides (the whole segment wins).
func (r *Repo) ListStreamedSegments(ctx context.Context) ([]StreamedSegment, error) {
	return r.ListWALAndStreamed(ctx, func(WALObject) error { return nil })
}

// ListWALAndStreamed is ListWAL that also returns, from the same one listing, the
// segments that have streamed chunks (ListStreamedSegments).
func (r *Repo) ListWALAndStreamed(ctx context.Context, fn func(WALObject) error) ([]StreamedSegment, error) {
	var out []StreamedSegment
	err := r.st.List(ctx, walPrefix, func(o storage.ObjectInfo) error {
		i := strings.Index(o.Key, chunkDirSuffix)
		if i < 0 {
			if w, ok := walObjectAt(o); ok {
				return fn(w)
			}
			return nil
		}
		f, err := wal.Parse(o.Key[strings.LastIndexByte(o.Key[:i], '/')+1 : i])
		if err != nil || f.Kind != wal.Segment || o.Key[:i] != WALKey(f) {
			return nil
		}
		if _, _, ok := parseChunk(o.Key[i+len(chunkDirSuffix):]); !ok {
			return nil
		}
		if n := len(out); n > 0 && out[n-1].Name == f.Name {
			if o.ModTime.After(out[n-1].Stored) {
				out[n-1].Stored = o.ModTime
			}
			return nil
		}
		out = append(out, StreamedSegment{File: f, Stored: o.ModTime})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteWALChunks removes the chunks listed (those of a segment now stored whole).
func (r *Repo) DeleteWALChunks(ctx context.Context, cs []Chunk) error {
	keys := make([]string, 0, len(cs))
	for _, c := range cs {
		if !strings.HasPrefix(c.Key, walPrefix) || !strings.Contains(c.Key, chunkDirSuffix) {
			return fmt.Errorf("delete streamed chunks: %s is not one", c.Key)
		}
		keys = append(keys, c.Key)
	}
	if err := storage.DeleteAll(ctx, r.st, keys); err != nil {
		return fmt.Errorf("remove streamed chunks: %w", err)
	}
	return nil
}

// Cover is the chunks that give a segment's bytes from its start with no hole, and
// how far they reach: each chunk is read from Skip on.
type Cover struct {
	Parts []CoverPart
	End   int64
}

// CoverPart is one chunk of a Cover.
type CoverPart struct {
	Chunk
	Skip int64 // bytes of the chunk already given by the parts before it
}

// CoverFromStart picks, from chunks sorted as ListWALChunks returns them, the fewest
// that reach furthest from offset 0 without a hole. Chunks past a hole are not used:
// recovery must stop at the hole.
func CoverFromStart(cs []Chunk) Cover {
	var c Cover
	for i := 0; i < len(cs); {
		// Of the chunks that start at or before the end so far, the one reaching furthest.
		best := -1
		for ; i < len(cs) && cs[i].Start <= c.End; i++ {
			if cs[i].End > c.End && (best < 0 || cs[i].End > cs[best].End) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		c.Parts = append(c.Parts, CoverPart{Chunk: cs[best], Skip: c.End - cs[best].Start})
		c.End = cs[best].End
	}
	return c
}

// ErrNotStreamed means a segment has no streamed bytes from its start.
var ErrNotStreamed = fmt.Errorf("no streamed chunks from the segment's start: %w", storage.ErrNotExist)

// StreamedWAL is the verified bytes streamed of a segment, zero-padded to the
// segment's size (from its long page header), as PostgreSQL's own receiver leaves a
// segment it is writing.
type StreamedWAL struct {
	r       *Repo
	ctx     context.Context
	cover   Cover
	SegSize int64
	// End is how many bytes of the segment were streamed (the rest are zeros).
	End  int64
	head []byte
	cur  *Object
	next int   // index of the next part to open
	left int64 // bytes still to come from cur
	pos  int64 // bytes given so far
	idle int   // reads in a row that gave nothing
}

// OpenStreamedWAL opens what the stream stored of segment f. A segment with no chunk
// from its start is an error wrapping ErrNotStreamed (and storage.ErrNotExist).
func (r *Repo) OpenStreamedWAL(ctx context.Context, f wal.File) (*StreamedWAL, error) {
	if f.Kind != wal.Segment {
		return nil, fmt.Errorf("%s: %w", f.Name, ErrNotStreamed)
	}
	cs, err := r.ListWALChunks(ctx, f)
	if err != nil {
		return nil, err
	}
	cov := CoverFromStart(cs)
	if len(cov.Parts) == 0 {
		return nil, fmt.Errorf("%s: %w", f.Name, ErrNotStreamed)
	}
	s := &StreamedWAL{r: r, ctx: ctx, cover: cov, End: cov.End}
	if err := s.openNext(); err != nil {
		return nil, err
	}
	head := make([]byte, wal.LongHeaderSize)
	n, err := io.ReadFull(s, head)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("%s: streamed chunks: %w", f.Name, err)
	}
	h, err := wal.ParseSegmentHeader(head[:n])
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("%s: streamed chunks: %w: %w", f.Name, ErrCorrupt, err)
	}
	if h.SegSize < 1<<20 || h.SegSize > 1<<30 || h.SegSize&(h.SegSize-1) != 0 || int64(h.SegSize) < cov.End {
		_ = s.Close()
		return nil, fmt.Errorf("%s: streamed chunks: %w: segment size %d with %d bytes streamed", f.Name, ErrCorrupt, h.SegSize, cov.End)
	}
	if start := wal.LSN(f.SegmentNumber(uint64(h.SegSize)) * uint64(h.SegSize)); h.PageAddr != start {
		_ = s.Close()
		return nil, fmt.Errorf("%s: streamed chunks: %w: the first page is for WAL at %s, not %s", f.Name, ErrCorrupt, h.PageAddr, start)
	}
	s.SegSize = int64(h.SegSize)
	s.head = head
	s.pos = 0
	return s, nil
}

func (s *StreamedWAL) openNext() error {
	p := s.cover.Parts[s.next]
	o, err := s.r.open(s.ctx, p.Key)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			// Listed, then gone (the segment completed and its chunks were removed): a
			// failed read, never "not there".
			return fmt.Errorf("%s: %w (%s)", p.Key, ErrVanished, err.Error())
		}
		return err
	}
	o.er.SetLimit(p.End - p.Start)
	if p.Skip > 0 {
		if _, err := io.CopyN(io.Discard, o, p.Skip); err != nil {
			_ = o.Close()
			return fmt.Errorf("%s: %w", p.Key, err)
		}
	}
	s.cur, s.left = o, p.End-p.Start-p.Skip
	s.next++
	return nil
}

// Read gives the streamed bytes, then zeros to the segment's size. A chunk is read
// to its end (so its envelope is verified) before the next one is opened.
func (s *StreamedWAL) Read(p []byte) (int, error) {
	if len(s.head) > 0 {
		n := copy(p, s.head)
		s.head = s.head[n:]
		s.pos += int64(n)
		return n, nil
	}
	for s.cur != nil {
		if s.left > 0 {
			if int64(len(p)) > s.left {
				p = p[:s.left]
			}
			n, err := s.cur.Read(p)
			if n == 0 && err == nil {
				if s.idle++; s.idle > 100 {
					return 0, fmt.Errorf("%s: %w", s.cur.Key(), io.ErrNoProgress)
				}
				continue
			}
			s.idle = 0
			s.left -= int64(n)
			s.pos += int64(n)
			if errors.Is(err, io.EOF) && s.left > 0 {
				return n, fmt.Errorf("%s: %w: ends early", s.cur.Key(), ErrCorrupt)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return n, err
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		// The chunk's bytes are given: reading on verifies its trailer.
		var one [1]byte
		n, err := s.cur.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%s: %w: longer than its name says", s.cur.Key(), ErrCorrupt)
		}
		if !errors.Is(err, io.EOF) {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, fmt.Errorf("%s: %w", s.cur.Key(), err)
		}
		_ = s.cur.Close() // read to its verified end
		s.cur = nil
		if s.next < len(s.cover.Parts) {
			if err := s.openNext(); err != nil {
				return 0, err
			}
		}
	}
	if s.SegSize == 0 { // still reading the header in OpenStreamedWAL
		return 0, io.ErrUnexpectedEOF
	}
	if s.pos >= s.SegSize {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > s.SegSize-s.pos {
		n = s.SegSize - s.pos
	}
	clear(p[:n])
	s.pos += n
	return int(n), nil
}

// Close releases the chunk being read.
func (s *StreamedWAL) Close() error {
	if s.cur != nil {
		err := s.cur.Close()
		s.cur = nil
		return err
	}
	return nil
}

// DeleteStreamed removes every chunk of the streamed segment f.
func (r *Repo) DeleteStreamed(ctx context.Context, f wal.File) error {
	cs, err := r.ListWALChunks(ctx, f)
	if err != nil || len(cs) == 0 {
		return err
	}
	return r.DeleteWALChunks(ctx, cs)
}

// StreamedSize is how many bytes the chunks of the streamed segment f hold.
func (r *Repo) StreamedSize(ctx context.Context, f wal.File) (int64, error) {
	cs, err := r.ListWALChunks(ctx, f)
	var n int64
	for _, c := range cs {
		n += c.Size
	}
	return n, err
}
