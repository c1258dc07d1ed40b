package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/workpool"
)

// segRun is a stretch of archived segments of one timeline with consecutive numbers,
// in WAL order: what one WAL reader decodes, checking each record's link to the one
// before across the segment boundaries.
type segRun struct {
	segs  []repo.WALObject
	first uint64 // segment number of segs[0]
}

// deepRuns cuts the archived segments of the needed runs into stretches of consecutive
// segments (a gap, reported by the continuity check, cuts a run). covered holds the
// keys of the segments the runs hold: the deep check reads those, readAll the rest.
func deepRuns(st *walState, objs []repo.WALObject, needs []need) (runs []segRun, covered map[string]bool) {
	type at struct {
		tli uint32
		no  uint64
	}
	seg := map[at]repo.WALObject{}
	for _, o := range objs {
		if o.Kind == wal.Segment {
			seg[at{o.Timeline, st.segNo(o.File)}] = o
		}
	}
	covered = map[string]bool{}
	for _, n := range needs {
		seen := st.present[n.tli]
		var cur *segRun
		for i := sort.Search(len(seen), func(i int) bool { return seen[i] >= n.from }); i < len(seen) && seen[i] <= n.to; i++ {
			o, ok := seg[at{n.tli, seen[i]}]
			if !ok { // not read for this backup (--backup)
				continue
			}
			if cur == nil || cur.first+uint64(len(cur.segs)) != seen[i] {
				runs = append(runs, segRun{first: seen[i]})
				cur = &runs[len(runs)-1]
			}
			cur.segs = append(cur.segs, o)
			covered[o.Key] = true
		}
	}
	return runs, covered
}

// deep decodes every record of every run with the WAL reader, runs in parallel. The
// runs decoded at once share Concurrency fetches ahead (at least one each).
func (v *verifier) deep(ctx context.Context, st *walState, runs []segRun) error {
	n := max(min(v.opt.Concurrency, len(runs)), 1)
	ahead := min(max(v.opt.Concurrency/n, 1), maxAhead)
	return workpool.Run(ctx, n, runs, func(ctx context.Context, ch <-chan segRun) error {
		for r := range ch {
			if err := v.deepRun(ctx, st, r, ahead); err != nil {
				return err
			}
		}
		return nil
	})
}

// maxAhead bounds the segments fetched ahead of the one being decoded, per run: a
// run's memory is at most maxAhead+1 segments.
const maxAhead = 3

// fetched is one segment of a run, read and checked as readWAL does.
type fetched struct {
	o    repo.WALObject
	buf  []byte // holds data; goes back to the run's pool once decoded
	data []byte // the whole segment; nil when it is unusable (reported)
	err  error  // the check could not go on
	done chan struct{}
}

// deepRun decodes one run. Up to ahead segments are fetched ahead, in parallel, into a
// pool of ahead+1 buffers; the reader takes them in order. A segment that is unusable (its
// object or header is damaged, reported by the fetch) ends the reader's input and
// decoding resumes with a new reader at the next segment; so does a record that does
// not decode (reported here), from the segment after the one being read.
func (v *verifier) deepRun(ctx context.Context, st *walState, run segRun, ahead int) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: no fetch outlives the run
	defer cancel()
	pool := make(chan []byte, ahead+1)
	for range ahead + 1 {
		pool <- nil // allocated on first use
	}
	in := make(chan *fetched, ahead+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		v.prefetch(ctx, st, run.segs, pool, in, &wg)
	}()
	f := &feed{ctx: ctx, in: in, pool: pool}
	for {
		ok, err := f.startNext()
		if err != nil || !ok {
			return err
		}
		if err := v.decode(st, run, f); err != nil {
			return err
		}
	}
}

// prefetch fetches the segments in order, each into a buffer from pool, and hands
// them to out as they start.
func (v *verifier) prefetch(ctx context.Context, st *walState, segs []repo.WALObject, pool chan []byte, out chan<- *fetched, wg *sync.WaitGroup) {
	defer close(out)
	for _, o := range segs {
		var buf []byte
		select {
		case buf = <-pool:
		case <-ctx.Done():
			return
		}
		f := &fetched{o: o, buf: buf, done: make(chan struct{})}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(f.done)
			keep := &capBuffer{b: f.buf[:0], max: int(st.segSize)}
			var ok bool
			ok, f.err = v.readWALKeep(ctx, st, o, make([]byte, 64<<10), keep)
			f.buf = keep.b
			if ok && !keep.over && uint64(len(keep.b)) == st.segSize {
				f.data = keep.b
			}
		}()
		select {
		case out <- f:
		case <-ctx.Done():
			return
		}
	}
}

