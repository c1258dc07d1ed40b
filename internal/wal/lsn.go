package wal

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL log sequence number: a byte position in the WAL stream.
type LSN uint64

// ParseLSN parses PostgreSQL's text form "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%q is not an LSN: want the form 16/B374D848", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not an LSN: want the form 16/B374D848", s)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// SegmentNumber is the number of the segment holding l.
func (l LSN) SegmentNumber(segSize uint64) uint64 { return uint64(l) / segSize }

// MarshalText and UnmarshalText make LSNs readable in JSON manifests.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses the text form.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
