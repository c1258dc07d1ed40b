package pagemap

import (
	"encoding/binary"
	"fmt"
	"io"
	"regexp"

	"github.com/pgb-project/pgb/internal/pagecheck"
)

// relationFile matches the paths (relative to the data directory, "/"-separated) of
// the main fork of permanent relations: global/R, base/D/R and
// pg_tblspc/T/PG_…/D/R, each with an optional .N segment suffix.
var relationFile = regexp.MustCompile(`^(global|base/[0-9]+|pg_tblspc/[0-9]+/PG_[^/]+/[0-9]+)/[0-9]+(\.[0-9]+)?$`)

// Eligible says whether the file at path may be stored as changed blocks in an
// incremental backup; every other file is stored whole when it differs.
//
// Only main forks qualify. Free space map (_fsm) and visibility map (_vm) forks are
// stored whole: clearing a visibility-map bit does not advance the map page's LSN, so
// judging those pages by their LSN would bring back an all-visible bit for a page
// that no longer is (and index-only scans would return wrong rows), and free space
// map pages are not WAL-logged at all. Both are small (a few pages per gigabyte of
// heap). Init forks (_init), temporary relations (tNNN_R) and every non-relation
// file are stored whole too.
func Eligible(path string) bool { return relationFile.MatchString(path) }

// LSN is a position in the WAL (the same value as wal.LSN).
type LSN = uint64

// page header fields (PostgreSQL's PageHeaderData, bufpage.h), in the byte order of
// the machine that wrote them: pgb reads data directories of the machine it runs on.
const (
	headerSize   = 24
	offLower     = 12
	offUpper     = 14
	offSpecial   = 16
	offSizeVers  = 18
	validFlags   = 0x0007 // PD_VALID_FLAG_BITS
	layoutVer    = 4      // PG_PAGE_LAYOUT_VERSION
	offFlags     = 10
	maxAlignMask = 7
)

// Changed says whether a block must be stored by an incremental backup whose base
// backup started at since (its start LSN, from the base's backup_label). The rule:
//
//   - a partial block (len(page) < BlockSize, the end of a file being extended) is
//     stored;
//   - a new page (pd_upper 0: extended but never initialised, usually all zeros) is
//     stored: it may stand where the base holds an older page of a relation truncated
//     and extended again since, which must not come back (zeros compress to nothing);
//   - a page whose header is not a valid PostgreSQL page header is stored: its LSN
//     cannot be trusted (a torn read; a page PostgreSQL itself would reject);
//   - a page with pd_lsn 0 (initialised, never WAL-logged) is stored, as a new one;
//   - a page with pd_lsn ≥ since is stored: it was modified at or after the base's
//     start, including while the base was copying it;
//   - any other page is unchanged since the base's start: every modification of a
//     main-fork page that recovery depends on is WAL-logged and sets pd_lsn to its
//     record's end (with data checksums or wal_log_hints even the first hint-bit
//     change after a checkpoint is, as a full-page image); hint bits set without WAL
//     are a cache PostgreSQL recomputes.
//
// The page's contents are read, never changed.
func Changed(page []byte, since LSN) bool {
	if len(page) != BlockSize {
		return true
	}
	if pagecheck.IsNew(page) {
		return true
	}
	ne := binary.NativeEndian
	upper := ne.Uint16(page[offUpper:])
	lower, special := ne.Uint16(page[offLower:]), ne.Uint16(page[offSpecial:])
	flags, sv := ne.Uint16(page[offFlags:]), ne.Uint16(page[offSizeVers:])
	if flags&^validFlags != 0 || lower < headerSize || lower > upper || upper > special ||
		int(special) > BlockSize || special&maxAlignMask != 0 ||
		int(sv&0xFF00) != BlockSize || sv&0x00FF != layoutVer {
		return true
	}
	// pd_lsn 0: initialised (PageInit) but never WAL-logged, e.g. a page a relation was
	// extended by whose first insert failed before its record: like a new page, it may
	// stand where the base holds an older page.
	lsn := pagecheck.PageLSN(page)
	return lsn == 0 || lsn >= since
}

// Scan reads a file of size bytes from r, block by block, and returns the blocks an
// incremental backup must store when the file had prevSize bytes in the previous
// backup of the chain (-1: the file is new, so every block is stored) and that chain
// starts at since: Changed blocks, and every block the previous copy did not hold
// whole. r must yield exactly size bytes.
func Scan(r io.Reader, size, prevSize int64, since LSN) (Map, error) {
	if size < 0 || Blocks(size) > MaxBlocks {
		return Map{}, fmt.Errorf("pagemap: a file of %d bytes", size)
	}
	firstNew := uint32(0) // blocks from here on were not whole in the previous copy
	if prevSize > 0 {
		firstNew = uint32(min(prevSize/BlockSize, MaxBlocks))
	}
	var m Map
	buf := make([]byte, BlockSize)
	n := uint32(Blocks(size))
	for b := uint32(0); b < n; b++ {
		page := buf[:min(BlockSize, size-int64(b)*BlockSize)]
		if _, err := io.ReadFull(r, page); err != nil {
			return Map{}, fmt.Errorf("pagemap: block %d: %w", b, err)
		}
		if b >= firstNew || Changed(page, since) {
			m.Add(b)
		}
	}
	return m, nil
}
