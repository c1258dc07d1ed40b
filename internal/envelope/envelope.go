// Package envelope is the on-disk format of every object pgb stores: a small header
// naming the codec and the cipher, the encoded stream, and a trailer with the size and
// checksum of the original bytes. Readers verify the trailer at the end of the stream,
// so no byte is handed on as good unless its checksum matched.
//
//	header  (8 bytes):  "PGB\x00" | version (2) | codec id | cipher id | flags (0)
//	body:               cipher(codec(plain bytes)): compress, then encrypt, never the reverse
//	trailer (48 bytes): "PGBT" | checksum algorithm | key id (3 bytes; zero unless keyed) |
//	                    plain size uint64 LE | checksum (32 bytes, left-aligned, zero-padded)
//
// Cipher 0 (none): the body is codec(plain) and the trailer's checksum is the CRC-32C
// (algorithm 1) of the plain bytes, as in PostgreSQL's own WAL records and backup
// manifests: hardware-accelerated at tens of GB/s, so verifying costs nothing next to
// decompression, and ample for detecting damage.
//
// Cipher 1 (age, see Encrypter): the body is an age stream whose plaintext is
// codec(plain) followed by an inner trailer, the cipher 0 trailer (CRC-32C and size of
// the plain bytes), so the plain checksum is only readable with the key. The outer
// trailer carries the plain size and a keyed tag (algorithm 2): HMAC-SHA-256, under the
// writers' MAC key (named by the key id), of the plain size, CRC-32C and CRC-32 (IEEE).
// A writer that cannot decrypt compares a duplicate upload by that tag; someone with the
// objects but not the MAC key learns nothing from it. age's AEAD makes damage and
// truncation of the body fail, and the inner trailer then checks the decoding. age does
// not authenticate the writer (anyone who knows a recipient can make an object that
// decrypts): a reader that holds the MAC key checks the tag too, and refuses an object
// tagged under a key it does not hold. The body is compressed first because ciphertext
// does not compress.
//
// Versions (the header's fifth byte). Any change to these bytes takes a new version,
// and readers keep reading every old one; TestGoldenBytes holds the writer to it.
//
//	1  written before commit 7dad72f: trailer "PGBT" | 4 zero bytes | plain size |
//	   SHA-256 of the plain bytes (32 bytes)
//	1  written from commit 7dad72f until version 2: the version 2 trailer, CRC-32C
//	   (algorithm 1), under the same version byte; told apart by the algorithm byte
//	2  written now: the trailer above, algorithm 1 (cipher 0; cipher 1's inner trailer)
//	   or 2 (cipher 1's outer trailer)
//
// A reader refuses, as ErrCorrupt, a checksum algorithm its version does not define, a
// nonzero flags byte, and a version it does not know (a newer one also as
// ErrNewerFormat: written by a newer pgb).
//
// See docs/repository-format.md.
package envelope

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crc32c"
)

// Sizes of the fixed parts.
const (
	HeaderSize  = 8
	TrailerSize = 48
	// Overhead is what the envelope adds around the encoded body.
	Overhead = HeaderSize + TrailerSize
)

var (
	headerMagic  = []byte("PGB\x00")
	trailerMagic = []byte("PGBT")
)

// Format versions (see the package comment).
const (
	version1      = 1 // SHA-256 or CRC-32C trailer
	version2      = 2 // CRC-32C trailer
	formatVersion = version2
)

// Checksum algorithms recorded in the trailer.
const (
	algSHA256 = 0 // version 1 only: written before the trailer had an algorithm byte
	algCRC32C = 1
	algTag    = 2 // cipher 1 only: HMAC-SHA-256 under a MAC key of size, CRC-32C and CRC-32
)

// Cipher ids (the header's seventh byte).
const (
	CipherNone = 0
	CipherAge  = 1
)

