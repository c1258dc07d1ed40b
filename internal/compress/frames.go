package compress

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// frameSize is the input of one independently compressed zstd frame.
const frameSize = 4 << 20

// framesWriter compresses a stream as a sequence of independent zstd frames, several
// at a time, and writes them in order. A zstd decoder reads concatenated frames as one
// stream, so readers need nothing special. Memory: about 2 × frameSize per worker.
type framesWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	buf     []byte
	pending []chan frameResult // frames in flight, in stream order
	workers int
	pool    sync.Pool
	err     error
}

type frameResult struct {
	out []byte
	in  []byte
}

func newFramesWriter(w io.Writer, level zstd.EncoderLevel, workers int) (*framesWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(workers),
		zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, fmt.Errorf("zstd writer: %w", err)
	}
	fw := &framesWriter{w: w, enc: enc, workers: workers}
	fw.pool.New = func() any { return make([]byte, 0, frameSize) }
	fw.buf = fw.pool.Get().([]byte)
	return fw, nil
}

func (f *framesWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if f.err != nil {
			return n, f.err
		}
		k := min(len(p), frameSize-len(f.buf))
		f.buf = append(f.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(f.buf) == frameSize {
			f.dispatch()
		}
	}
	return n, f.err
}

// dispatch hands the current buffer to a worker, first writing out the oldest frame
// when all workers are busy.
func (f *framesWriter) dispatch() {
	if len(f.pending) >= f.workers {
		f.flushOne()
	}
	in := f.buf
	f.buf = f.pool.Get().([]byte)[:0]
	ch := make(chan frameResult, 1)
	f.pending = append(f.pending, ch)
	go func() {
		ch <- frameResult{out: f.enc.EncodeAll(in, make([]byte, 0, len(in)/2)), in: in}
	}()
}

func (f *framesWriter) flushOne() {
	r := <-f.pending[0]
	f.pending = f.pending[1:]
	f.pool.Put(r.in[:0]) //nolint:staticcheck // slices are fine in a pool here
	if f.err == nil {
		_, f.err = f.w.Write(r.out)
	}
}

// Close compresses what is buffered and writes every frame. It does not close w.
func (f *framesWriter) Close() error {
	if len(f.buf) > 0 {
		f.dispatch()
	}
	for len(f.pending) > 0 {
		f.flushOne()
	}
	_ = f.enc.Close() // only EncodeAll was used: Close just releases the encoder and writes nothing
	return f.err
}
