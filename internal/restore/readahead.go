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
// (io.EOF included) exactly as src returned them. Memory: (readAheadDepth + 1) chunks.
type readAhead struct {
	full chan chunk  // filled chunks, in stream order
	free chan []byte // buffers the reader is done with
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

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
	ra.once.Do(func() { close(ra.stop) })
	ra.wg.Wait()
	return nil
}
