package backup

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/pgb-project/pgb/internal/pagecheck"
	"github.com/pgb-project/pgb/internal/repo"
)

// checksummedPage is a page with pd_lsn lsn whose checksum is right for block blk.
func checksummedPage(lsn uint64, blk uint32, fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, pagecheck.BlockSize)
	ne := binary.NativeEndian
	ne.PutUint32(p[0:], uint32(lsn>>32))
	ne.PutUint32(p[4:], uint32(lsn))
	ne.PutUint16(p[12:], 28)
	ne.PutUint16(p[14:], 4096)
	ne.PutUint16(p[16:], pagecheck.BlockSize)
	ne.PutUint16(p[18:], pagecheck.BlockSize|4)
	ne.PutUint16(p[8:], pagecheck.Checksum(p, blk))
	return p
}

// rereads serves second reads of pages: what the file holds by then.
type rereads map[int64][]byte

func (r rereads) ReadAt(p []byte, off int64) (int, error) { return copy(p, r[off]), nil }

// A page that fails its checksum is corrupt only when a second read fails too and it
// was not written during the backup (its LSN is before the start, or past the stop,
// where no write during the backup can put it); a page that passes on its second read
// (a torn first read) goes into the backup as read the second time; one truncated
// before the second read and new pages pass.
func TestPageCheckerCountsOnlyPagesThatStayCorrupt(t *testing.T) {
	const start = 5000
	const bs = pagecheck.BlockSize
	torn := checksummedPage(100, 131072+2, 3)
	var chunk []byte
	chunk = append(chunk, checksummedPage(100, 131072+0, 1)...) // valid
	bad := checksummedPage(100, 131072+1, 2)
	bad[3000] ^= 0xff
	chunk = append(chunk, bad...) // corrupt, old LSN
	chunk = append(chunk, append(bytes.Clone(torn[:bs/2]), make([]byte, bs/2)...)...)
	written := checksummedPage(start+1, 131072+3, 4)
	written[5000] ^= 0xff
	chunk = append(chunk, written...)                  // fails, but written since the start
	chunk = append(chunk, make([]byte, bs)...)         // new page
	chunk = append(chunk, checksummedPage(1, 0, 9)...) // wrong block number: corrupt (transposed)
	chunk = append(chunk, bad...)                      // fails, but truncated before the second read
	future := checksummedPage(start+900, 131072+7, 6)
	future[6000] ^= 0xff
	chunk = append(chunk, future...)    // fails with an LSN past the stop: damaged, LSN included
	chunk = append(chunk, bad[:100]...) // a partial last page: not checked
	second := rereads{1 * bs: bad, 2 * bs: torn, 3 * bs: written, 5 * bs: checksummedPage(1, 0, 9), 6 * bs: bad[:100], 7 * bs: future}

	ck := newPageChecker(start)
	ck.chunk(second, "base/1/16384.1", 0, chunk)
	ck.chunk(second, "base/1/PG_VERSION", 0, chunk) // no relation pages: not checked
	ck.chunk(second, "base/1/16385", 100, chunk)    // not on a page boundary: not checked
	n, list := ck.result(start + 500)
	want := []repo.CorruptPages{{Path: "base/1/16384.1", Blocks: []uint32{1, 5, 7}}}
	if n != 3 || !reflect.DeepEqual(list, want) {
		t.Fatalf("corrupt: %d %+v, want 3 %+v", n, list, want)
	}
	if !bytes.Equal(chunk[2*bs:3*bs], torn) {
		t.Fatal("the torn page's second read did not replace its first")
	}
	var none *pageChecker // clusters without data checksums
	none.chunk(second, "base/1/16384", 0, chunk)
	if n, l := none.result(0); n != 0 || l != nil {
		t.Fatalf("nil checker: %d %v", n, l)
	}
}

// At most repo.MaxCorruptListed blocks are listed; all are counted.
func TestPageCheckerListsABoundedNumberOfBlocks(t *testing.T) {
	ck := newPageChecker(1 << 40)
	bad := make([]byte, pagecheck.BlockSize)
	bad[14], bad[100] = 1, 1 // pd_upper set, no checksum
	chunk := bytes.Repeat(bad, repo.MaxCorruptListed+10)
	ck.chunk(bytes.NewReader(chunk), "base/1/2", 0, chunk)
	n, list := ck.result(0)
	if n != repo.MaxCorruptListed+10 || len(list) != 1 || len(list[0].Blocks) != repo.MaxCorruptListed {
		t.Fatalf("%d counted, %d listed", n, len(list[0].Blocks))
	}
}
