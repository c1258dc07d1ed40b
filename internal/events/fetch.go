package events

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// prefetch is how many segments are fetched ahead of the reader: each is held
// decoded in memory (16 MiB by default), in prefetch+1 buffers that are reused.
const prefetch = 2

// fetchError is a segment that could not be read: a storage failure (the
// scan stops) or a damaged, wrong-sized or vanished object (the scan goes on
// after it).
type fetchError struct {
	index   int // in the run
	storage bool
	err     error
}

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

type fetched struct {
	b   []byte
	err error
}

// fetcher delivers the decoded bytes of consecutive archived segments as one
// stream, fetching up to prefetch segments ahead in a goroutine that ends
// with ctx. A stream cut short by ctx ends in ctx's error, never in io.EOF:
// a cancelled scan must not read as a complete one.
type fetcher struct {
	ctx  context.Context
	ch   <-chan fetched
	free chan<- []byte
	buf  []byte // the segment being read, returned to free when done
	cur  []byte // what is left of it
	err  error
}

func newFetcher(ctx context.Context, rp *repo.Repo, run []wal.File, segSize uint64) *fetcher {
	ch := make(chan fetched, prefetch)
	free := make(chan []byte, prefetch+1)
	for range prefetch + 1 {
		free <- nil // allocated on first use
	}
	go func() {
		defer close(ch)
		for i, f := range run {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			if uint64(cap(buf)) < segSize {
				buf = make([]byte, segSize)
			}
			b, err := fetchSegment(ctx, rp, f, buf[:segSize])
			if err != nil {
				damaged := errors.Is(err, repo.ErrCorrupt) || errors.Is(err, errSegmentSize) ||
					errors.Is(err, storage.ErrNotExist) // deleted since the listing
				err = &fetchError{index: i, storage: !damaged, err: err}
			}
			select {
			case ch <- fetched{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return &fetcher{ctx: ctx, ch: ch, free: free}
}

var errSegmentSize = errors.New("not a whole segment")

// fetchSegment reads the archived segment f into buf, which is exactly one
// segment long: the object must decode to exactly that many bytes.
func fetchSegment(ctx context.Context, rp *repo.Repo, f wal.File, buf []byte) ([]byte, error) {
	o, err := rp.OpenWAL(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	n, err := io.ReadFull(o, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w: %d bytes, a segment has %d", f.Name, errSegmentSize, n, len(buf))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	// The object must end here; reading to its end checks its trailer.
	var one [1]byte
	if m, err := o.Read(one[:]); m > 0 || !errors.Is(err, io.EOF) {
		if m == 0 && err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		return nil, fmt.Errorf("%s: %w: more than %d bytes", f.Name, errSegmentSize, len(buf))
	}
	return buf, nil
}

// Read implements io.Reader over the fetched segments.
func (f *fetcher) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		it, ok := <-f.ch
		if !ok {
			f.err = io.EOF
			if err := f.ctx.Err(); err != nil {
				f.err = fmt.Errorf("reading archived WAL: %w", err)
			}
			return 0, f.err
		}
		if it.err != nil {
			f.err = it.err
			return 0, it.err
		}
		if f.buf != nil {
			f.free <- f.buf // never blocks: it holds every buffer not in use
		}
		f.buf, f.cur = it.b, it.b
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}