// Encrypter encrypts the bodies of objects written with cipher 1. Implementations
// live outside this package (internal/crypt), which knows nothing of keys.
type Encrypter interface {
	// Encrypt returns a writer that encrypts what is written to it into dst; its
	// Close finishes the ciphertext (it does not close dst).
	Encrypt(dst io.Writer) (io.WriteCloser, error)
	// MACKey is the writers' secret key the outer trailer's tag is computed with, and
	// its id (recorded in the trailer, so that tags under other keys are told apart).
	MACKey() (id [3]byte, key []byte)
	// RecipientSet identifies the recipients Encrypt encrypts to; it is recorded in
	// the outer trailer, so that which keys can read an object shows from one ranged
	// read (pgb status), and is no secret.
	RecipientSet() [8]byte
}

// Decrypter decrypts the bodies of objects written with cipher 1.
type Decrypter interface {
	// Decrypt returns the plaintext of the age stream src. An error wrapping
	// ErrWrongKey means no identity it holds can decrypt the stream.
	Decrypt(src io.Reader) (io.Reader, error)
	// MACKey is the MAC key with this id, or nil when it is not held. check says
	// whether the reader holds MAC keys at all: if it does, an object tagged under one
	// it does not hold is refused; if not, the outer tag is not checked (age's AEAD
	// and the inner trailer still are).
	MACKey(id [3]byte) (key []byte, check bool)
}

// ErrNoKey means an object is encrypted and no identity was given to decrypt it.
var ErrNoKey = errors.New("the object is encrypted and no identity to decrypt it is configured: set encryption-identity-file (PGB_ENCRYPTION_IDENTITY_FILE)")

// ErrWrongKey means an object is encrypted and none of the identities given can
// decrypt it: it was written for other recipients.
var ErrWrongKey = errors.New("the object is encrypted for other recipients (or its encryption header is damaged): none of the identities in encryption-identity-file can decrypt it")

// Tag is the outer trailer's checksum field of cipher 1 objects: the keyed tag, the
// first 24 bytes of HMAC-SHA-256 under key of the plain size, CRC-32C and CRC-32
// (IEEE), then the 8-byte id of the recipient set the object is encrypted to. The two
// CRCs make an accidental match of different contents a 2^-64 chance; the key makes
// the tag tell nothing to whoever lacks it.
func Tag(key []byte, id [3]byte, set [8]byte, size int64, crc32c, crcIEEE uint32) Sum {
	m := hmac.New(sha256.New, key)
	var b [8 + 8 + 4 + 4]byte
	copy(b[:], "pgbtag1\x00")
	binary.LittleEndian.PutUint64(b[8:], uint64(size))
	binary.BigEndian.PutUint32(b[16:], crc32c)
	binary.BigEndian.PutUint32(b[20:], crcIEEE)
	m.Write(b[:])
	s := Sum{Size: size, Alg: algTag, KeyID: id}
	copy(s.Checksum[:tagSize], m.Sum(nil))
	copy(s.Checksum[tagSize:], set[:])
	return s
}

// tagSize is the bytes of the HMAC a tag keeps; the recipient set's id follows.
const tagSize = 24

// RecipientSet is the id of the recipient set a keyed tag's object is encrypted to;
// ok is false for other sums.
func (s Sum) RecipientSet() (set [8]byte, ok bool) {
	if s.Alg != algTag {
		return set, false
	}
	copy(set[:], s.Checksum[tagSize:])
	return set, true
}

func newHash() hash.Hash { return crc32c.New() }

// ErrCorrupt means an object failed verification: bad header or trailer, a stream that
// does not decode, or a size or checksum that does not match.
var ErrCorrupt = errors.New("corrupt object")

// ErrNewerFormat means an object has a format version this pgb does not know yet: a
// newer pgb wrote it. Such an error wraps ErrCorrupt too (this pgb cannot verify it).
var ErrNewerFormat = errors.New("written by a newer pgb")

