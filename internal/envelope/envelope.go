// Package envelope is the on-disk format of every object pgb stores: a small header
// naming the codec (and, later, the cipher), the encoded stream, and a trailer with
// the size and checksum of the original bytes. Readers verify the trailer at the end
// of the stream, so no byte is handed on as good unless its checksum matched.
//
//	header  (8 bytes):  "PGB\x00" | version (2) | codec id | cipher id (0 = none) | flags (0)
//	body:               cipher(codec(plain bytes)): compress, then encrypt, never the reverse
//	trailer (48 bytes): "PGBT" | checksum algorithm (1) | 3 zero bytes | plain size uint64 LE |
//	                    checksum (32 bytes, left-aligned, zero-padded)
//
// The checksum is CRC-32C (algorithm 1), as in PostgreSQL's own WAL records and backup
// manifests: hardware-accelerated at tens of GB/s, so verifying costs nothing next to
// decompression, and ample for detecting damage. Authenticity will come from the
// cipher's AEAD once client-side encryption lands. The body is compressed first
// because ciphertext does not compress.
//
// Versions (the header's fifth byte). Any change to these bytes takes a new version,
// and readers keep reading every old one; TestGoldenBytes holds the writer to it.
//
//	1  written before commit 7dad72f: trailer "PGBT" | 4 zero bytes | plain size |
//	   SHA-256 of the plain bytes (32 bytes)
//	1  written from commit 7dad72f until version 2: the version 2 trailer, CRC-32C
//	   (algorithm 1), under the same version byte; told apart by the algorithm byte
//	2  written now: the trailer above, algorithm 1 only
//
// A reader refuses, as ErrCorrupt, a checksum algorithm its version does not define, a
// nonzero flags byte, and a version it does not know (a newer one also as
// ErrNewerFormat: written by a newer pgb).
//
// See docs/repository-format.md.
package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
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
)

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
	Alg      byte     // checksum algorithm (1 = CRC-32C; 0 = SHA-256, in old version 1 objects)
	Checksum [32]byte // left-aligned; CRC-32C uses the first 4 bytes, big-endian
}

// Hex is the checksum in hex.
func (s Sum) Hex() string {
	if s.Alg == algCRC32C {
		return hex.EncodeToString(s.Checksum[:4])
	}
	return hex.EncodeToString(s.Checksum[:])
}

// String describes the sum for messages.
func (s Sum) String() string {
	name := "crc32c"
	if s.Alg == algSHA256 {
		name = "sha256"
	}
	return fmt.Sprintf("%d bytes, %s %s", s.Size, name, s.Hex())
}

// MayEqual reports whether two objects with these sums may hold the same plain bytes:
// the sizes match and so do the checksums, or the checksums cannot be compared (one
// object's trailer is of an older algorithm). Only a byte comparison settles it.
func (s Sum) MayEqual(o Sum) bool {
	return s.Size == o.Size && (s.Alg != o.Alg || s.Checksum == o.Checksum)
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
	cw := &countingWriter{w: dst}
	hdr := append(append([]byte(nil), headerMagic...), formatVersion, codec.ID(), 0, 0)
	if _, err := cw.Write(hdr); err != nil {
		return nil, err
	}
	enc, err := codec.NewWriter(cw)
	if err != nil {
		return nil, err
	}
	return &Writer{enc: enc, hash: newHash(), count: cw}, nil
}

// Write encodes p.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.enc.Write(p)
	w.hash.Write(p[:n])
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
	_, err := w.count.Write(encodeTrailer(w.sum))
	return err
}

// Sum is the size and checksum of the plain bytes written; valid after Close.
func (w *Writer) Sum() Sum { return w.sum }

// Written is the number of encoded bytes written to dst so far (after Close: the
// whole object's size).
func (w *Writer) Written() int64 { return w.count.n }

func encodeTrailer(s Sum) []byte {
	t := make([]byte, TrailerSize)
	copy(t, trailerMagic)
	t[4] = s.Alg
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
	if t[4] != algCRC32C && t[4] != algSHA256 {
		return Sum{}, fmt.Errorf("%w: unknown checksum algorithm %d", ErrCorrupt, t[4])
	}
	if !allZero(t[5:8]) {
		return Sum{}, fmt.Errorf("%w: bad trailer (reserved bytes are not zero)", ErrCorrupt)
	}
	s := Sum{Alg: t[4], Size: int64(binary.LittleEndian.Uint64(t[8:]))}
	copy(s.Checksum[:], t[16:])
	return s, nil
}

// parseTrailerOf is ParseTrailer for an object of the given version.
func parseTrailerOf(version byte, t []byte) (Sum, error) {
	s, err := ParseTrailer(t)
	if err != nil {
		return Sum{}, err
	}
	if s.Alg == algSHA256 && version != version1 {
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
	if h[6] != 0 {
		return Header{}, fmt.Errorf("%w: object is encrypted (cipher %d) and this repository has no key configured", ErrCorrupt, h[6])
	}
	return Header{Version: h[4], Codec: codec, Cipher: h[6]}, nil
}

// Reader decodes an envelope stream and verifies it. Read returns io.EOF only after
// the size and checksum in the trailer matched what was decoded; any mismatch is an
// error wrapping ErrCorrupt.
type Reader struct {
	hold    *holdback
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
// holds shows only at its end: reading one costs more CPU than a version 2 object.
func NewReader(src io.Reader) (*Reader, error) {
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
	hold := newHoldback(src)
	dec, err := h.Codec.NewReader(hold)
	if err != nil {
		return nil, err
	}
	r := &Reader{hold: hold, dec: dec, version: h.Version, hash: newHash()}
	if h.Version == version1 {
		r.sha = sha256.New()
	}
	return r, nil
}

// sumData hashes decoded bytes.
func (r *Reader) sumData(p []byte) {
	r.hash.Write(p)
	if r.sha != nil {
		r.sha.Write(p)
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
	if se := r.hold.srcErr; se != nil && !errors.Is(se, io.EOF) {
		return fmt.Errorf("read object: %w", se) // storage failed, not the data
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err) // the body does not decode
}

func (r *Reader) finish() error {
	// The codec may stop before consuming all of the body (trailing garbage): drain it.
	if n, err := io.Copy(io.Discard, r.hold); err != nil {
		return fmt.Errorf("read object: %w", err)
	} else if n > 0 {
		return fmt.Errorf("%w: %d bytes of garbage after the encoded stream", ErrCorrupt, n)
	}
	if se := r.hold.srcErr; se != nil && !errors.Is(se, io.EOF) {
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
