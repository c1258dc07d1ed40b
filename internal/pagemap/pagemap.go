// Package pagemap holds the pure parts of incremental backups: which blocks of a
// relation file changed since a base backup (Changed, Eligible), the set of those
// blocks as stored in a manifest (Map, its encoding and its bounded decoder), and the
// reconstruction of a file from a full copy and a chain of increments (Reconstruct).
//
// It does no I/O of its own: callers hand it pages and readers. Everything it decodes
// comes from the repository and is untrusted: sizes and counts are bounded before
// anything is allocated.
package pagemap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/pgb-project/pgb/internal/pagecheck"
)

// BlockSize is PostgreSQL's page size (BLCKSZ) in the builds pgb supports.
const BlockSize = pagecheck.BlockSize

// MaxBlocks bounds the blocks of one relation segment file: RELSEG_SIZE is 131072
// blocks (1 GiB) in standard builds; a build with larger segments (--with-segsize) is
// allowed up to 32 GiB per file.
const MaxBlocks = 32 << 30 / BlockSize

// encodingVersion is the first byte of an encoded Map.
const encodingVersion = 1

// ErrCorrupt means an encoded Map, or an increment's data, is malformed.
var ErrCorrupt = errors.New("corrupt page map")

// Map is a set of block numbers of one file, kept as sorted, disjoint, non-adjacent
// runs: the blocks an increment stores.
type Map struct {
	runs []run
}

type run struct{ start, n uint32 } // blocks start..start+n-1, n ≥ 1

// Of returns the map holding blocks (any order, duplicates allowed).
func Of(blocks ...uint32) Map {
	s := slices.Clone(blocks)
	slices.Sort(s)
	var m Map
	for _, b := range slices.Compact(s) {
		m.Add(b)
	}
	return m
}

// Add adds block b, which must not be below the largest block already in m (blocks
// are added in file order, as a file is read).
func (m *Map) Add(b uint32) {
	if k := len(m.runs); k > 0 {
		last := &m.runs[k-1]
		end := uint64(last.start) + uint64(last.n) // one past the run
		switch {
		case uint64(b) < end:
			if b < last.start {
				panic(fmt.Sprintf("pagemap: block %d added after %d", b, end-1))
			}
			return // already in
		case uint64(b) == end:
			last.n++
			return
		}
	}
	m.runs = append(m.runs, run{b, 1})
}

// Len is how many blocks m holds.
func (m Map) Len() int {
	n := 0
	for _, r := range m.runs {
		n += int(r.n)
	}
	return n
}

// Has says whether block b is in m.
func (m Map) Has(b uint32) bool {
	i, _ := slices.BinarySearchFunc(m.runs, b, func(r run, b uint32) int {
		switch {
		case uint64(r.start)+uint64(r.n) <= uint64(b):
			return -1
		case r.start > b:
			return 1
		}
		return 0
	})
	return i < len(m.runs) && m.runs[i].start <= b && uint64(b) < uint64(m.runs[i].start)+uint64(m.runs[i].n)
}

// Blocks calls fn with every block of m in ascending order, until fn returns false.
func (m Map) Blocks(fn func(b uint32) bool) {
	for _, r := range m.runs {
		for i := uint32(0); i < r.n; i++ {
			if !fn(r.start + i) {
				return
			}
		}
	}
}

// Equal says whether m and o hold the same blocks.
func (m Map) Equal(o Map) bool { return slices.Equal(m.runs, o.runs) }

// MarshalBinary encodes m: a version byte, the number of runs, then per run the gap
// since the end of the previous one (from block 0 for the first) and its length less
// one, all as unsigned varints. The encoding of a set is unique.
func (m Map) MarshalBinary() ([]byte, error) {
	b := []byte{encodingVersion}
	b = binary.AppendUvarint(b, uint64(len(m.runs)))
	var end uint64
	for _, r := range m.runs {
		b = binary.AppendUvarint(b, uint64(r.start)-end)
		b = binary.AppendUvarint(b, uint64(r.n)-1)
		end = uint64(r.start) + uint64(r.n)
	}
	return b, nil
}

// Decode decodes an encoded map of a file of at most limit blocks (limit ≤
// MaxBlocks). It allocates at most in proportion to len(data), and refuses anything
// but the unique encoding of a set of blocks below limit.
func Decode(data []byte, limit uint32) (Map, error) {
	if limit > MaxBlocks {
		return Map{}, fmt.Errorf("%w: a file of %d blocks (at most %d)", ErrCorrupt, limit, MaxBlocks)
	}
	if len(data) == 0 || data[0] != encodingVersion {
		return Map{}, fmt.Errorf("%w: not a version %d page map", ErrCorrupt, encodingVersion)
	}
	p := data[1:]
	next := func(what string) (uint64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, fmt.Errorf("%w: truncated or overlong %s", ErrCorrupt, what)
		}
		// Uvarint takes padded forms (0xfa 0x00 for 0x7a): one set, one encoding.
		if n != len(binary.AppendUvarint(nil, v)) {
			return 0, fmt.Errorf("%w: a padded %s", ErrCorrupt, what)
		}
		p = p[n:]
		return v, nil
	}
	count, err := next("run count")
	if err != nil {
		return Map{}, err
	}
	// Each run takes at least two bytes: more runs than that is a lie, caught before
	// allocating.
	if count > uint64(len(p))/2 || count > uint64(limit) {
		return Map{}, fmt.Errorf("%w: %d runs in %d bytes", ErrCorrupt, count, len(p))
	}
	m := Map{runs: make([]run, 0, count)}
	var end uint64
	for i := uint64(0); i < count; i++ {
		gap, err := next("gap")
		if err != nil {
			return Map{}, err
		}
		nm1, err := next("run length")
		if err != nil {
			return Map{}, err
		}
		if i > 0 && gap == 0 {
			return Map{}, fmt.Errorf("%w: adjacent runs", ErrCorrupt)
		}
		start := end + gap
		if gap > uint64(limit) || nm1 >= uint64(limit) || start+nm1+1 > uint64(limit) {
			return Map{}, fmt.Errorf("%w: a run beyond the file's %d blocks", ErrCorrupt, limit)
		}
		m.runs = append(m.runs, run{uint32(start), uint32(nm1 + 1)})
		end = start + nm1 + 1
	}
	if len(p) != 0 {
		return Map{}, fmt.Errorf("%w: %d bytes after the last run", ErrCorrupt, len(p))
	}
	return m, nil
}

// Blocks is how many blocks a file of size bytes has, the last one possibly partial.
func Blocks(size int64) int64 { return (size + BlockSize - 1) / BlockSize }
