// Package wal knows PostgreSQL's WAL file names, LSNs and timelines, and reads WAL
// records (Reader): commits and aborts with their times, restore points, checkpoints,
// end of recovery. It is pure: no I/O beyond the io.Reader a caller hands in.
package wal

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the kind of file PostgreSQL hands to archive_command.
type Kind int

// The kinds of archivable files.
const (
	Segment Kind = iota + 1 // 000000010000000000000001
	Partial                 // 000000010000000000000001.partial
	Backup                  // 000000010000000000000001.00000028.backup
	History                 // 00000002.history
)

func (k Kind) String() string {
	switch k {
	case Segment:
		return "segment"
	case Partial:
		return "partial segment"
	case Backup:
		return "backup history file"
	case History:
		return "timeline history file"
	}
	return "unknown"
}

// File is a parsed archivable file name.
type File struct {
	Name     string // the base name as PostgreSQL writes it
	Kind     Kind
	Timeline uint32
	// LogSeg is the 16 hex digits after the timeline (segments, partials, backup files).
	Log, Seg uint32
}

// SegmentName is the 24-digit segment the file belongs to ("" for history files).
func (f File) SegmentName() string {
	if f.Kind == History {
		return ""
	}
	return f.Name[:24]
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

func hex32(s string) uint32 {
	v, _ := strconv.ParseUint(s, 16, 32)
	return uint32(v)
}

// Parse parses the base name of a file PostgreSQL archives. It accepts WAL segments,
// .partial segments, .backup history files and timeline .history files, and refuses
// anything else (lower-case hex, paths, temporary names), so that a mistyped
// archive_command or restore_command cannot store or fetch a stray file.
func Parse(name string) (File, error) {
	bad := func() (File, error) {
		return File{}, fmt.Errorf("%q is not a WAL file name: want a segment (000000010000000000000001), a .partial or .backup file, or a timeline .history file (00000002.history)", name)
	}
	switch {
	case len(name) == 24 && isUpperHex(name):
		f := File{Name: name, Kind: Segment, Timeline: hex32(name[:8]), Log: hex32(name[8:16]), Seg: hex32(name[16:24])}
		if f.Timeline == 0 {
			return bad()
		}
		return f, nil
	case len(name) == 24+len(".partial") && strings.HasSuffix(name, ".partial") && isUpperHex(name[:24]):
		f := File{Name: name, Kind: Partial, Timeline: hex32(name[:8]), Log: hex32(name[8:16]), Seg: hex32(name[16:24])}
		if f.Timeline == 0 {
			return bad()
		}
		return f, nil
	case len(name) == 24+1+8+len(".backup") && strings.HasSuffix(name, ".backup") && name[24] == '.' &&
		isUpperHex(name[:24]) && isUpperHex(name[25:33]):
		f := File{Name: name, Kind: Backup, Timeline: hex32(name[:8]), Log: hex32(name[8:16]), Seg: hex32(name[16:24])}
		if f.Timeline == 0 {
			return bad()
		}
		return f, nil
	case len(name) == 8+len(".history") && strings.HasSuffix(name, ".history") && isUpperHex(name[:8]):
		f := File{Name: name, Kind: History, Timeline: hex32(name[:8])}
		if f.Timeline == 0 {
			return bad()
		}
		return f, nil
	}
	return bad()
}

// SegmentFileName builds the segment name for a timeline and a segment number, given
// the segment size in bytes (16 MiB by default; PostgreSQL allows powers of two from
// 1 MiB to 1 GiB).
func SegmentFileName(tli uint32, segNo uint64, segSize uint64) string {
	perLog := uint64(0x100000000) / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, uint32(segNo/perLog), uint32(segNo%perLog))
}

// SegmentNumber is the inverse of SegmentFileName for a parsed segment.
func (f File) SegmentNumber(segSize uint64) uint64 {
	perLog := uint64(0x100000000) / segSize
	return uint64(f.Log)*perLog + uint64(f.Seg)
}
