// Package compress holds the codecs pgb can store objects with. Each codec has a
// one-byte ID that is recorded in every stored object, so reading never needs the
// compression setting.
package compress

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec compresses and decompresses streams.
type Codec interface {
	// Name is the setting's spelling: "none", "lz4" or "zstd".
	Name() string
	// ID is the byte recorded in stored objects. IDs never change meaning.
	ID() byte
	// NewWriter returns a writer compressing into w. Close flushes; it does not close w.
	NewWriter(w io.Writer) (io.WriteCloser, error)
	// NewReader returns a reader decompressing r. Close releases resources; it does not close r.
	NewReader(r io.Reader) (io.ReadCloser, error)
}

// WithConcurrency returns codec set to compress one stream on up to n cores (lz4:
// blocks in parallel; zstd: the next block is encoded while the caller fills the one
// after, in one frame, so the output is what a concurrency of 1 writes). Use it for a
// single large stream, such as one WAL segment; leave it at 1 where many streams
// already run side by side.
func WithConcurrency(c Codec, n int) Codec {
	n = max(n, 1)
	switch c := c.(type) {
	case lz4Codec:
		c.concurrency = n
		return c
	case zstdCodec:
		c.concurrency = n
		return c
	}
	return c
}

// Codec IDs as stored on disk.
const (
	IDNone byte = 0
	IDLZ4  byte = 1
	IDZstd byte = 2
)

// Names lists the valid settings.
var names = []string{"lz4", "zstd", "none"}

// Names returns the valid setting values.
func Names() []string { return append([]string(nil), names...) }

// ErrUnknownCodec is returned for an unknown name or ID.
var ErrUnknownCodec = errors.New("unknown compression")

// New returns the codec called name at the given level. Level 0 means the codec's
// default; lz4 takes 1–9 (1 fastest), zstd 1–22 (mapped onto its encoder levels).
// zstd's default is level 3 (DefaultZstdLevel), as for libzstd and pgBackRest.
func New(name string, level int) (Codec, error) {
	switch strings.ToLower(name) {
	case "none":
		if level != 0 {
			return nil, fmt.Errorf("compression none takes no level (got %d)", level)
		}
		return none{}, nil
	case "lz4":
		if level < 0 || level > 9 {
			return nil, fmt.Errorf("lz4 compression level %d out of range 1-9 (0 = default)", level)
		}
		return lz4Codec{level: level}, nil
	case "zstd":
		if level < 0 || level > 22 {
			return nil, fmt.Errorf("zstd compression level %d out of range 1-22 (0 = default)", level)
		}
		return zstdCodec{level: level, pools: &encoderPools{}}, nil
	}
	return nil, fmt.Errorf("%w %q: want one of %s", ErrUnknownCodec, name, strings.Join(names, ", "))
}

// ByID returns the codec for a stored ID, at its default level (levels only matter
// when writing).
func ByID(id byte) (Codec, error) {
	switch id {
	case IDNone:
		return none{}, nil
	case IDLZ4:
		return lz4Codec{}, nil
	case IDZstd:
		return zstdCodec{}, nil
	}
	return nil, fmt.Errorf("%w: id %d (written by a newer pgb?)", ErrUnknownCodec, id)
}

type none struct{}

func (none) Name() string { return "none" }
func (none) ID() byte     { return IDNone }
func (none) NewWriter(w io.Writer) (io.WriteCloser, error) {
	return nopWriteCloser{w}, nil
}
func (none) NewReader(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil }

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

type lz4Codec struct{ level, concurrency int }

func (lz4Codec) Name() string { return "lz4" }
func (lz4Codec) ID() byte     { return IDLZ4 }

var lz4Levels = []lz4.CompressionLevel{lz4.Fast, lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4,
	lz4.Level5, lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9}

func (c lz4Codec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	zw := lz4.NewWriter(w)
	level := lz4.Fast
	if c.level > 0 {
		level = lz4Levels[c.level]
	}
	// pgb checksums every object itself; lz4's own checksums would only cost time.
	if err := zw.Apply(lz4.CompressionLevelOption(level), lz4.ChecksumOption(false),
		lz4.BlockSizeOption(lz4.Block256Kb), lz4.ConcurrencyOption(max(c.concurrency, 1))); err != nil {
		return nil, fmt.Errorf("lz4 writer: %w", err)
	}
	return zw, nil
}

func (lz4Codec) NewReader(r io.Reader) (io.ReadCloser, error) {
	zr := lz4.NewReader(r)
	if err := zr.Apply(lz4.ConcurrencyOption(1)); err != nil {
		return nil, fmt.Errorf("lz4 reader: %w", err)
	}
	return io.NopCloser(zr), nil
}

// DefaultZstdLevel is zstd's level when none is set: 3, klauspost/compress's
// SpeedDefault, libzstd's and pgBackRest's default level. On real PostgreSQL 15 data,
// measured against the libzstd 1.5.4 CLI in the same run: a backup part (a pgbench
// base/ as one tar stream) costs what `zstd -3` costs and comes out 2% smaller (the 8
// MiB window of ForLongStreams); a 16 MiB WAL segment costs 1.1–1.3× `zstd -3`'s CPU
// and comes out 4–5% larger, a gap no klauspost level closes near libzstd's cost (level
// 7: still 4% larger at 3× the CPU). Level 1 (SpeedFastest) costs about what `zstd -1`
// does, 9–11% larger than level 3. Before pgb dropped WithLowerEncoderMem, level 3
// cost 1.9–2.6× what it costs now, for the same bytes. Figures and conditions: README,
// "Compression".
const DefaultZstdLevel = 3

// zstd windows: how far back a match may reach, and so the history an encoder keeps
// (twice the window) and a reader needs. A WAL segment is written with zstdWindow, 1
// MiB: on real 16 MiB segments (64 of pgbench's load and updates) it stores 0.1% less
// than libzstd's 2 MiB at level 3 and 0.25% more than klauspost's default of 8 MiB, and
// each encoder of the look-ahead archiver holds 2 MiB of history instead of 4 (16
// with 8). ForLongStreams sets longStreamWindow, which is klauspost's default from level
// 3 up (what pgb wrote backup parts with at those levels; level 1 had 4 MiB): a backup
// part gains from it where files repeat further apart, such as the system catalogs of
// template0, template1 and postgres, about 7 MiB each.
const (
	zstdWindow       = 1 << 20
	longStreamWindow = 8 << 20
)

// ForLongStreams returns codec set for streams much longer than a WAL segment, such
// as backup parts: zstd keeps 8 MiB of history instead of 1 MiB (an encoder then holds
// about 18 MiB instead of 4). Other codecs are returned as they are.
func ForLongStreams(c Codec) Codec {
	if z, ok := c.(zstdCodec); ok {
		z.long = true
		return z
	}
	return c
}

type zstdCodec struct {
	level, concurrency int
	long               bool          // ForLongStreams
	pools              *encoderPools // nil: a fresh encoder for each stream
}

func (zstdCodec) Name() string { return "zstd" }
func (zstdCodec) ID() byte     { return IDZstd }

// options are the encoder options of c.
//
// Never WithLowerEncoderMem: it keeps only window+128 KiB of history, so once a stream
// is longer than the window every 128 KiB block first moves the whole window down (8
// MiB at klauspost's default window, 64 times the block): that copy, not the
// compression, was most of what zstd cost pgb on WAL segments and backup parts
// (README, "Compression").
func (c zstdCodec) options() []zstd.EOption {
	level := c.level
	if level == 0 {
		level = DefaultZstdLevel
	}
	window := zstdWindow
	if c.long {
		window = longStreamWindow
	}
	return []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(max(c.concurrency, 1)), zstd.WithWindowSize(window),
		zstd.WithEncoderCRC(false)} // pgb checksums every object itself
}

// NewWriter compresses into w as one zstd frame, whatever the concurrency: independent
// frames (what pgb wrote before, for concurrency above 1) cost ratio. Readers take
// either. The encoder comes from the codec's pool and goes back there once Close has
// succeeded, so that a run compressing many streams (WAL segments, backup parts) does
// not build an encoder, its history and its tables for each.
func (c zstdCodec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	key := poolKey{concurrency: max(c.concurrency, 1), long: c.long}
	if enc := c.pools.get(key); enc != nil {
		enc.Reset(w)
		return &zstdWriter{enc: enc, pools: c.pools, key: key}, nil
	}
	enc, err := zstd.NewWriter(w, c.options()...)
	if err != nil {
		return nil, fmt.Errorf("zstd writer: %w", err)
	}
	return &zstdWriter{enc: enc, pools: c.pools, key: key}, nil
}

// errWriterClosed: a write after Close.
var errWriterClosed = errors.New("compress: write after close")

type zstdWriter struct {
	enc   *zstd.Encoder // nil once closed
	pools *encoderPools
	key   poolKey
}

func (z *zstdWriter) Write(p []byte) (int, error) {
	if z.enc == nil {
		return 0, errWriterClosed
	}
	return z.enc.Write(p)
}

// Close ends the frame. The encoder is reused only after a clean end: one whose
// writes failed is dropped.
func (z *zstdWriter) Close() error {
	if z.enc == nil {
		return nil
	}
	enc := z.enc
	z.enc = nil
	if err := enc.Close(); err != nil {
		return err
	}
	enc.Reset(nil) // holds on to no destination while idle
	z.pools.put(z.key, enc)
	return nil
}

// encoderPools keeps the idle encoders of one codec (and of the copies WithConcurrency
// and ForLongStreams make of it) for reuse; safe for concurrent use. An encoder's
// concurrency and window are fixed when it is made, so each pair has its own list. A
// list keeps at most maxIdleEncoders: as many as were in use at once, up to that. A
// nil *encoderPools keeps none.
type encoderPools struct {
	mu   sync.Mutex
	idle map[poolKey][]*zstd.Encoder
}

type poolKey struct {
	concurrency int
	long        bool
}

const maxIdleEncoders = 4

func (p *encoderPools) get(k poolKey) *zstd.Encoder {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[k]
	if len(l) == 0 {
		return nil
	}
	enc := l[len(l)-1]
	l[len(l)-1] = nil
	p.idle[k] = l[:len(l)-1]
	return enc
}

func (p *encoderPools) put(k poolKey, enc *zstd.Encoder) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = make(map[poolKey][]*zstd.Encoder)
	}
	if len(p.idle[k]) < maxIdleEncoders {
		p.idle[k] = append(p.idle[k], enc)
	}
}

// maxReadWindow is the largest window a reader accepts: the largest pgb has ever
// written (klauspost's default at every level, now longStreamWindow). A frame's header
// declares its window and the decoder allocates that much history up front, so without
// the bound a forged object of a few bytes would make each reader allocate 512 MiB.
const maxReadWindow = longStreamWindow

func (zstdCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.IgnoreChecksum(true), zstd.WithDecoderMaxWindow(maxReadWindow))
	if err != nil {
		return nil, fmt.Errorf("zstd reader: %w", err)
	}
	return zstdReadCloser{zr}, nil
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }
