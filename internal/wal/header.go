package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// LongHeaderSize is the size of the long page header at the start of every segment.
const LongHeaderSize = 40

// xlp_info flag marking a long header.
const xlpLongHeader = 0x0002

// SegmentHeader is what the long page header at the start of every WAL segment says:
// which cluster wrote it and with what geometry.
type SegmentHeader struct {
	Magic      uint16 // XLOG_PAGE_MAGIC, changes with every major version
	Timeline   uint32
	PageAddr   LSN
	SystemID   uint64
	SegSize    uint32
	BlockSize  uint32
	MajorGuess int // PostgreSQL major version inferred from Magic, 0 when unknown
}

// pageMagic maps XLOG_PAGE_MAGIC to the major version that writes it.
var pageMagic = map[uint16]int{
	0xD101: 12, 0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17,
}

// ErrNoHeader means the data does not start with a valid long page header.
var ErrNoHeader = errors.New("no WAL long page header")

// ParseSegmentHeader decodes the long page header (little-endian, as on every platform
// PostgreSQL ships for in practice) from the first bytes of a segment.
func ParseSegmentHeader(b []byte) (SegmentHeader, error) {
	if len(b) < LongHeaderSize {
		return SegmentHeader{}, fmt.Errorf("%w: only %d bytes", ErrNoHeader, len(b))
	}
	le := binary.LittleEndian
	h := SegmentHeader{
		Magic:     le.Uint16(b[0:]),
		Timeline:  le.Uint32(b[4:]),
		PageAddr:  LSN(le.Uint64(b[8:])),
		SystemID:  le.Uint64(b[24:]),
		SegSize:   le.Uint32(b[32:]),
		BlockSize: le.Uint32(b[36:]),
	}
	info := le.Uint16(b[2:])
	if info&xlpLongHeader == 0 {
		return SegmentHeader{}, fmt.Errorf("%w: first page lacks the long-header flag", ErrNoHeader)
	}
	if h.SegSize == 0 || h.SegSize&(h.SegSize-1) != 0 || h.BlockSize == 0 {
		return SegmentHeader{}, fmt.Errorf("%w: implausible segment size %d / block size %d", ErrNoHeader, h.SegSize, h.BlockSize)
	}
	h.MajorGuess = pageMagic[h.Magic]
	return h, nil
}