// Sum identifies the plain content of an object: its size and checksum.
type Sum struct {
	Size     int64
	Alg      byte     // checksum algorithm (1 = CRC-32C; 0 = SHA-256, in old version 1 objects; 2 = keyed tag)
	KeyID    [3]byte  // algorithm 2: which MAC key the tag is under
	Checksum [32]byte // left-aligned; CRC-32C uses the first 4 bytes, big-endian
}

// Hex is the checksum in hex.
func (s Sum) Hex() string {
	if s.Alg == algCRC32C {
		return hex.EncodeToString(s.Checksum[:4])
	}
	return hex.EncodeToString(s.Checksum[:])
}

// Keyed says whether the checksum is a keyed tag (an encrypted object's outer trailer).
func (s Sum) Keyed() bool { return s.Alg == algTag }

// String describes the sum for messages.
func (s Sum) String() string {
	switch s.Alg {
	case algSHA256:
		return fmt.Sprintf("%d bytes, sha256 %s", s.Size, s.Hex())
	case algTag:
		return fmt.Sprintf("%d bytes, encrypted, tag %s under MAC key %x", s.Size, s.Hex()[:16], s.KeyID)
	}
	return fmt.Sprintf("%d bytes, crc32c %s", s.Size, s.Hex())
}

// MayEqual reports whether two objects with these sums may hold the same plain bytes:
// the sizes match and so do the checksums, or the checksums cannot be compared (one
// object's trailer is of another algorithm, or a tag under another MAC key). Only a
// byte comparison settles it, except where Same does.
func (s Sum) MayEqual(o Sum) bool {
	if s.Size != o.Size || s.Alg != o.Alg || s.KeyID != o.KeyID {
		return s.Size == o.Size
	}
	if s.Alg == algTag {
		return [tagSize]byte(s.Checksum[:tagSize]) == [tagSize]byte(o.Checksum[:tagSize])
	}
	return s.Checksum == o.Checksum
}

// Same reports whether two keyed tags under the same MAC key match: the objects hold
// the same plain bytes, but for a 2^-64 chance (see Tag), with no byte comparison,
// whatever recipients each was encrypted to.
func (s Sum) Same(o Sum) bool {
	return s.Alg == algTag && o.Alg == algTag && s.KeyID == o.KeyID && s.Size == o.Size &&
		[tagSize]byte(s.Checksum[:tagSize]) == [tagSize]byte(o.Checksum[:tagSize])
}

func sumOf(h hash.Hash, n int64) Sum {
	s := Sum{Size: n, Alg: algCRC32C}
	copy(s.Checksum[:], h.Sum(nil))
	return s
}

// Writer encodes a stream into the envelope format.
type Writer struct {
	enc   io.WriteCloser
	hash  hash.Hash
	n     int64
	sum   Sum
	done  bool
	count *countingWriter

	// cipher 1 only
	cipher  io.WriteCloser // the age stream the codec writes into
	ieee    hash.Hash32    // CRC-32 (IEEE) of the plain bytes, for the tag
	macKey  []byte
	macID   [3]byte
	set     [8]byte
	trailer Sum // the outer trailer, once closed
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewWriter writes the header to dst and returns a Writer; Close writes the trailer.
func NewWriter(dst io.Writer, codec compress.Codec) (*Writer, error) {
	return NewEncryptedWriter(dst, codec, nil)
}

// NewEncryptedWriter is NewWriter with the body encrypted by enc (cipher 1); a nil enc
// writes cipher 0, as NewWriter.
func NewEncryptedWriter(dst io.Writer, codec compress.Codec, enc Encrypter) (*Writer, error) {
	cw := &countingWriter{w: dst}
	cipher := byte(CipherNone)
	if enc != nil {
		cipher = CipherAge
	}
	hdr := append(append([]byte(nil), headerMagic...), formatVersion, codec.ID(), cipher, 0)
	if _, err := cw.Write(hdr); err != nil {
		return nil, err
	}
	w := &Writer{hash: newHash(), count: cw}
	var body io.Writer = cw
	if enc != nil {
		c, err := enc.Encrypt(cw)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		w.cipher, body = c, c
		w.ieee = crc32.NewIEEE()
		w.macID, w.macKey = enc.MACKey()
		w.set = enc.RecipientSet()
		if len(w.macKey) == 0 {
			return nil, errors.New("encrypt: no MAC key")
		}
	}
	e, err := codec.NewWriter(body)
	if err != nil {
		return nil, err
	}
	w.enc = e
	return w, nil
}

// Write encodes p.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.enc.Write(p)
	w.hash.Write(p[:n])
	if w.ieee != nil {
		w.ieee.Write(p[:n])
	}
	w.n += int64(n)
	return n, err
}

// Close flushes the codec and writes the trailer. It does not close dst.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.enc.Close(); err != nil {
		return err
	}
	w.sum = sumOf(w.hash, w.n)
	w.trailer = w.sum
	if w.cipher != nil {
		if _, err := w.cipher.Write(encodeTrailer(w.sum)); err != nil {
			return err
		}
		if err := w.cipher.Close(); err != nil {
			return err
		}
		w.trailer = Tag(w.macKey, w.macID, w.set, w.n, binary.BigEndian.Uint32(w.sum.Checksum[:4]), w.ieee.Sum32())
	}
	_, err := w.count.Write(encodeTrailer(w.trailer))
	return err
}

// Sum is the size and CRC-32C of the plain bytes written; valid after Close.
func (w *Writer) Sum() Sum { return w.sum }

// Trailer is what the object's (outer) trailer records, as ParseTrailer reads it back:
// Sum for a cipher 0 object, the keyed tag for a cipher 1 one. Valid after Close.
func (w *Writer) Trailer() Sum { return w.trailer }

// Written is the number of encoded bytes written to dst so far (after Close: the
// whole object's size).
func (w *Writer) Written() int64 { return w.count.n }

func encodeTrailer(s Sum) []byte {
	t := make([]byte, TrailerSize)
	copy(t, trailerMagic)
	t[4] = s.Alg
	copy(t[5:8], s.KeyID[:])
	binary.LittleEndian.PutUint64(t[8:], uint64(s.Size))
	copy(t[16:], s.Checksum[:])
	return t
}

// ParseTrailer decodes the last TrailerSize bytes of an object, of any version this
// pgb reads (without the header it cannot tell which: the Reader, which has the header,
// also refuses an algorithm the object's version does not define).
func ParseTrailer(t []byte) (Sum, error) {
	if len(t) != TrailerSize || !bytes.Equal(t[:4], trailerMagic) {
		return Sum{}, fmt.Errorf("%w: bad trailer", ErrCorrupt)
	}
	if t[4] != algCRC32C && t[4] != algSHA256 && t[4] != algTag {
		return Sum{}, fmt.Errorf("%w: unknown checksum algorithm %d", ErrCorrupt, t[4])
	}
	if t[4] != algTag && !allZero(t[5:8]) {
		return Sum{}, fmt.Errorf("%w: bad trailer (reserved bytes are not zero)", ErrCorrupt)
	}
	s := Sum{Alg: t[4], Size: int64(binary.LittleEndian.Uint64(t[8:]))}
	copy(s.KeyID[:], t[5:8])
	copy(s.Checksum[:], t[16:])
	if s.Size < 0 {
		return Sum{}, fmt.Errorf("%w: bad trailer (size %d)", ErrCorrupt, s.Size)
	}
	return s, nil
}

