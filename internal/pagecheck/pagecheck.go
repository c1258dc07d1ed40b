// Package pagecheck verifies PostgreSQL data page checksums (clusters initialised with
// --data-checksums): the check backup-push makes on every relation page it reads, as
// PostgreSQL's own pg_checksums and pgBackRest do.
//
// The algorithm is PostgreSQL's (src/include/storage/checksum_impl.h, described there):
// an FNV-1a variant over the page as 32 interleaved columns of 32-bit words, the
// columns folded by xor, the block number mixed in, reduced to 16 bits with an offset
// of one. It is checked against pages written by a real PostgreSQL 15 server in the
// integration tests.
package pagecheck

import (
	"encoding/binary"
	"regexp"
	"strconv"
)

// BlockSize is PostgreSQL's page size (BLCKSZ) in the builds pgb supports.
const BlockSize = 8192

// SegmentBlocks is RELSEG_SIZE: blocks per relation segment file (1 GiB).
const SegmentBlocks = 131072

const (
	nSums    = 32
	fnvPrime = 16777619
)

// baseOffsets are the columns' initial values, PostgreSQL's checksumBaseOffsets.
var baseOffsets = [nSums]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

func comp(sum, value uint32) uint32 {
	t := sum ^ value
	return t*fnvPrime ^ t>>17
}

// checksumOffset is where pd_checksum sits in the page header.
const checksumOffset = 8

// Checksum is the checksum PostgreSQL stores in pd_checksum for page, block blkno of
// its relation fork (counted across segment files: segment N's block i is
// N*SegmentBlocks+i). page must be BlockSize bytes; it is not modified.
func Checksum(page []byte, blkno uint32) uint16 {
	_ = page[BlockSize-1]
	ne := binary.NativeEndian
	sums := baseOffsets
	for i := 0; i < BlockSize; i += 4 * nSums {
		row := page[i : i+4*nSums]
		for j := 0; j < nSums; j++ {
			v := ne.Uint32(row[4*j:])
			if i == 0 && j == checksumOffset/4 {
				// pd_checksum counts as zero; pd_flags, the other half of this word,
				// counts as it is.
				w := [4]byte{0, 0, row[4*j+2], row[4*j+3]}
				v = ne.Uint32(w[:])
			}
			sums[j] = comp(sums[j], v)
		}
	}
	var result uint32
	for j := range sums {
		s := comp(comp(sums[j], 0), 0) // two rounds of zeros for mixing
		result ^= s
	}
	result ^= blkno
	return uint16(result%65535 + 1)
}

// PageLSN is the page's pd_lsn (as a WAL position).
func PageLSN(page []byte) uint64 {
	ne := binary.NativeEndian
	return uint64(ne.Uint32(page[0:]))<<32 | uint64(ne.Uint32(page[4:]))
}

// IsNew says whether the page was never initialised: pd_upper is 0 (PageIsNew).
func IsNew(page []byte) bool { return binary.NativeEndian.Uint16(page[14:]) == 0 }

// Stored is the page's pd_checksum.
func Stored(page []byte) uint16 { return binary.NativeEndian.Uint16(page[checksumOffset:]) }

// Verdict is what Verify says of a page.
type Verdict int

const (
	// Valid: the stored checksum matches.
	Valid Verdict = iota
	// New: a page never initialised (pd_upper 0) and all zeros, which PostgreSQL
	// accepts without a checksum.
	New
	// Mismatch: the checksum does not match (or a new page is not all zeros).
	Mismatch
)

// Verify checks page, block blkno of its relation fork, as PostgreSQL does when it
// reads a page (PageIsVerified): a new page must be all zeros, any other must carry
// its checksum. A short page is a Mismatch.
func Verify(page []byte, blkno uint32) Verdict {
	if len(page) != BlockSize {
		return Mismatch
	}
	if IsNew(page) {
		for _, b := range page {
			if b != 0 {
				return Mismatch
			}
		}
		return New
	}
	if Checksum(page, blkno) != Stored(page) {
		return Mismatch
	}
	return Valid
}

// relationFork matches the paths (relative to the data directory, "/"-separated) of
// the files whose pages carry checksums: every fork of permanent relations (main,
// _fsm, _vm, _init), with an optional .N segment suffix. Capture 1 is the segment
// number.
var relationFork = regexp.MustCompile(`^(?:global|base/[0-9]+|pg_tblspc/[0-9]+/PG_[^/]+/[0-9]+)/[0-9]+(?:_(?:fsm|vm|init))?(?:\.([0-9]+))?$`)

// FirstBlock says whether the file at path holds checksummed relation pages, and the
// block number of its first page in its relation fork.
func FirstBlock(path string) (uint32, bool) {
	m := relationFork.FindStringSubmatch(path)
	if m == nil {
		return 0, false
	}
	if m[1] == "" {
		return 0, true
	}
	seg, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil || seg > (1<<32-1)/SegmentBlocks {
		return 0, false
	}
	return uint32(seg) * SegmentBlocks, true
}
