package envelope

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/pgb-project/pgb/internal/compress"
)

// testKeys is an Encrypter and Decrypter over age keys, as internal/crypt's (which
// imports this package, so cannot be used here).
type testKeys struct {
	recipients []age.Recipient
	identities []age.Identity
	macKey     []byte
	macID      [3]byte
	readMAC    bool // the reader holds the MAC key too
}

func (k testKeys) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	return age.Encrypt(dst, k.recipients...)
}
func (k testKeys) MACKey() ([3]byte, []byte) { return k.macID, k.macKey }
func (k testKeys) RecipientSet() [8]byte {
	var s [8]byte
	copy(s[:], k.recipients[0].(*age.X25519Recipient).String()[4:12])
	return s
}
func (k testKeys) Decrypt(src io.Reader) (io.Reader, error) {
	r, err := age.Decrypt(src, k.identities...)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, ErrWrongKey
	}
	return r, err
}

type decrypter struct{ testKeys }

func (d decrypter) MACKey(id [3]byte) ([]byte, bool) {
	if d.readMAC && id == d.macID {
		return d.macKey, true
	}
	return nil, d.readMAC
}

// fixedIdentity is the identity of testdata/v2-age-zstd.obj (a test key, nothing else).
const fixedIdentity = "AGE-SECRET-KEY-1L39R3EK7EMS87GRFTG5H97ACPZ7WLKJV5JJVVQWL0U0VJG3HJ40STGRKP5"

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{recipients: []age.Recipient{id.Recipient()}, identities: []age.Identity{id},
		macKey: bytes.Repeat([]byte{7}, 32), macID: [3]byte{1, 2, 3}}
}

func sealEncrypted(t *testing.T, codec compress.Codec, k testKeys, plain []byte) ([]byte, *Writer) {
	t.Helper()
	return sealTo(t, codec, k, plain)
}

// openWith decodes obj through Read and WriteTo with d, insisting that they agree.
func openWith(obj []byte, d Decrypter) ([]byte, error) {
	r, err := NewDecryptingReader(bytes.NewReader(obj), d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	viaRead, errRead := io.ReadAll(r)
	r2, err := NewDecryptingReader(bytes.NewReader(obj), d)
	if err != nil {
		return nil, err
	}
	defer r2.Close()
	var buf bytes.Buffer
	_, errTo := io.Copy(&buf, r2)
	if (errRead == nil) != (errTo == nil) || errors.Is(errRead, ErrCorrupt) != errors.Is(errTo, ErrCorrupt) {
		return nil, errors.Join(errors.New("Read and WriteTo disagree"), errRead, errTo)
	}
	if errRead == nil && !bytes.Equal(viaRead, buf.Bytes()) {
		return nil, errors.New("Read and WriteTo decoded different bytes")
	}
	if errRead == nil && r.Sum().Hex() != crcHex(viaRead) {
		return nil, errors.New("Sum is not the CRC-32C of the plain bytes")
	}
	return viaRead, errRead
}

func TestEncryptedRoundTripEveryCodec(t *testing.T) {
	k := newTestKeys(t)
	for _, name := range compress.Names() {
		codec, _ := compress.New(name, 0)
		for _, size := range []int{0, 1, 64 << 10, 64<<10 + 1, 3 << 20} {
			plain := walLike(size, int64(size))
			obj, w := sealEncrypted(t, codec, k, plain)
			if obj[6] != CipherAge {
				t.Fatalf("cipher byte %d", obj[6])
			}
			for _, readMAC := range []bool{false, true} {
				k.readMAC = readMAC
				got, err := openWith(obj, decrypter{k})
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("%s, %d bytes, MAC key %v: err %v, equal %v", name, size, readMAC, err, bytes.Equal(got, plain))
				}
			}
			tr, err := ParseTrailer(obj[len(obj)-TrailerSize:])
			if err != nil || tr != w.Trailer() || !tr.Keyed() || tr.Size != int64(size) {
				t.Fatalf("%s: outer trailer %+v (%v), writer says %+v", name, tr, err, w.Trailer())
			}
		}
	}
}

// Nothing of the plain bytes, their checksum included, is readable in an encrypted
// object: a marker written uncompressed does not appear, nor does the CRC-32C.
func TestEncryptedObjectHidesThePlainBytesAndTheirChecksum(t *testing.T) {
	k := newTestKeys(t)
	marker := []byte("credit card 4111-1111-1111-1111 belongs to alice")
	plain := bytes.Repeat(marker, 1000)
	none, _ := compress.New("none", 0)
	obj, w := sealEncrypted(t, none, k, plain)
	if bytes.Contains(obj, marker[:16]) {
		t.Fatal("the plain bytes are readable in the object")
	}
	sum := w.Sum()
	if bytes.Contains(obj, sum.Checksum[:4]) {
		t.Fatal("the plain CRC-32C is readable in the object")
	}
	clear := seal(t, none, plain)
	if !bytes.Contains(clear, marker[:16]) || !bytes.Contains(clear, sum.Checksum[:4]) {
		t.Fatal("test is wrong: the unencrypted object should show both")
	}
}

func TestEncryptedObjectWithoutOrWithTheWrongKeyIsNotCorruption(t *testing.T) {
	k := newTestKeys(t)
	codec, _ := compress.New("lz4", 0)
	obj, _ := sealEncrypted(t, codec, k, walLike(100_000, 1))
	if _, err := NewReader(bytes.NewReader(obj)); !errors.Is(err, ErrNoKey) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("no key: err = %v, want ErrNoKey and not ErrCorrupt", err)
	}
	other := newTestKeys(t)
	if _, err := NewDecryptingReader(bytes.NewReader(obj), decrypter{other}); !errors.Is(err, ErrWrongKey) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong key: err = %v, want ErrWrongKey and not ErrCorrupt", err)
	}
	// Two recipients: either identity reads it.
	both := k
	both.recipients = append([]age.Recipient{other.recipients[0]}, k.recipients...)
	obj2, _ := sealEncrypted(t, codec, both, walLike(1000, 2))
	for _, d := range []testKeys{k, other} {
		if _, err := openWith(obj2, decrypter{d}); err != nil {
			t.Fatal(err)
		}
	}
	// An unencrypted object reads with or without keys.
	if _, err := openWith(seal(t, codec, []byte("plain")), decrypter{k}); err != nil {
		t.Fatal(err)
	}
}

func TestDamageToEncryptedObjectsIsDetected(t *testing.T) {
	k := newTestKeys(t)
	k.readMAC = true
	for _, name := range compress.Names() {
		codec, _ := compress.New(name, 0)
		obj, _ := sealEncrypted(t, codec, k, walLike(300_000, 7))
		cases := map[string][]byte{
			"flipped age header MAC": flip(obj, bytes.Index(obj, []byte("\n---"))+10),
			"flipped body byte":      flip(obj, len(obj)/2),
			"flipped last body byte": flip(obj, len(obj)-TrailerSize-1),
			"flipped outer size":     flip(obj, len(obj)-TrailerSize+8),
			"flipped outer tag":      flip(obj, len(obj)-TrailerSize+20),
			"another MAC key id":     flip(obj, len(obj)-TrailerSize+5), // a reader holding MAC keys refuses it
			"outer algorithm 1":      set(obj, len(obj)-TrailerSize+4, 1),
			"truncated":              obj[:len(obj)-100],
			"truncated at a chunk":   append(append([]byte(nil), obj[:HeaderSize+200+64<<10]...), obj[len(obj)-TrailerSize:]...),
			"trailer missing":        obj[:len(obj)-TrailerSize],
			"header only":            obj[:HeaderSize],
			"garbage appended":       append(append([]byte(nil), obj[:len(obj)-TrailerSize]...), append([]byte("xxxx"), obj[len(obj)-TrailerSize:]...)...),
			"codec changed":          set(obj, 5, (obj[5]+1)%3),
		}
		// Damage to the age header's stanza is a file key no identity unwraps: the
		// same answer as a wrong key (the message says either).
		if _, err := openWith(flip(obj, HeaderSize+40), decrypter{k}); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) {
			t.Errorf("%s, flipped age stanza byte: err = %v, want ErrCorrupt or ErrWrongKey", name, err)
		}
		for what, bad := range cases {
			got, err := openWith(bad, decrypter{k})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s, %s: err = %v (read %d bytes), want ErrCorrupt", name, what, err, len(got))
			}
		}
		// Without the MAC key the tag cannot be checked; all else still is.
		k2 := k
		k2.readMAC = false
		if _, err := openWith(flip(obj, len(obj)-TrailerSize+20), decrypter{k2}); err != nil {
			t.Errorf("%s: a reader without the MAC key failed on the tag: %v", name, err)
		}
		if _, err := openWith(flip(obj, len(obj)/2), decrypter{k2}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: a reader without the MAC key missed a damaged body: %v", name, err)
		}
	}
}

