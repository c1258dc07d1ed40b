// Package compress holds the codecs pgb can store objects with. Each codec has a
// one-byte ID that is recorded in every stored object, so reading never needs the
// compression setting.
package compress

import (
	"errors"
	"fmt"
	"io"
	"strings"

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
		return zstdCodec{level: level}, nil
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
// SpeedDefault. On PostgreSQL WAL (16 MiB pgbench segments) it compresses about 10%
// smaller than level 1 (SpeedFastest) at roughly 0.7× its speed, and still about twice
// as fast per core as libzstd's level 3 (pgBackRest's default), whose output is about 4%
// smaller; level 7 (SpeedBetterCompression) costs about libzstd-3's CPU and comes within
// 2.5% of its size. Figures and conditions: README, "Compression".
const DefaultZstdLevel = 3

type zstdCodec struct{ level, concurrency int }

func (zstdCodec) Name() string { return "zstd" }
func (zstdCodec) ID() byte     { return IDZstd }

func (c zstdCodec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	level := zstd.EncoderLevelFromZstd(DefaultZstdLevel)
	if c.level > 0 {
		level = zstd.EncoderLevelFromZstd(c.level)
	}
	// One frame per stream, whatever the concurrency: independent frames (what pgb
	// wrote before, for concurrency above 1) cost ratio, a fresh encoder per frame and
	// tens of MiB of buffers per segment. Readers take either.
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(max(c.concurrency, 1)),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd writer: %w", err)
	}
	return zw, nil
}

func (zstdCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.IgnoreChecksum(true))
	if err != nil {
		return nil, fmt.Errorf("zstd reader: %w", err)
	}
	return zstdReadCloser{zr}, nil
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }
