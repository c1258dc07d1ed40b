package envelope

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/pgb-project/pgb/internal/compress"
)

// Repository objects are untrusted input: whatever the bytes, reading one never
// panics, and either yields exactly the size its trailer states with a matching
// checksum, or fails with ErrCorrupt (the source here cannot fail, so no error may
// pass for a storage error).
func FuzzReader(f *testing.F) {
	for _, name := range []string{"none", "lz4", "zstd"} {
		c, err := compress.New(name, 0)
		if err != nil {
			f.Fatal(err)
		}
		for _, plain := range [][]byte{nil, []byte("pgb"), walLike(70<<10, 1)} {
			obj := sealWith(f, c, nil, plain)
			f.Add(obj)
			f.Add(obj[:len(obj)-1])        // truncated trailer
			f.Add(obj[:len(obj)/2])        // truncated body
			f.Add(append(obj[:8:8], 0, 0)) // header only
		}
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		r, err := NewReader(bytes.NewReader(obj))
		readFuzzed(t, r, err, ErrNoKey)
	})
}

// readFuzzed reads a fuzzed object whose reader NewReader or NewDecryptingReader
// returned with err: opening may fail only as corrupt or with the key error allowed,
// reading only as corrupt, and what reads to its end has its trailer's size.
func readFuzzed(t *testing.T, r *Reader, err, allowed error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, allowed) {
			t.Fatalf("opening: %v, want ErrCorrupt or %v", err, allowed)
		}
		return
	}
	defer func() { _ = r.Close() }()
	n, err := io.Copy(io.Discard, r)
	switch {
	case err != nil && !errors.Is(err, ErrCorrupt):
		t.Fatalf("read: %v, want ErrCorrupt", err)
	case err == nil && r.Sum().Size != n:
		t.Fatalf("read %d bytes, trailer says %d", n, r.Sum().Size)
	}
}

// An encrypted object read with the key: whatever the bytes, reading never panics, and
// either yields exactly the plain bytes its inner trailer states or fails with
// ErrCorrupt or ErrWrongKey.
func FuzzEncryptedReader(f *testing.F) {
	id, err := age.ParseX25519Identity(fixedIdentity)
	if err != nil {
		f.Fatal(err)
	}
	k := testKeys{recipients: []age.Recipient{id.Recipient()}, identities: []age.Identity{id},
		macKey: bytes.Repeat([]byte{7}, 32), macID: [3]byte{1, 2, 3}, readMAC: true}
	for _, name := range []string{"none", "lz4", "zstd"} {
		c, err := compress.New(name, 0)
		if err != nil {
			f.Fatal(err)
		}
		for _, plain := range [][]byte{nil, []byte("pgb"), walLike(70<<10, 1)} {
			obj := sealWith(f, c, k, plain)
			f.Add(obj)
			f.Add(obj[:len(obj)-1])
			f.Add(obj[:len(obj)/2])
		}
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		r, err := NewDecryptingReader(bytes.NewReader(obj), decrypter{k})
		readFuzzed(t, r, err, ErrWrongKey)
	})
}

// A trailer parses or is refused as ErrCorrupt, and what parses encodes back to the
// same bytes.
func FuzzParseTrailer(f *testing.F) {
	f.Add(encodeTrailer(Sum{Size: 16 << 20, Alg: algCRC32C, Checksum: [32]byte{1, 2, 3, 4}}))
	f.Add(make([]byte, TrailerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseTrailer(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseTrailer: %v, want ErrCorrupt", err)
			}
			return
		}
		if got := encodeTrailer(s); !bytes.Equal(got, b) {
			t.Fatalf("trailer %x parses to %+v, which encodes to %x", b, s, got)
		}
	})
}

// sealWith seals plain with codec, encrypted with enc unless it is nil.
func sealWith(f *testing.F, codec compress.Codec, enc Encrypter, plain []byte) []byte {
	f.Helper()
	var buf bytes.Buffer
	w, err := NewEncryptedWriter(&buf, codec, enc)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}
