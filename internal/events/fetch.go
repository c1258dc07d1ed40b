package events

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// prefetch is how many segments are fetched ahead of the reader: each is held
// decoded in memory (16 MiB by default).
const prefetch = 2

// fetchError is a segment that could not be read: a storage failure (the
// scan stops) or a damaged or wrong-sized object (the scan goes on after it).
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
// with ctx.
type fetcher struct {
	ch  <-chan fetched
	cur []byte
	err error
}

func newFetcher(ctx context.Context, rp *repo.Repo, run []wal.File, segSize uint64) *fetcher {
	ch := make(chan fetched, prefetch)
	go func() {
		defer close(ch)
		for i, f := range run {
			b, err := fetchSegment(ctx, rp, f, segSize)
			if err != nil {
				err = &fetchError{index: i, storage: !errors.Is(err, repo.ErrCorrupt) && !errors.Is(err, errSegmentSize), err: err}
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
	return &fetcher{ch: ch}
}

var errSegmentSize = errors.New("not a whole segment")

func fetchSegment(ctx context.Context, rp *repo.Repo, f wal.File, segSize uint64) ([]byte, error) {
	o, err := rp.OpenWAL(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	b, err := io.ReadAll(io.LimitReader(o, int64(segSize)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	if uint64(len(b)) != segSize {
		return nil, fmt.Errorf("%s: %w: %d bytes, a segment has %d", f.Name, errSegmentSize, len(b), segSize)
	}
	// A whole segment was read to the object's end, which checked its trailer.
	return b, nil
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
			return 0, io.EOF
		}
		if it.err != nil {
			f.err = it.err
			return 0, it.err
		}
		f.cur = it.b
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}