// parseTrailerOf is ParseTrailer for an object of the given version: a cipher 0
// object's trailer, or a cipher 1 object's inner one.
func parseTrailerOf(version byte, t []byte) (Sum, error) {
	s, err := ParseTrailer(t)
	if err != nil {
		return Sum{}, err
	}
	if (s.Alg == algSHA256 && version != version1) || s.Alg == algTag {
		return Sum{}, fmt.Errorf("%w: checksum algorithm %d is not defined in object format version %d", ErrCorrupt, s.Alg, version)
	}
	return s, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Header is what an object's header says.
type Header struct {
	Version byte
	Codec   compress.Codec
	Cipher  byte
}

// ParseHeader decodes the first HeaderSize bytes of an object.
func ParseHeader(h []byte) (Header, error) {
	if len(h) != HeaderSize || !bytes.Equal(h[:4], headerMagic) {
		return Header{}, fmt.Errorf("%w: not a pgb object (bad header)", ErrCorrupt)
	}
	switch v := h[4]; {
	case v > formatVersion:
		return Header{}, fmt.Errorf("%w: %w: object format version %d, this pgb reads versions %d to %d: upgrade pgb",
			ErrCorrupt, ErrNewerFormat, v, version1, formatVersion)
	case v < version1:
		return Header{}, fmt.Errorf("%w: object format version %d is not known to this pgb", ErrCorrupt, v)
	}
	if h[7] != 0 {
		return Header{}, fmt.Errorf("%w: %w: object flags %#x are not known to this pgb: upgrade pgb", ErrCorrupt, ErrNewerFormat, h[7])
	}
	codec, err := compress.ByID(h[5])
	if err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch {
	case h[6] > CipherAge:
		return Header{}, fmt.Errorf("%w: %w: object cipher %d is not known to this pgb: upgrade pgb", ErrCorrupt, ErrNewerFormat, h[6])
	case h[6] == CipherAge && h[4] < version2:
		return Header{}, fmt.Errorf("%w: cipher %d is not defined in object format version %d", ErrCorrupt, h[6], h[4])
	}
	return Header{Version: h[4], Codec: codec, Cipher: h[6]}, nil
}

// Reader decodes an envelope stream and verifies it. Read returns io.EOF only after
// the size and checksum in the trailer matched what was decoded; any mismatch is an
// error wrapping ErrCorrupt.
type Reader struct {
	hold    *holdback // what the codec reads from: the body (cipher 0) or the decrypted body (cipher 1)
	outer   *holdback // cipher 1: the encrypted body, less the outer trailer
	crypt   Decrypter // cipher 1
	ieee    hash.Hash32
	dec     io.ReadCloser
	version byte
	hash    hash.Hash // CRC-32C
	sha     hash.Hash // version 1 only: its trailer may be SHA-256, which shows only at the end
	n       int64
	limit   int64 // SetLimit; 0: none
	sum     Sum
	err     error
}

// SetLimit makes reading fail with ErrCorrupt as soon as the object decodes to more
// than n plain bytes: a damaged or hostile object (a decompression bomb) is stopped
// there, not at its trailer. The caller knows the most the object may hold (a WAL
// segment's size, a backup part's files and their tar headers).
func (r *Reader) SetLimit(n int64) { r.limit = n }

// overLimit is the error of a read past SetLimit.
func (r *Reader) overLimit() error {
	return fmt.Errorf("%w: decodes to more than the %d bytes it may hold", ErrCorrupt, r.limit)
}

// NewReader reads the header from src and returns a verifying Reader. A version 1
// object is hashed with SHA-256 as well as CRC-32C, since which of the two its trailer
// holds shows only at its end: reading one costs more CPU than a version 2 object. An
// encrypted object (cipher 1) is refused with ErrNoKey: see NewDecryptingReader.
func NewReader(src io.Reader) (*Reader, error) {
	return NewDecryptingReader(src, nil)
}

// NewDecryptingReader is NewReader that decrypts cipher 1 objects with d (nil: none
// can be read, ErrNoKey). The header of the age stream is read here: an object no
// identity of d can decrypt fails here with an error wrapping ErrWrongKey.
func NewDecryptingReader(src io.Reader, d Decrypter) (*Reader, error) {
	hb := make([]byte, HeaderSize)
	if _, err := io.ReadFull(src, hb); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: object shorter than its header", ErrCorrupt)
		}
		return nil, err
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return nil, err
	}
	r := &Reader{version: h.Version, hash: newHash()}
	hold := newHoldback(src)
	if h.Cipher == CipherAge {
		if d == nil {
			return nil, ErrNoKey
		}
		plain, err := d.Decrypt(hold)
		if err != nil {
			if se := hold.srcErr; se != nil && !errors.Is(se, io.EOF) {
				return nil, fmt.Errorf("read object: %w", se) // storage failed, not the data
			}
			if errors.Is(err, ErrWrongKey) || errors.Is(err, ErrNoKey) {
				return nil, err // not the object's fault
			}
			return nil, fmt.Errorf("%w: the encrypted body does not open: %w", ErrCorrupt, err)
		}
		r.outer, r.crypt, r.ieee = hold, d, crc32.NewIEEE()
		hold = newHoldback(plain)
	}
	if h.Version == version1 {
		r.sha = sha256.New()
	}
	dec, err := h.Codec.NewReader(hold)
	if err != nil {
		return nil, err
	}
	r.hold, r.dec = hold, dec
	return r, nil
}