// capBuffer keeps what is written to it, up to max bytes; over says more came.
type capBuffer struct {
	b    []byte
	max  int
	over bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if c.b == nil {
		c.b = make([]byte, 0, c.max)
	}
	n := min(len(p), c.max-len(c.b))
	c.b = append(c.b, p[:n]...)
	c.over = c.over || n < len(p)
	return len(p), nil
}

// feed is the input of one WAL reader: consecutive usable segments of a run. It ends
// (io.EOF) at the end of the run or before an unusable segment.
type feed struct {
	ctx   context.Context
	in    <-chan *fetched
	pool  chan<- []byte
	cur   *fetched // being read
	off   int
	ended bool  // the current reader's input has ended
	bytes int64 // bytes given to readers
}

// startNext makes the next usable segment current, for a new reader; ok is false at
// the end of the run.
func (f *feed) startNext() (ok bool, err error) {
	f.release()
	for {
		n, err := f.next()
		if err != nil || n == nil {
			return false, err
		}
		if n.data != nil {
			f.cur, f.off, f.ended = n, 0, false
			return true, nil
		}
		f.give(n)
	}
}

// next waits for the next fetched segment; nil at the end of the run.
func (f *feed) next() (*fetched, error) {
	var n *fetched
	select {
	case n = <-f.in:
	case <-f.ctx.Done():
		return nil, context.Cause(f.ctx)
	}
	if n == nil {
		return nil, nil
	}
	select {
	case <-n.done:
	case <-f.ctx.Done():
		return nil, context.Cause(f.ctx)
	}
	if n.err != nil {
		return nil, n.err
	}
	return n, nil
}

func (f *feed) Read(p []byte) (int, error) {
	for f.cur == nil || f.off == len(f.cur.data) {
		if f.ended {
			return 0, io.EOF
		}
		f.release()
		n, err := f.next()
		if err != nil {
			return 0, err
		}
		if n == nil || n.data == nil {
			if n != nil {
				f.give(n) // unusable: reported by its fetch
			}
			f.ended = true
			return 0, io.EOF
		}
		f.cur, f.off = n, 0
	}
	k := copy(p, f.cur.data[f.off:])
	f.off += k
	f.bytes += int64(k)
	return k, nil
}

// release gives the current segment's buffer back: the reader copies what it keeps.
func (f *feed) release() {
	if f.cur != nil {
		f.give(f.cur)
		f.cur = nil
	}
}

func (f *feed) give(n *fetched) { f.pool <- n.buf }

// decode reads records with one reader from the feed's current segment on, until its
// input ends or a record does not decode. What ends the reader is judged here:
//
//   - io.EOF: the input ended after a whole record (or a segment switch's padding).
//   - ErrTruncated when the input has ended: the last record goes on in a segment that
//     is not in the run — not archived yet (the newest segment), missing (a gap, already
//     reported) or unusable (already reported), or on the next timeline after a switch.
//   - ErrEndOfWAL (zeros where a record should begin) is a problem wherever it is:
//     PostgreSQL archives a segment only once its records run to its end or to a
//     segment switch (whose padding the reader skips); a segment cut short is .partial.
//   - anything else wrapping ErrCorruptRecord, ErrTruncated or ErrEndOfWAL: a problem
//     naming the segment the record starts in and the LSN.
func (v *verifier) decode(st *walState, run segRun, f *feed) error {
	start := wal.LSN(st.segNo(f.cur.o.File) * st.segSize)
	rd, err := wal.NewReader(f, st.segSize, start)
	if err != nil {
		return err
	}
	at := start // where the next record begins, or just before
	var n int64
	before := f.bytes
	defer func() {
		v.nrec.Add(n)
		v.ndec.Add(f.bytes - before)
	}()
	for {
		rec, err := rd.Next()
		if err == nil {
			n++
			at = rec.EndLSN
			continue
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, wal.ErrTruncated) && f.ended:
			return nil
		case errors.Is(err, wal.ErrCorruptRecord), errors.Is(err, wal.ErrTruncated), errors.Is(err, wal.ErrEndOfWAL):
			v.recordProblem(st, run, f, at, err)
			f.ended = true // the next reader starts at the next segment
			return nil
		default:
			return err
		}
	}
}

// recordProblem reports a record that does not decode, on the segment where it begins.
func (v *verifier) recordProblem(st *walState, run segRun, f *feed, at wal.LSN, err error) {
	key := run.segs[0].Key
	if i := uint64(at)/st.segSize - run.first; i < uint64(len(run.segs)) {
		key = run.segs[i].Key
	}
	what := "WAL record does not decode: " + err.Error()
	if errors.Is(err, wal.ErrEndOfWAL) {
		what = "WAL ends early: " + err.Error() + ", but PostgreSQL archives a segment only once its records run to its end (or to a segment switch)"
	}
	if f.cur != nil && f.cur.o.Key != key {
		what += fmt.Sprintf(" (the record goes on into %s)", f.cur.o.Name)
	}
	v.problem(key, "", "%s", what)
}
