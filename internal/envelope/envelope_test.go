package envelope

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crc32c"
)

// walLike returns n bytes that compress like WAL: runs of structure and of noise.
func walLike(n int, seed int64) []byte {
	rng := rand.New(rand.NewSource(seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8192 {
		end := min(i+8192, n)
		if rng.Intn(3) == 0 {
			rng.Read(b[i:end])
		} else {
			for j := i; j < end; j++ {
				b[j] = byte(j / 64)
			}
		}
	}
	return b
}

func seal(t *testing.T, codec compress.Codec, plain []byte) []byte {
	t.Helper()
	obj, _ := sealTo(t, codec, nil, plain)
	return obj
}

// sealTo seals plain with codec, encrypted by enc unless it is nil, and checks what
// the writer reports.
func sealTo(t *testing.T, codec compress.Codec, enc Encrypter, plain []byte) ([]byte, *Writer) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewEncryptedWriter(&buf, codec, enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Sum().Size != int64(len(plain)) || w.Sum().Hex() != crcHex(plain) {
		t.Fatalf("writer sum = %+v", w.Sum())
	}
	if w.Written() != int64(buf.Len()) {
		t.Fatalf("Written() = %d, buffer has %d", w.Written(), buf.Len())
	}
	return buf.Bytes(), w
}

// open decodes obj both ways, through Read and through WriteTo, and insists that the
// two agree.
func open(obj []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(obj))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	viaRead, errRead := io.ReadAll(r)

	r2, _ := NewReader(bytes.NewReader(obj))
	defer r2.Close()
	var buf bytes.Buffer
	_, errTo := io.Copy(&buf, r2)
	if (errRead == nil) != (errTo == nil) || errors.Is(errRead, ErrCorrupt) != errors.Is(errTo, ErrCorrupt) {
		return nil, fmt.Errorf("Read and WriteTo disagree: %w vs %w", errRead, errTo)
	}
	if errRead == nil && !bytes.Equal(viaRead, buf.Bytes()) {
		return nil, fmt.Errorf("Read and WriteTo decoded different bytes")
	}
	return viaRead, errRead
}

func TestRoundTripEveryCodec(t *testing.T) {
	for _, name := range compress.Names() {
		for _, size := range []int{0, 1, 47, 48, 49, 100_000, 3 << 20} {
			codec, err := compress.New(name, 0)
			if err != nil {
				t.Fatal(err)
			}
			plain := walLike(size, int64(size))
			obj := seal(t, codec, plain)
			got, err := open(obj)
			if err != nil {
				t.Fatalf("%s/%d: %v", name, size, err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("%s/%d: round trip differs", name, size)
			}
			if name != "none" && size == 3<<20 && len(obj) >= size {
				t.Errorf("%s did not compress: %d -> %d", name, size, len(obj))
			}
		}
	}
}

func TestDamageIsDetected(t *testing.T) {
	plain := walLike(1<<20, 7)
	for _, name := range compress.Names() {
		codec, _ := compress.New(name, 0)
		obj := seal(t, codec, plain)
		cases := map[string][]byte{
			"flipped body byte":    flip(obj, HeaderSize+len(obj)/3),
			"flipped trailer sum":  flip(obj, len(obj)-TrailerSize+16),
			"unknown checksum alg": set(obj, len(obj)-TrailerSize+4, 9),
			"flipped trailer size": flip(obj, len(obj)-TrailerSize+8),
			"truncated":            obj[:len(obj)-100],
			"trailer missing":      obj[:len(obj)-TrailerSize],
			"header only":          obj[:HeaderSize],
			"empty":                nil,
			"bad magic":            flip(obj, 0),
			"unknown codec":        set(obj, 5, 99),
			"unknown cipher":       set(obj, 6, 2),
			"garbage appended":     append(append([]byte(nil), obj[:len(obj)-TrailerSize]...), append([]byte("xxxx"), obj[len(obj)-TrailerSize:]...)...),
		}
		for what, bad := range cases {
			got, err := open(bad)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s, %s: err = %v (read %d bytes), want ErrCorrupt", name, what, err, len(got))
			}
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x55
	return c
}

func set(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

type failingReader struct {
	r     io.Reader
	after int
	err   error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, f.err
	}
	if len(p) > f.after {
		p = p[:f.after]
	}
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

func TestStorageErrorIsNotReportedAsCorruption(t *testing.T) {
	codec, _ := compress.New("lz4", 0)
	obj := seal(t, codec, walLike(1<<20, 3))
	boom := errors.New("connection reset")
	r, err := NewReader(&failingReader{r: bytes.NewReader(obj), after: len(obj) / 2, err: boom})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the storage error and not ErrCorrupt", err)
	}
}

func TestTrailerParsesWhatWriterWrote(t *testing.T) {
	codec, _ := compress.New("zstd", 0)
	plain := walLike(200_000, 9)
	obj := seal(t, codec, plain)
	s, err := ParseTrailer(obj[len(obj)-TrailerSize:])
	if err != nil {
		t.Fatal(err)
	}
	if s.Size != int64(len(plain)) || s.Hex() != crcHex(plain) {
		t.Fatalf("trailer = %+v", s)
	}
}

func crcHex(b []byte) string {
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc32c.Checksum(b))
	return hex.EncodeToString(c[:])
}

// A decompression bomb is stopped as soon as it decodes past what the object may hold
// (SetLimit), not at its trailer: a few KiB of zstd that decode to 64 MiB yield at most
// the limit and one byte, then ErrCorrupt. An object within its limit reads as usual.
func TestSetLimitStopsADecompressionBomb(t *testing.T) {
	c, err := compress.New("zstd", 0)
	if err != nil {
		t.Fatal(err)
	}
	var obj bytes.Buffer
	w, err := NewWriter(&obj, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	const limit = 1 << 20
	for _, via := range []string{"Read", "WriteTo"} {
		for _, tc := range []struct {
			limit int64
			ok    bool
		}{{limit, false}, {64 << 20, true}, {64<<20 - 1, false}} {
			r, err := NewReader(bytes.NewReader(obj.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			r.SetLimit(tc.limit)
			var n int64
			if via == "Read" {
				n, err = io.Copy(io.Discard, onlyReader{r})
			} else {
				n, err = r.WriteTo(io.Discard)
			}
			switch {
			case tc.ok && err != nil:
				t.Errorf("%s, limit %d: %v", via, tc.limit, err)
			case !tc.ok && !errors.Is(err, ErrCorrupt):
				t.Errorf("%s, limit %d: err = %v, want ErrCorrupt", via, tc.limit, err)
			case !tc.ok && n > tc.limit:
				t.Errorf("%s, limit %d: %d bytes handed on", via, tc.limit, n)
			}
		}
	}
}

// onlyReader hides WriteTo, so that io.Copy uses Read.
type onlyReader struct{ io.Reader }
