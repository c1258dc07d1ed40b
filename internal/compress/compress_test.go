package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
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
