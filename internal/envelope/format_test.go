package envelope

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
)

// Regenerate testdata/v2-*.golden only on purpose, after a deliberate format change
// (a new version byte) or a codec upgrade whose new bytes the old readers decode:
//
//	go test ./internal/envelope -run TestGoldenBytes -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current writer")

// goldenPlain is the fixed input of the golden-bytes tests: text that compresses, then
// bytes that do not (xorshift32, so that no library's generator can change them). The
// objects in testdata/v1-*.obj were written from exactly these bytes by old pgb code
// (see testdata/README.md): do not change it.
func goldenPlain() []byte {
	var b []byte
	for i := 0; len(b) < 12<<10; i++ {
		b = fmt.Appendf(b, "line %d: the pgb envelope, golden bytes\n", i)
	}
	x := uint32(2463534242)
	for i := 0; i < 4<<10; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b = append(b, byte(x))
	}
	return b
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What this pgb writes is exactly the committed bytes, codec by codec: any change to
// the header, the trailer or a codec's output shows up here, and must come with a new
// format version (and a reader for the old one) or be shown harmless before -update.
func TestGoldenBytes(t *testing.T) {
	for _, name := range compress.Names() {
		codec, err := compress.New(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := seal(t, codec, goldenPlain())
		file := filepath.Join("testdata", "v2-"+name+".golden")
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want := readTestdata(t, "v2-"+name+".golden")
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the writer's bytes differ from %s (%d bytes, want %d; header % x, want % x)",
				name, file, len(got), len(want), got[:min(len(got), HeaderSize)], want[:min(len(want), HeaderSize)])
		}
	}
}

// Objects written by old pgb code decode to their plain bytes: version 1 with the
// SHA-256 trailer (before commit 7dad72f) and with the CRC-32C trailer (since).
func TestObjectsOfEveryOldFormatDecode(t *testing.T) {
	plain := goldenPlain()
	for _, trailer := range []string{"sha256", "crc32c"} {
		for _, name := range compress.Names() {
			file := "v1-" + trailer + "-" + name + ".obj"
			obj := readTestdata(t, file)
			got, err := open(obj)
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("%s: decoded %d bytes that differ from the %d written", file, len(got), len(plain))
			}
			r, err := NewReader(bytes.NewReader(obj))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.WriteTo(&bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			if s := r.Sum(); s.Size != int64(len(plain)) || !strings.Contains(s.String(), trailer) {
				t.Errorf("%s: sum = %s, want %d bytes, %s", file, s, len(plain), trailer)
			}
		}
	}
	if s, err := ParseTrailer(tail(readTestdata(t, "v1-sha256-zstd.obj"))); err != nil || s.Hex() != fmt.Sprintf("%x", sha256.Sum256(plain)) {
		t.Errorf("ParseTrailer of a SHA-256 trailer = %s, %v; want the SHA-256 of the plain bytes", s, err)
	}
}

func tail(obj []byte) []byte { return obj[len(obj)-TrailerSize:] }

// A zstd object written at the level that was zstd's default before level 3 (level 1,
// klauspost SpeedFastest) decodes: a default-level change is harmless to readers.
func TestZstdObjectOfTheOldDefaultLevelDecodes(t *testing.T) {
	got, err := open(readTestdata(t, "v2-zstd-level1.obj"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, goldenPlain()) {
		t.Fatalf("decoded %d bytes that differ from the %d written", len(got), len(goldenPlain()))
	}
}

// Damage to an old object is found as surely as to a new one.
func TestDamageToOldObjectsIsDetected(t *testing.T) {
	for _, file := range []string{"v1-sha256-none.obj", "v1-sha256-zstd.obj", "v1-crc32c-lz4.obj"} {
		obj := readTestdata(t, file)
		cases := map[string][]byte{
			"flipped body byte":   flip(obj, HeaderSize+len(obj)/3),
			"flipped trailer sum": flip(obj, len(obj)-1),
			"flipped size":        flip(obj, len(obj)-TrailerSize+8),
			"truncated":           obj[:len(obj)-TrailerSize-1],
		}
		for what, bad := range cases {
			if got, err := open(bad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s, %s: err = %v (read %d bytes), want ErrCorrupt", file, what, err, len(got))
			}
		}
	}
}

// A reader accepts only the trailers its version defines: version 1 SHA-256 (0) and
// CRC-32C (1), version 2 CRC-32C only.
func TestUnknownChecksumAlgorithmIsRefused(t *testing.T) {
	v1sha := readTestdata(t, "v1-sha256-zstd.obj")
	v1crc := readTestdata(t, "v1-crc32c-zstd.obj")
	codec, _ := compress.New("zstd", 0)
	v2 := seal(t, codec, goldenPlain())
	alg := len(v2) - TrailerSize + 4
	cases := map[string][]byte{
		"version 1, algorithm 2":                  set(v1crc, alg, 2),
		"version 1, algorithm 255":                set(v1sha, alg, 255),
		"version 2, algorithm 0":                  set(v2, alg, 0),
		"version 2, algorithm 2":                  set(v2, alg, 2),
		"version 2 header on a SHA-256 trailer":   set(v1sha, 4, 2),
		"version 1 SHA-256, a nonzero pad byte":   set(v1sha, alg+1, 1),
		"version 2, a nonzero byte after the CRC": set(v2, len(v2)-1, 1),
	}
	for what, bad := range cases {
		if got, err := open(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v (read %d bytes), want ErrCorrupt", what, err, len(got))
		}
	}
}

// An object of a version this pgb does not know is refused before any byte is decoded,
// saying a newer pgb wrote it; version 0 and unknown flags are refused too.
func TestObjectOfANewerFormatIsRefused(t *testing.T) {
	codec, _ := compress.New("lz4", 0)
	obj := seal(t, codec, goldenPlain())
	for _, v := range []byte{3, 255} {
		_, err := NewReader(bytes.NewReader(set(obj, 4, v)))
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "written by a newer pgb") {
			t.Errorf("version %d: err = %v, want ErrCorrupt and ErrNewerFormat, saying written by a newer pgb", v, err)
		}
	}
	for what, bad := range map[string][]byte{"version 0": set(obj, 4, 0), "flags 1": set(obj, 7, 1)} {
		if _, err := NewReader(bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", what, err)
		}
	}
}