func TestStorageErrorInAnEncryptedObjectIsNotCorruption(t *testing.T) {
	k := newTestKeys(t)
	codec, _ := compress.New("lz4", 0)
	obj, _ := sealEncrypted(t, codec, k, walLike(1<<20, 3))
	boom := errors.New("connection reset")
	for _, after := range []int{20, len(obj) / 2} {
		r, err := NewDecryptingReader(&failingReader{r: bytes.NewReader(obj), after: after, err: boom}, decrypter{k})
		if err == nil {
			_, err = io.ReadAll(r)
		}
		if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("failing after %d bytes: err = %v, want the storage error and not ErrCorrupt", after, err)
		}
	}
}

// The tag depends on the plain bytes and the MAC key, not on the recipients or the
// codec: a writer recognises its own upload whatever it was encrypted to.
func TestTagsCompareThePlainBytes(t *testing.T) {
	k1, k2 := newTestKeys(t), newTestKeys(t)
	lz4, _ := compress.New("lz4", 0)
	zstd, _ := compress.New("zstd", 0)
	plain := walLike(200_000, 5)
	_, a := sealEncrypted(t, lz4, k1, plain)
	_, b := sealEncrypted(t, zstd, k2, plain)
	if !a.Trailer().Same(b.Trailer()) {
		t.Fatal("the same bytes give different tags")
	}
	if set, ok := a.Trailer().RecipientSet(); !ok || set != k1.RecipientSet() {
		t.Fatalf("the trailer names recipient set %x, want %x", set, k1.RecipientSet())
	}
	if _, ok := a.Sum().RecipientSet(); ok {
		t.Fatal("a CRC-32C sum names a recipient set")
	}
	other := append([]byte(nil), plain...)
	other[100_000] ^= 1
	_, c := sealEncrypted(t, lz4, k1, other)
	if a.Trailer().Same(c.Trailer()) || a.Trailer().MayEqual(c.Trailer()) {
		t.Fatal("different bytes give the same tag")
	}
	k3 := k1
	k3.macKey, k3.macID = bytes.Repeat([]byte{9}, 32), [3]byte{4, 5, 6}
	_, d := sealEncrypted(t, lz4, k3, plain)
	if a.Trailer().Same(d.Trailer()) || !a.Trailer().MayEqual(d.Trailer()) {
		t.Fatal("tags under different MAC keys must not decide, only allow a byte comparison")
	}
	if a.Trailer().Same(a.Sum()) || !a.Trailer().MayEqual(a.Sum()) {
		t.Fatal("a tag and a CRC-32C must not decide")
	}
}

func TestSetLimitStopsAnEncryptedDecompressionBomb(t *testing.T) {
	k := newTestKeys(t)
	zstd, _ := compress.New("zstd", 0)
	obj, _ := sealEncrypted(t, zstd, k, make([]byte, 32<<20))
	r, err := NewDecryptingReader(bytes.NewReader(obj), decrypter{k})
	if err != nil {
		t.Fatal(err)
	}
	r.SetLimit(1 << 20)
	n, err := io.Copy(io.Discard, onlyReader{r})
	if !errors.Is(err, ErrCorrupt) || n > 1<<20 {
		t.Fatalf("err = %v after %d bytes, want ErrCorrupt within the limit", err, n)
	}
}

// The encrypted format stays readable: an object written when it was introduced
// decodes with its identity (testdata/v2-age-zstd.obj; PGB_WRITE_GOLDEN=1 rewrites it).
func TestEncryptedObjectOfTheFirstFormatDecodes(t *testing.T) {
	id, err := age.ParseX25519Identity(fixedIdentity)
	if err != nil {
		t.Fatal(err)
	}
	k := testKeys{recipients: []age.Recipient{id.Recipient()}, identities: []age.Identity{id},
		macKey: bytes.Repeat([]byte{7}, 32), macID: [3]byte{1, 2, 3}, readMAC: true}
	plain := walLike(100_000, 11)
	path := filepath.Join("testdata", "v2-age-zstd.obj")
	if os.Getenv("PGB_WRITE_GOLDEN") != "" {
		zstd, _ := compress.New("zstd", 0)
		obj, _ := sealEncrypted(t, zstd, k, plain)
		if err := os.WriteFile(path, obj, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	obj, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := openWith(obj, decrypter{k})
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, plain))
	}
}
