package pagecheck

import (
	"encoding/binary"
	"testing"
)

// A page made here carries the checksum Checksum computes for its block only; any
// changed byte, pd_checksum itself excepted, or another block number breaks it.
func TestVerifyCatchesAnyChangedByteAndTransposedPages(t *testing.T) {
	page := make([]byte, BlockSize)
	for i := range page {
		page[i] = byte(i * 7)
	}
	ne := binary.NativeEndian
	ne.PutUint16(page[14:], 4096) // pd_upper: not a new page
	ne.PutUint16(page[checksumOffset:], Checksum(page, 42))
	if v := Verify(page, 42); v != Valid {
		t.Fatalf("the page as written: %v", v)
	}
	if v := Verify(page, 43); v != Mismatch {
		t.Fatalf("the page read as block 43: %v, want Mismatch", v)
	}
	for _, off := range []int{0, 7, 10, 11, 12, 100, 4095, BlockSize - 1} {
		page[off] ^= 0x01
		if v := Verify(page, 42); v != Mismatch {
			t.Errorf("byte %d flipped: %v, want Mismatch", off, v)
		}
		page[off] ^= 0x01
	}
	if v := Verify(page[:BlockSize-1], 42); v != Mismatch {
		t.Errorf("a short page: %v", v)
	}
	zero := make([]byte, BlockSize)
	if v := Verify(zero, 9); v != New {
		t.Errorf("an all-zero page: %v, want New", v)
	}
	zero[5000] = 1
	if v := Verify(zero, 9); v != Mismatch {
		t.Errorf("a new page that is not all zeros: %v, want Mismatch", v)
	}
	if c := Checksum(make([]byte, BlockSize), 0); c == 0 {
		t.Error("a checksum of zero")
	}
}

func TestFirstBlockOfRelationForksAndSegments(t *testing.T) {
	for path, want := range map[string]int64{
		"base/1/16384":                           0,
		"base/1/16384.1":                         SegmentBlocks,
		"base/1/16384_fsm":                       0,
		"base/1/16384_vm.2":                      2 * SegmentBlocks,
		"base/1/16384_init":                      0,
		"global/1262":                            0,
		"pg_tblspc/16400/PG_15_202209061/5/77.3": 3 * SegmentBlocks,
		"base/1/t3_16384":                        -1,
		"base/1/pg_filenode.map":                 -1,
		"global/pg_control":                      -1,
		"base/1/16384.99999999999":               -1,
		"pg_xact/0000":                           -1,
	} {
		got, ok := FirstBlock(path)
		if (want < 0) == ok || (ok && int64(got) != want) {
			t.Errorf("FirstBlock(%q) = %d, %v; want %d", path, got, ok, want)
		}
	}
}

// BenchmarkChecksum is the cost of checking a page (MB/s of pages): what backup-push
// spends on top of reading and compressing on a cluster with data checksums.
func BenchmarkChecksum(b *testing.B) {
	page := make([]byte, BlockSize)
	for i := range page {
		page[i] = byte(i * 13)
	}
	b.SetBytes(BlockSize)
	for i := 0; i < b.N; i++ {
		_ = Checksum(page, uint32(i))
	}
}
