package backup

import (
	"io"
	"sort"
	"sync"

	"github.com/pgb-project/pgb/internal/pagecheck"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// pageChecker verifies the data checksum of every relation page a backup of a
// cluster with data checksums reads, as pgBackRest does, so that a damaged page is
// found when there is still time to act, not when it is restored. A page that fails
// is read a second time (PostgreSQL may have been writing it: the first read saw half
// of it); one that comes back short was truncated meanwhile (a dropped or vacuumed
// relation), which is no damage. One that fails again but carries an LSN at or past
// the backup's start was written since the backup began, and WAL replay rewrites it
// from the full-page image the WAL holds from the start on — unless its LSN is beyond
// the backup's stop, which no write during the backup can give (WAL is flushed before
// the page is written): result counts those too. What remains is counted and listed
// (at most repo.MaxCorruptListed blocks). The pages go into the backup as read: the
// backup is still the best copy there is.
type pageChecker struct {
	start wal.LSN

	mu     sync.Mutex
	count  int
	listed int
	byPath map[string][]uint32
	held   []heldPage // failed, with an LSN past the start: judged at the stop
}

// heldPage is a page that failed its checksum twice but was possibly written during
// the backup.
type heldPage struct {
	path  string
	block uint32
	lsn   wal.LSN
}

// maxHeld bounds the pages kept for judging at the stop; past it they are taken as
// written during the backup, as PostgreSQL's own base backup takes them all.
const maxHeld = 10000

func newPageChecker(start wal.LSN) *pageChecker {
	return &pageChecker{start: start, byPath: map[string][]uint32{}}
}

// chunk checks the whole pages of chunk, bytes read from file path (opened as f) at
// offset off, a multiple of the page size; bytes the file no longer had (zeros
// copyFile pads a shrunken file with) must not be passed. A page that passes on its
// second read replaces the first read in chunk. Files that hold no relation pages are
// let through.
func (c *pageChecker) chunk(f io.ReaderAt, path string, off int64, chunk []byte) {
	if c == nil {
		return
	}
	first, ok := pagecheck.FirstBlock(path)
	if !ok || off%pagecheck.BlockSize != 0 {
		return // not relation pages; or a chunk not on a page boundary (copyFile's buffers are)
	}
	var again []byte
	for i := 0; i+pagecheck.BlockSize <= len(chunk); i += pagecheck.BlockSize {
		page := chunk[i : i+pagecheck.BlockSize]
		inFile := uint32((off + int64(i)) / pagecheck.BlockSize)
		if pagecheck.Verify(page, first+inFile) != pagecheck.Mismatch {
			continue
		}
		if again == nil {
			again = make([]byte, pagecheck.BlockSize)
		}
		if n, _ := f.ReadAt(again, off+int64(i)); n < len(again) {
			continue // truncated since the first read: replay of the truncation empties it
		}
		if pagecheck.Verify(again, first+inFile) != pagecheck.Mismatch {
			copy(page, again)
			continue
		}
		if lsn := wal.LSN(pagecheck.PageLSN(again)); lsn >= c.start {
			c.hold(path, inFile, lsn)
			continue
		}
		c.add(path, inFile)
	}
}

func (c *pageChecker) add(path string, block uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	if c.listed < repo.MaxCorruptListed {
		c.listed++
		c.byPath[path] = append(c.byPath[path], block)
	}
}

// carry counts the blocks of path that failed their checksum in the base of an
// incremental backup which keeps the base's copy of the file unread: restore takes
// them from there, damaged as they are.
func (c *pageChecker) carry(path string, blocks []uint32) {
	if c == nil {
		return
	}
	for _, b := range blocks {
		c.add(path, b)
	}
}

func (c *pageChecker) hold(path string, block uint32, lsn wal.LSN) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) < maxHeld {
		c.held = append(c.held, heldPage{path, block, lsn})
	}
}

// result is the count of corrupt pages and their list, by path, once the backup
// stopped at stop: held pages with an LSN beyond it count too.
func (c *pageChecker) result(stop wal.LSN) (int, []repo.CorruptPages) {
	if c == nil {
		return 0, nil
	}
	for _, h := range c.held {
		if h.lsn > stop {
			c.add(h.path, h.block)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []repo.CorruptPages
	for p, bs := range c.byPath {
		sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
		out = append(out, repo.CorruptPages{Path: p, Blocks: bs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return c.count, out
}