// sumData hashes decoded bytes.
func (r *Reader) sumData(p []byte) {
	r.hash.Write(p)
	if r.sha != nil {
		r.sha.Write(p)
	}
	if r.ieee != nil {
		r.ieee.Write(p)
	}
	r.n += int64(len(p))
}

// Read decodes into p.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.limit > 0 && int64(len(p)) > r.limit-r.n+1 {
		p = p[:max(r.limit-r.n+1, 1)] // read at most one byte past the limit
	}
	n, err := r.dec.Read(p)
	r.sumData(p[:n])
	if r.limit > 0 && r.n > r.limit {
		r.err = r.overLimit()
		return 0, r.err
	}
	if errors.Is(err, io.EOF) {
		err = r.finish()
		r.err = err
	} else if err != nil {
		err = r.wrapDecodeErr(err)
		r.err = err
	}
	return n, err
}

// WriteTo decodes the whole stream into w in large chunks. Like Read, it fails unless
// the trailer matched.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 128<<10)
	var total int64
	for r.err == nil {
		chunk := buf
		if r.limit > 0 && int64(len(chunk)) > r.limit-r.n+1 {
			chunk = chunk[:max(r.limit-r.n+1, 1)] // read at most one byte past the limit
		}
		n, rerr := io.ReadFull(r.dec, chunk)
		if r.limit > 0 && r.n+int64(n) > r.limit {
			r.err = r.overLimit()
			return total, r.err
		}
		if n > 0 {
			r.sumData(buf[:n])
			_, werr := w.Write(buf[:n])
			total += int64(n)
			if werr != nil {
				r.err = werr
				return total, werr
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			r.err = r.finish()
		default:
			r.err = r.wrapDecodeErr(rerr)
		}
	}
	if errors.Is(r.err, io.EOF) {
		return total, nil
	}
	return total, r.err
}

func (r *Reader) wrapDecodeErr(err error) error {
	if se := r.storageErr(); se != nil {
		return fmt.Errorf("read object: %w", se) // storage failed, not the data
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err) // the body does not decode (or, encrypted, does not authenticate)
}

// storageErr is the error reading the object failed with, if it did: not the data's
// fault. For an encrypted object the inner holdback's error is the cipher's (damage).
func (r *Reader) storageErr() error {
	h := r.hold
	if r.outer != nil {
		h = r.outer
	}
	if se := h.srcErr; se != nil && !errors.Is(se, io.EOF) {
		return se
	}
	return nil
}

