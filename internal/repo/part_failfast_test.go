package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// failingPutStore refuses every upload at once, without reading the stream (a full
// disk, a bucket that refuses the write, a cancelled backup whose uploads stop).
type failingPutStore struct{ storage.Store }

var errUploadRefused = errors.New("upload refused")

func (failingPutStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	return errUploadRefused
}

// Once a part's upload has failed, writing to the part fails at once, as it did before
// lz4 parts were compressed on several cores: a backup
// worker notices a failed upload (or a cancelled backup, whose uploads stop) only
// through a failed Write, and otherwise goes on reading, tarring and compressing the
// rest of the part — up to part-size (1 GiB by default) and a whole 1 GiB relation
// file — before Close reports it.
func TestPartWriteFailsOnceItsUploadFailed(t *testing.T) {
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Four compressors whatever the host: the parallel lz4 path, where a failed write
	// to the pipe shows only at Close.
	r := New(failingPutStore{mem.New()}, Options{Codec: codec, PartCompressors: 4})
	w, err := r.CreatePart(context.Background(), "b", 1)
	if err != nil {
		t.Fatal(err)
	}
	<-w.ended // the upload has failed
	rnd := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 256<<10)
	const total = 64 << 20
	written := 0
	var werr error
	for written < total && werr == nil {
		for i := range chunk {
			chunk[i] = byte(rnd.Uint32())
		}
		var n int
		n, werr = w.Write(chunk)
		written += n
	}
	_, cerr := w.Close()
	if !errors.Is(cerr, errUploadRefused) {
		t.Errorf("Close = %v, want the upload's error", cerr)
	}
	if !errors.Is(werr, errUploadRefused) || written != 0 {
		t.Errorf("%d MiB written into a part whose upload had failed, then Write = %v: want the upload's error at the first Write", written>>20, werr)
	}
}

// A part aborted mid-stream leaves no goroutine behind (parallel lz4 blocks), and gives
// back the compressors it took from the repository's budget.
func TestAbortedPartLeavesNoGoroutine(t *testing.T) {
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	r := New(mem.New(), Options{Codec: codec, PartCompressors: 4})
	for range 20 {
		w, err := r.CreatePart(context.Background(), "b", 1)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3<<20)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		_, _ = w.Write(buf)
		w.Abort(errors.New("cancelled"))
	}
	if n := len(r.extraCompressors); n != 0 {
		t.Errorf("%d compressors still taken after every part was aborted", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after 20 aborted parts, %d before", n, before)
	}
}

// Parts open at once share a bounded number of extra compressors: memory does not grow
// with workers × cores. Each part still gets one compressor, and a closed part gives
// its extra ones back.
func TestOpenPartsShareABoundedCompressorBudget(t *testing.T) {
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	r := New(mem.New(), Options{Codec: codec, PartCompressors: 4})
	var ws []*PartWriter
	extra := 0
	for n := 1; n <= 10; n++ {
		w, err := r.CreatePart(context.Background(), "b", n)
		if err != nil {
			t.Fatal(err)
		}
		extra += w.extra
		ws = append(ws, w)
	}
	if extra != extraCompressorBudget {
		t.Errorf("10 parts of 4 compressors took %d extra compressors, want the budget, %d", extra, extraCompressorBudget)
	}
	for _, w := range ws {
		if _, err := w.Write(bytes.Repeat([]byte("pgb "), 1<<18)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.extraCompressors); n != 0 {
		t.Errorf("%d compressors still taken after every part was closed", n)
	}
	for n := 1; n <= 10; n++ {
		o, err := r.OpenPart(context.Background(), "b", Part{N: n})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o)
		_ = o.Close()
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("pgb "), 1<<18)) {
			t.Fatalf("part %d: %d bytes read back, %v", n, len(got), err)
		}
	}
}
