package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func sample(n int) []byte {
	rng := rand.New(rand.NewSource(int64(n)))
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		rng.Read(b[i:min(i+512, n)])
	}
	return b
}

func roundTrip(t *testing.T, c Codec, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// odd-sized writes cross every internal boundary
	for p := plain; len(p) > 0; {
		k := min(len(p), 777_777)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := ByID(c.ID())
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("%s: %v", c.Name(), err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("%s: round trip differs (%d vs %d bytes)", c.Name(), len(got), len(plain))
	}
	return buf.Bytes()
}

// frameSize was the input of one zstd frame when pgb compressed a stream as
// independent frames; the sizes around it still make good test cases.
const frameSize = 4 << 20

func TestRoundTripsAtEveryLevelAndConcurrency(t *testing.T) {
	for _, size := range []int{0, 1, frameSize - 1, frameSize, 3*frameSize + 5} {
		plain := sample(size)
		for _, name := range Names() {
			levels := []int{0}
			if name != "none" {
				levels = append(levels, 1, 5)
			}
			for _, lvl := range levels {
				c, err := New(name, lvl)
				if err != nil {
					t.Fatal(err)
				}
				for _, conc := range []int{1, 2, 4} {
					out := roundTrip(t, WithConcurrency(c, conc), plain)
					if name != "none" && size > 1<<20 && len(out) > size/2 {
						t.Errorf("%s level %d: %d -> %d bytes", name, lvl, size, len(out))
					}
				}
			}
		}
	}
}

func TestParallelZstdIsDeterministic(t *testing.T) {
	plain := sample(5 * frameSize)
	c, _ := New("zstd", 0)
	a := roundTrip(t, WithConcurrency(c, 2), plain)
	b := roundTrip(t, WithConcurrency(c, 2), plain)
	if !bytes.Equal(a, b) {
		t.Fatal("parallel zstd output differs between runs")
	}
}

// Objects written before zstd streams became one frame are concatenations of
// independent frames: they must still decode.
func TestZstdReadsConcatenatedFrames(t *testing.T) {
	plain := sample(3*frameSize + 5)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	var packed []byte
	for p := plain; len(p) > 0; {
		k := min(len(p), frameSize)
		packed = enc.EncodeAll(p[:k], packed)
		p = p[k:]
	}
	c, err := ByID(IDZstd)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.NewReader(bytes.NewReader(packed))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("decoded %d bytes, not the %d written", len(got), len(plain))
	}
}

// The default zstd level is 3 (SpeedDefault), and WithConcurrency writes what a
// single-threaded writer writes: one frame, the same bytes.
func TestZstdDefaultLevelAndOneFrame(t *testing.T) {
	plain := sample(2*frameSize + 3)
	def, _ := New("zstd", 0)
	three, _ := New("zstd", DefaultZstdLevel)
	a := roundTrip(t, def, plain)
	if b := roundTrip(t, three, plain); !bytes.Equal(a, b) {
		t.Error("level 0 does not write what level 3 writes")
	}
	if b := roundTrip(t, WithConcurrency(def, 2), plain); !bytes.Equal(a, b) {
		t.Error("concurrency 2 writes other bytes than concurrency 1")
	}
	// A frame header's magic number appears once.
	if n := bytes.Count(a, []byte{0x28, 0xb5, 0x2f, 0xfd}); n != 1 {
		t.Errorf("%d frame magics in the output, want 1", n)
	}
}

func TestUnknownCodecsAndLevels(t *testing.T) {
	for _, bad := range []struct {
		name  string
		level int
	}{{"gzip", 0}, {"lz4", 10}, {"zstd", 23}, {"none", 1}, {"lz4", -1}} {
		if _, err := New(bad.name, bad.level); err == nil {
			t.Errorf("New(%q, %d) accepted", bad.name, bad.level)
		}
	}
	if _, err := ByID(77); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("ByID(77): %v", err)
	}
	if c, err := New("ZSTD", 3); err != nil || c.Name() != "zstd" {
		t.Errorf("case-insensitive name: %v %v", c, err)
	}
}

// A reused encoder writes what a fresh one writes: nothing of the stream before it
// leaks into the next (as a match into old history, or a stale table entry).
func TestZstdReusedEncoderWritesWhatAFreshOneWrites(t *testing.T) {
	first := sample(3*frameSize + 11)
	second := append(sample(2*frameSize+7), first[:frameSize]...) // matches in first's history
	for _, conc := range []int{1, 2} {
		c, _ := New("zstd", 0)
		c = WithConcurrency(c, conc)
		roundTrip(t, c, first) // its encoder goes back to the pool
		reused := roundTrip(t, c, second)
		fresh, _ := ByID(IDZstd) // no pool: a new encoder
		fresh = WithConcurrency(fresh, conc)
		if want := roundTrip(t, fresh, second); !bytes.Equal(reused, want) {
			t.Errorf("concurrency %d: a reused encoder wrote %d bytes, a fresh one %d", conc, len(reused), len(want))
		}
	}
}

