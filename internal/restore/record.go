package restore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// RecordFile is the record a finished restore leaves in the data directory: for each
// file it wrote (or a delta restore kept) with the backup's bytes, and has not changed
// since, the identity the file had then — device, inode, size, modification time and
// inode change time (ctime). restore --delta --trust-time keeps a file unread when its
// identity is still the recorded one (docs/incremental.md, "Delta restore"): no write,
// chmod, chown, link or time set on it since, which would all have moved its ctime, a
// time no tool can set. backup-push leaves it out, like PostgreSQL's own files of a
// restore.
const RecordFile = ".pgb-restored"

// maxRecordSize bounds the record a delta restore reads: some 200 bytes a file, for a
// million files. A larger one is not read (every file is then checksummed).
const maxRecordSize = 256 << 20

// record is RecordFile's content.
type record struct {
	Format   int           `json:"format"`
	SystemID uint64        `json:"system_id"`
	Backup   string        `json:"backup"`
	Taken    time.Time     `json:"taken"`
	Files    []recordEntry `json:"files"`
}

const recordFormat = 1

// recordEntry is one file of a record: its path in the backup, the checksum of the
// backup's bytes it holds, and its identity when the record was taken.
type recordEntry struct {
	Path      string `json:"path"`
	CRC       string `json:"crc"`
	Size      int64  `json:"size"`
	MTimeNano int64  `json:"mtime_ns"`
	CTimeNano int64  `json:"ctime_ns"`
	Dev       uint64 `json:"dev"`
	Ino       uint64 `json:"ino"`
}

// same says whether fi, a file found where e's was, still is the one recorded.
func (e *recordEntry) same(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode().IsRegular() && st.Nlink == 1 && st.Dev == e.Dev && st.Ino == e.Ino &&
		fi.Size() == e.Size && fi.ModTime().UnixNano() == e.MTimeNano && ctime(st).UnixNano() == e.CTimeNano
}

func ctime(st *syscall.Stat_t) time.Time { return time.Unix(st.Ctim.Sec, st.Ctim.Nsec) }

// restoredFile is a file restore wrote, or kept, with the backup's bytes: a candidate
// for the record.
type restoredFile struct {
	path, crc string
	size      int64
	mtime     time.Time
}

// restoredFiles collects the files of a restore, from its workers.
type restoredFiles struct {
	mu    sync.Mutex
	files []restoredFile
}

func (l *restoredFiles) add(f restoredFile) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.files = append(l.files, f)
}

// writeRecord leaves RecordFile in the data directory of restore of m, which finished:
// the files it wrote or kept that still have the backup's size and modification time
// (those it changed after, postgresql.auto.conf with the recovery settings, have
// another time). Without it every file is read by the next delta restore, so it is
// not written on a filesystem that stamps whole seconds (its ctimes have no
// nanoseconds): a write in the same second as the record would leave the ctime
// recorded. A failure is logged, not returned: the restore is complete.
func (r *Restorer) writeRecord(m *repo.Manifest, spc map[uint32]string) {
	rec := record{Format: recordFormat, SystemID: uint64(m.SystemID), Backup: m.Name}
	fine := false
	for _, f := range r.restored.files {
		root, rel, err := r.localRoot(f.path, spc)
		if err != nil {
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || !fi.Mode().IsRegular() || st.Nlink != 1 || fi.Size() != f.size || !fi.ModTime().Equal(f.mtime) {
			continue
		}
		fine = fine || st.Ctim.Nsec != 0
		rec.Files = append(rec.Files, recordEntry{Path: f.path, CRC: f.crc, Size: f.size, MTimeNano: f.mtime.UnixNano(),
			CTimeNano: ctime(st).UnixNano(), Dev: st.Dev, Ino: st.Ino})
	}
	if !fine {
		r.Log.Debug("no restore record written: no file has a change time finer than a second", "dir", r.Opt.DataDir)
		return
	}
	rec.Taken = time.Now().UTC()
	b, err := json.Marshal(rec)
	if err == nil {
		err = r.writeSmall(RecordFile, b)
	}
	if err != nil {
		r.Log.Warn("restore finished, but its record for a later restore --delta --trust-time could not be written (that one will read every file)", "error", err)
	}
}

// loadRecord reads and removes RecordFile from dir, before a delta restore changes
// anything there, and returns its entries by path when it is a whole record of the
// cluster sysID. One that is absent, a link (removed, never followed), too large,
// unreadable, of another cluster or format gives none (every file is then read): it
// only ever spares reads. Its removal need not be durable: a record that comes back
// after a crash matches no file the interrupted restore changed.
func (r *Restorer) loadRecord(dir string, sysID uint64) (map[string]*recordEntry, error) {
	name := filepath.Join(dir, RecordFile)
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		defer func() { _ = f.Close() }() // read only
	}
	if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove %s: %w", name, rerr)
	}
	var entries map[string]*recordEntry
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && (!fi.Mode().IsRegular() || fi.Size() > maxRecordSize) {
			err = fmt.Errorf("not a regular file of at most %d bytes", maxRecordSize)
		}
		if err == nil {
			entries, err = decodeRecord(f, sysID)
		}
	}
	if err != nil {
		r.Log.Warn("restore record ignored: every file is read", "file", name, "error", err)
		return nil, nil
	}
	return entries, nil
}

// decodeRecord decodes a record of at most maxRecordSize bytes from rd, and returns
// its entries by path when it is of format recordFormat and the cluster sysID.
func decodeRecord(rd io.Reader, sysID uint64) (map[string]*recordEntry, error) {
	var rec record
	dec := json.NewDecoder(io.LimitReader(rd, maxRecordSize))
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("not a restore record: %w", err)
	}
	if rec.Format != recordFormat {
		return nil, fmt.Errorf("restore record of format %d, not %d", rec.Format, recordFormat)
	}
	if rec.SystemID != sysID {
		return nil, fmt.Errorf("restore record of another cluster (system identifier %d)", rec.SystemID)
	}
	out := make(map[string]*recordEntry, len(rec.Files))
	for i := range rec.Files {
		out[rec.Files[i].Path] = &rec.Files[i]
	}
	return out, nil
}