func (r *Reader) finish() error {
	// The codec may stop before consuming all of the body (trailing garbage): drain it.
	if n, err := io.Copy(io.Discard, r.hold); err != nil {
		return r.wrapDecodeErr(err)
	} else if n > 0 {
		return fmt.Errorf("%w: %d bytes of garbage after the encoded stream", ErrCorrupt, n)
	}
	if se := r.storageErr(); se != nil {
		return fmt.Errorf("read object: %w", se)
	}
	if len(r.hold.tail()) != TrailerSize {
		return fmt.Errorf("%w: truncated (no trailer)", ErrCorrupt)
	}
	s, err := parseTrailerOf(r.version, r.hold.tail())
	if err != nil {
		return err
	}
	r.sum = s
	if s.Size != r.n {
		return fmt.Errorf("%w: decoded %d bytes, trailer says %d", ErrCorrupt, r.n, s.Size)
	}
	got := sumOf(r.hash, r.n)
	if s.Alg == algSHA256 {
		got = Sum{Size: r.n, Alg: algSHA256}
		copy(got.Checksum[:], r.sha.Sum(nil))
	}
	if got != s {
		return fmt.Errorf("%w: checksum mismatch (%s, trailer says %s)", ErrCorrupt, got, s)
	}
	if r.outer != nil {
		return r.finishOuter()
	}
	return io.EOF
}

// finishOuter checks an encrypted object's outer trailer, once the age stream ended
// (its last chunk authenticated) and the inner trailer matched.
func (r *Reader) finishOuter() error {
	if n, err := io.Copy(io.Discard, r.outer); err != nil {
		return fmt.Errorf("read object: %w", err)
	} else if n > 0 {
		return fmt.Errorf("%w: %d bytes after the encrypted stream", ErrCorrupt, n)
	}
	if len(r.outer.tail()) != TrailerSize {
		return fmt.Errorf("%w: truncated (no trailer)", ErrCorrupt)
	}
	t, err := ParseTrailer(r.outer.tail())
	if err != nil {
		return err
	}
	if t.Alg != algTag {
		return fmt.Errorf("%w: checksum algorithm %d is not defined for encrypted objects", ErrCorrupt, t.Alg)
	}
	if t.Size != r.n {
		return fmt.Errorf("%w: decoded %d bytes, outer trailer says %d", ErrCorrupt, r.n, t.Size)
	}
	key, check := r.crypt.MACKey(t.KeyID)
	if check && key == nil {
		return fmt.Errorf("%w: tagged under MAC key %x, which this reader does not hold (encryption-mac-key): written by someone without the writers' MAC key, or under an older one", ErrCorrupt, t.KeyID)
	}
	if key != nil {
		set, _ := t.RecipientSet()
		if got := Tag(key, t.KeyID, set, r.n, binary.BigEndian.Uint32(r.sum.Checksum[:4]), r.ieee.Sum32()); got != t {
			return fmt.Errorf("%w: the outer trailer's tag does not match the content", ErrCorrupt)
		}
	}
	return io.EOF
}

// Sum is the verified trailer; valid once Read returned io.EOF.
func (r *Reader) Sum() Sum { return r.sum }

// Close releases the decoder. It does not close src.
func (r *Reader) Close() error { return r.dec.Close() }

// holdback passes on everything from src except the last TrailerSize bytes, which it
// keeps for the trailer check.
type holdback struct {
	src    io.Reader
	buf    []byte
	r, w   int // unread data is buf[r:w]
	srcErr error
}

func newHoldback(src io.Reader) *holdback {
	return &holdback{src: src, buf: make([]byte, 256<<10)}
}

// tail is what was held back: the trailer, if the stream was whole.
func (h *holdback) tail() []byte { return h.buf[h.r:h.w] }

func (h *holdback) Read(p []byte) (int, error) {
	for {
		if avail := h.w - h.r - TrailerSize; avail > 0 {
			n := copy(p, h.buf[h.r:h.r+avail])
			h.r += n
			return n, nil
		}
		if h.srcErr != nil {
			return 0, h.srcErr
		}
		if h.r > 0 {
			h.w = copy(h.buf, h.buf[h.r:h.w])
			h.r = 0
		}
		n, err := h.src.Read(h.buf[h.w:])
		h.w += n
		if err != nil {
			h.srcErr = err
		}
	}
}
