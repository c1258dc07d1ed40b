package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
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
