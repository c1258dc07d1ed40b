package backup

import (
	"io"
	"sort"
	"sync"

	"github.com/pgb-project/pgb/internal/pagecheck"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// pageChecker verifies the data checksum of every relation page a backup of a
// cluster with data checksums reads, as pgBackRest does, so that a damaged page is
// found when there is still time to act, not when it is restored. A page that fails
// is read a second time (PostgreSQL may have been writing it: the first read saw half
// of it); when it fails again but its LSN is at or past the backup's start, it was
// written since the backup began and WAL replay rewrites it from the full-page image
// the WAL holds from the start on, so it is not corrupt either. What remains is
// counted and listed (at most repo.MaxCorruptListed blocks). The pages go into the
// backup as read: the backup is still the best copy there is.
type pageChecker struct {
	start wal.LSN

	mu     sync.Mutex
	count  int
	listed int
	byPath map[string][]uint32
}

func newPageChecker(start wal.LSN) *pageChecker {
	return &pageChecker{start: start, byPath: map[string][]uint32{}}
}

// chunk checks the whole pages of chunk, the bytes of file path (opened as f) at
// offset off, which is a multiple of the page size. A page that passes on its second
// read replaces the first read in chunk. Files that hold no relation pages are let
// through.
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
		if n, _ := f.ReadAt(again, off+int64(i)); n == len(again) {
			if pagecheck.Verify(again, first+inFile) != pagecheck.Mismatch {
				copy(page, again)
				continue
			}
			page = again
		}
		if wal.LSN(pagemap.PageLSN(page)) >= c.start {
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

// result is the count of corrupt pages and their list, by path.
func (c *pageChecker) result() (int, []repo.CorruptPages) {
	if c == nil {
		return 0, nil
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
