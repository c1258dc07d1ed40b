package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// Limits on what a fetched WAL file may decode to. Repository data is untrusted: an
// object that decodes to more is refused before anything reaches DEST.
const (
	minSegSize = 1 << 20 // PostgreSQL's wal_segment_size: a power of two, 1 MiB to 1 GiB
	maxSegSize = 1 << 30
	// maxBackupFileSize bounds a .backup history file: a few lines naming the backup.
	maxBackupFileSize = 1 << 20
)

// copyWAL copies the decoded WAL file r of kind f into w. A segment (or .partial) must
// be exactly the size its own long page header records, a power of two from 1 MiB to
// 1 GiB; a .history file at most wal.MaxHistorySize (what restore's history parser
// accepts), a .backup file at most maxBackupFileSize. It
// never reads more than one byte past the limit; a file of the wrong size is an error
// wrapping repo.ErrCorrupt. With sysID not 0, a segment whose header names another
// cluster is an error wrapping repo.ErrForeignCluster.
func copyWAL(w io.Writer, r io.Reader, f wal.File, buf []byte, sysID uint64) error {
	limit := int64(maxBackupFileSize)
	exact := false
	var head []byte
	switch f.Kind {
	case wal.History:
		limit = wal.MaxHistorySize
	case wal.Segment, wal.Partial:
		head = make([]byte, wal.LongHeaderSize)
		if _, err := io.ReadFull(r, head); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF { // the decoded stream ended (a failing source is another error)
				return fmt.Errorf("%w: decodes to less than a WAL page header", repo.ErrCorrupt)
			}
			return err
		}
		h, err := wal.ParseSegmentHeader(head)
		if err != nil {
			return fmt.Errorf("%w: not a WAL segment: %w", repo.ErrCorrupt, err)
		}
		if sysID != 0 && h.SystemID != sysID {
			// PostgreSQL would take another cluster's segment for the end of its WAL
			// and, restoring to the end, promote with what follows missing.
			return fmt.Errorf("%w: the segment is cluster %d's, the data directory is cluster %d's: wrong repository in restore_command", repo.ErrForeignCluster, h.SystemID, sysID)
		}
		if h.SegSize < minSegSize || h.SegSize > maxSegSize {
			return fmt.Errorf("%w: its header records a segment size of %d bytes, not a power of two from 1 MiB to 1 GiB", repo.ErrCorrupt, h.SegSize)
		}
		limit, exact = int64(h.SegSize), true
		if _, err := w.Write(head); err != nil {
			return err
		}
	}
	n, err := copyAtMost(w, r, limit-int64(len(head))+1, buf)
	n += int64(len(head))
	switch {
	case err != nil:
		return err
	case n > limit:
		return fmt.Errorf("%w: decodes to more than the %d bytes a %s can have", repo.ErrCorrupt, limit, f.Kind)
	case exact && n != limit:
		return fmt.Errorf("%w: decodes to %d bytes, but the segment's header records %d", repo.ErrCorrupt, n, limit)
	}
	return nil
}

// copyAtMost copies r into w until r ends or max bytes were copied, in writes that fill
// buf: the decoded stream hands out small pieces (a codec block), and a few large
// writes are much cheaper than many small ones. Only r's own io.EOF ends the copy
// cleanly (for an envelope reader: its trailer matched); any other error, even one
// that wraps an EOF, is returned.
func copyAtMost(w io.Writer, r io.Reader, max int64, buf []byte) (int64, error) {
	var n int64
	for n < max {
		want := int(min(int64(len(buf)), max-n))
		filled := 0
		var rerr error
		for filled < want && rerr == nil {
			var k int
			k, rerr = r.Read(buf[filled:want])
			filled += k
		}
		if filled > 0 {
			if _, werr := w.Write(buf[:filled]); werr != nil {
				return n, werr
			}
			n += int64(filled)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
	return n, nil
}

// sameContent compares the decoded stored object with the local file at path, reading
// at most one byte more than the file holds: an object that decodes to far more (a
// decompression bomb) costs nothing.
func sameContent(stored io.Reader, path string) error {
	local, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = local.Close() }() // read only
	fi, err := local.Stat()
	if err != nil {
		return err
	}
	return sameReader(stored, local, fi.Size())
}

// errContentDiffers means a stored object decoded to other bytes than compared with.
var errContentDiffers = errors.New("content differs")

// sameReader compares the decoded stored object with the size bytes of local, reading
// at most one byte more than that from stored.
func sameReader(stored, local io.Reader, size int64) error {
	a, b := make([]byte, 256<<10), make([]byte, 256<<10)
	lr := io.LimitReader(stored, size+1)
	for {
		n, err := io.ReadFull(lr, a)
		if n > 0 {
			if _, lerr := io.ReadFull(local, b[:n]); lerr != nil || !bytes.Equal(a[:n], b[:n]) {
				return errContentDiffers
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF { // the decoded stream ended, verified
			break
		}
		if err != nil {
			return err
		}
	}
	if m, _ := local.Read(b[:1]); m > 0 {
		return fmt.Errorf("%w (the stored object is shorter)", errContentDiffers)
	}
	return nil
}