// Streams after the first borrow the encoder instead of building one: its history
// and tables (several MiB) are allocated once per codec, not once per WAL segment.
func TestZstdReusesEncoders(t *testing.T) {
	plain := sample(3 * frameSize)
	c, _ := New("zstd", 0)
	roundTrip(t, c, plain)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const streams = 8
	for range streams {
		w, err := c.NewWriter(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(plain); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / streams; per > 256<<10 {
		t.Errorf("%d bytes allocated per stream: the encoder is not reused", per)
	}
}

// WAL frames declare a 1 MiB window, so a reader of a WAL segment needs no more history
// than that; klauspost's default was 8 MiB (4 MiB at level 1), libzstd's 2 MiB.
// Long streams (backup parts) keep 8 MiB.
func TestZstdWindow(t *testing.T) {
	plain := sample(1 << 20) // several blocks: the frame header declares the window
	for _, lvl := range []int{0, 1, 3, 7} {
		c, _ := New("zstd", lvl)
		for _, tc := range []struct {
			c    Codec
			want uint64
		}{{c, zstdWindow}, {ForLongStreams(c), longStreamWindow}, {WithConcurrency(ForLongStreams(c), 2), longStreamWindow},
			{c, zstdWindow}, {ForLongStreams(c), longStreamWindow}} { // the last two from the pool
			out := roundTrip(t, tc.c, plain)
			var h zstd.Header
			if err := h.Decode(out); err != nil {
				t.Fatal(err)
			}
			if h.WindowSize != tc.want {
				t.Errorf("level %d, long %v: window %d, want %d", lvl, tc.c.(zstdCodec).long, h.WindowSize, tc.want)
			}
		}
	}
}

// A writer is done once closed: a late write fails, a second Close does nothing, and
// the encoder it returned is not handed out twice.
func TestZstdWriterAfterClose(t *testing.T) {
	c, _ := New("zstd", 0)
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("write after Close accepted")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	a, _ := c.NewWriter(io.Discard)
	b, _ := c.NewWriter(io.Discard)
	if a.(*zstdWriter).enc == b.(*zstdWriter).enc {
		t.Error("one encoder handed to two writers")
	}
}

// A stream whose output failed gives its encoder up: the next stream gets a clean one.
func TestZstdFailedStreamIsNotReused(t *testing.T) {
	c, _ := New("zstd", 0)
	w, err := c.NewWriter(failWriter{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(sample(frameSize))
	if err := w.Close(); err == nil {
		t.Fatal("Close succeeded on a failing destination")
	}
	if n := len(c.(zstdCodec).pools.idle[poolKey{concurrency: 1}]); n != 0 {
		t.Errorf("%d encoders pooled after a failed stream", n)
	}
	roundTrip(t, c, sample(frameSize+3))
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// Backup parts are stored byte for byte as pgb wrote them before it dropped
// WithLowerEncoderMem (klauspost's 8 MiB window at level 3): only the cost changed.
func TestZstdLongStreamsWriteWhatTheOldWriterWrote(t *testing.T) {
	plain := append(sample(5*frameSize), sample(3*frameSize)...) // matches 20 MiB back: beyond any window
	plain = append(plain, plain[len(plain)-6<<20:]...)           // and 6 MiB back: within 8 MiB only
	var old bytes.Buffer
	enc, err := zstd.NewWriter(&old, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	c, _ := New("zstd", 0)
	c = ForLongStreams(c)
	for range 2 { // a fresh encoder, then a reused one
		if got := roundTrip(t, c, plain); !bytes.Equal(got, old.Bytes()) {
			t.Fatalf("%d bytes, the old writer wrote %d", len(got), old.Len())
		}
	}
	short, _ := New("zstd", 0)
	if got := roundTrip(t, short, plain); len(got) <= old.Len() {
		t.Errorf("the WAL window found the matches 6 MiB back: %d bytes, 8 MiB window %d", len(got), old.Len())
	}
}

// Repository data is untrusted: a frame that declares a window larger than pgb ever
// writes is refused before the decoder allocates it (512 MiB, klauspost's limit, for a
// forged object of 14 bytes).
func TestZstdReaderRefusesAHugeWindow(t *testing.T) {
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, // magic
		0x00,           // frame header descriptor: no content size, a window descriptor, no checksum
		19 << 3,        // window descriptor: 1 << (10+19) = 512 MiB
		1 | 5<<3, 0, 0, // last block, raw, 5 bytes
		'h', 'e', 'l', 'l', 'o'}
	c, _ := ByID(IDZstd)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := c.NewReader(bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, zstd.ErrWindowSizeExceeded) {
		t.Errorf("read %q, err %v: want the window refused", got, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("%d MiB allocated for a 14-byte object", alloc>>20)
	}
	// The same frame declaring 8 MiB, the most pgb writes, reads.
	frame[5] = 13 << 3
	r, err = c.NewReader(bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "hello" {
		t.Errorf("8 MiB window: %q, %v", got, err)
	}
}
