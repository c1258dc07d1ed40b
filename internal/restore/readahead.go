package restore

import (
	"io"
	"sync"
)

// Read-ahead of a part: its size per chunk and the chunks decoded ahead of the reader.
const (
	readAheadChunk = 1 << 20
	readAheadDepth = 2
)

// readAhead reads src on its own goroutine, a chunk at a time, ahead of its reader:
// a part is decompressed and its checksum computed on one core while the files it
// holds are checked and written on another, so that one big part (a 1 GiB relation
// segment) does not leave a core idle. It hands on src's bytes and then src's error
// (io.EOF included) exactly as src returned them. Memory: (readAheadDepth + 1) chunks,
// 3 MiB.
type readAhead struct {
	full chan chunk  // filled chunks, in stream order
	free chan []byte // buffers the reader is done with
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	done func() // gives back the slot it was opened with, if any

	cur []byte // unread bytes of the chunk being read
	buf []byte // that chunk's buffer, given back once read
	err error  // src's error, returned once every byte before it was read
}

type chunk struct {
	b   []byte
	err error
}

func newReadAhead(src io.Reader) *readAhead {
	ra := &readAhead{
		full: make(chan chunk, readAheadDepth),
		free: make(chan []byte, readAheadDepth+1),
		stop: make(chan struct{}),
	}
	for range readAheadDepth + 1 {
		ra.free <- make([]byte, readAheadChunk)
	}
	ra.wg.Add(1)
	go ra.fill(src)
	return ra
}

// fill reads src into free buffers until src fails or ends, or Close.
func (ra *readAhead) fill(src io.Reader) {
	defer ra.wg.Done()
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := 0, error(nil)
		for n < len(b) && err == nil {
			select {
			case <-ra.stop: // between reads of src: Close waits for the read in progress only
				return
			default:
			}
			var k int
			k, err = src.Read(b[n:])
			n += k
		}
		select {
		case ra.full <- chunk{b: b[:n], err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)] // never blocks: there are as many slots as buffers
			ra.buf = nil
		}
		c := <-ra.full
		ra.cur, ra.buf, ra.err = c.b, c.b, c.err
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the read-ahead and waits until it no longer reads src (at most the read
// in progress), so that src may be closed after it. It does not close src.
func (ra *readAhead) Close() error {
	ra.once.Do(func() {
		close(ra.stop)
		ra.wg.Wait()
		if ra.done != nil {
			ra.done()
		}
	})
	return nil
}

// readAheadStreams bounds the parts read ahead at once in one restore, so that memory
// does not grow with the workers (one per core by default): at most readAheadStreams ×
// 3 MiB = 24 MiB of read-ahead on a host of any size. Parts are restored biggest first,
// so the big ones, where a second core matters, are the ones read ahead.
const readAheadStreams = 8

// readAheadSlots hands out the read-ahead of one restore: readAheadStreams at once.
type readAheadSlots chan struct{}

func newReadAheadSlots() readAheadSlots { return make(readAheadSlots, readAheadStreams) }

// open returns src read ahead when a slot is free, and src itself (read on the
// caller's goroutine) when none is. Close gives the slot back.
func (s readAheadSlots) open(src io.Reader) io.ReadCloser {
	select {
	case s <- struct{}{}:
	default:
		return io.NopCloser(src)
	}
	ra := newReadAhead(src)
	ra.done = func() { <-s }
	return ra
}
