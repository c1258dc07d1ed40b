// Package benchdata makes the data directory contents the benchmarks of backup and
// restore run on: heap pages that compress like pgbench's (pgbench_accounts), and
// random bytes, which do not compress at all, so that compression does not flatter a
// figure. Only tests and benchmarks import it.
package benchdata

import (
	"encoding/binary"
	"math/rand/v2"
)

// PageSize is PostgreSQL's block size.
const PageSize = 8192

// Pages returns n bytes (rounded up to whole pages) of heap pages shaped like
// pgbench_accounts': a page header, line pointers, and 121-byte tuples holding an
// increasing account id, a branch id, a zero balance and 84 blanks. lz4 -1 compresses
// them about 15.8:1 (64 MiB of them, measured), better than a real pgbench data
// directory (about 9:1 in the harness's runs): figures on them flatter compression
// somewhat, and Random is the other bound.
func Pages(n int) []byte {
	pages := (n + PageSize - 1) / PageSize
	b := make([]byte, pages*PageSize)
	const tuple, perPage = 121, 61
	aid := uint32(1)
	for p := range pages {
		pg := b[p*PageSize : (p+1)*PageSize]
		binary.LittleEndian.PutUint64(pg[0:], uint64(p)*0x3a8+0x1000028) // pd_lsn
		binary.LittleEndian.PutUint16(pg[12:], uint16(24+4*perPage))     // pd_lower
		binary.LittleEndian.PutUint16(pg[14:], uint16(PageSize-perPage*128))
		binary.LittleEndian.PutUint16(pg[16:], PageSize)
		binary.LittleEndian.PutUint16(pg[18:], 0x2004) // version, size
		for i := range perPage {
			off := PageSize - (i+1)*128
			binary.LittleEndian.PutUint32(pg[24+4*i:], uint32(off)|1<<15|uint32(tuple)<<17)
			t := pg[off : off+tuple]
			binary.LittleEndian.PutUint32(t[0:], 731+uint32(p)%7) // xmin
			binary.LittleEndian.PutUint16(t[18:], uint16(i+1))    // t_ctid offset
			binary.LittleEndian.PutUint16(t[20:], 4)              // natts
			t[22] = 24                                            // t_hoff
			binary.LittleEndian.PutUint32(t[24:], aid)
			binary.LittleEndian.PutUint32(t[28:], (aid-1)/100000+1)
			t[36] = 0xab // varlena header of the filler: 84 blanks
			for k := 37; k < tuple; k++ {
				t[k] = ' '
			}
			aid++
		}
	}
	return b[:n]
}

// Random returns n random bytes from seed: incompressible.
func Random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}
