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
	id, ok := idOf(fi)
	return ok && fi.Mode().IsRegular() && oneLink(fi) && id == fileID{dev: e.Dev, ino: e.Ino, ctime: e.CTimeNano} &&
		fi.Size() == e.Size && fi.ModTime().UnixNano() == e.MTimeNano
}

func ctime(st *syscall.Stat_t) time.Time { return time.Unix(st.Ctim.Sec, st.Ctim.Nsec) }

// restoredFile is a file restore wrote, or kept, with the backup's bytes, and its
// identity then (fileID): a candidate for the record, taken only if it still has it.
type restoredFile struct {
	path, crc string
	size      int64
	mtime     time.Time
	id        fileID
}

// fileID is what tells one state of a file from another without reading it: any
// write, chmod, chown, link, rename or time set changes its ctime.
type fileID struct {
	dev, ino uint64
	ctime    int64 // nanoseconds
}

// idOf is fi's fileID; ok is false when fi has none (not a stat of this system).
func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: st.Dev, ino: st.Ino, ctime: ctime(st).UnixNano()}, true
}

// addRestored records that f, open on the file path holds the backup's bytes (checked),
// with its identity now.
func (r *Restorer) addRestored(f *os.File, path, crc string, size int64, mtime time.Time) {
	fi, err := f.Stat()
	if err != nil {
		return // not recorded: a later --trust-time reads it
	}
	if id, ok := idOf(fi); ok {
		r.restored.add(restoredFile{path: path, crc: crc, size: size, mtime: mtime, id: id})
	}
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
// the files it wrote or checked that still are as they were when their bytes were
// checked (same identity, size and time: those it changed after, like
// postgresql.auto.conf with the recovery settings or pg_control renamed into place,
// are not). A file whose ctime has no nanoseconds is left out: on a filesystem that
// stamps whole seconds, a change in the same second would keep the recorded ctime.
// A failure is logged, not returned: the restore is complete.
func (r *Restorer) writeRecord(m *repo.Manifest, spc map[uint32]string) {
	rec := record{Format: recordFormat, SystemID: uint64(m.SystemID), Backup: m.Name}
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
		if id, _ := idOf(fi); !ok || id != f.id || !fi.Mode().IsRegular() || st.Nlink != 1 || st.Ctim.Nsec == 0 ||
			fi.Size() != f.size || !fi.ModTime().Equal(f.mtime) {
			continue
		}
		rec.Files = append(rec.Files, recordEntry{Path: f.path, CRC: f.crc, Size: f.size, MTimeNano: f.mtime.UnixNano(),
			CTimeNano: f.id.ctime, Dev: f.id.dev, Ino: f.id.ino})
	}
	if len(rec.Files) == 0 {
		r.Log.Debug("no restore record written: no file is as it was when checked, with a change time finer than a second", "dir", r.Opt.DataDir)
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
// anything there, and returns the entries of the files want names, by path, when it is
// a whole record of the cluster sysID. One that is absent, not a regular file (left for
// the delta restore to judge as any other file; never opened, never followed), larger
// than maxRecordSize, unreadable, of another cluster or format gives none (every file is
// then read): it only ever spares reads. Entries are decoded one by one and only those
// want names kept, so a hostile record holds no more memory than the plan. Its removal
// need not be durable: a record that comes back after a crash matches no file the
// interrupted restore changed.
func (r *Restorer) loadRecord(dir string, sysID uint64, want func(path string) bool) (map[string]*recordEntry, error) {
	name := filepath.Join(dir, RecordFile)
	fi, err := os.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		r.Log.Warn("restore record ignored: not a regular file; every file is read", "file", name)
		return nil, nil
	}
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err == nil {
		defer func() { _ = f.Close() }() // read only
	}
	if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove %s: %w", name, rerr)
	}
	var entries map[string]*recordEntry
	if err == nil {
		var ofi os.FileInfo
		if ofi, err = f.Stat(); err == nil && (!os.SameFile(fi, ofi) || ofi.Size() > maxRecordSize) {
			err = fmt.Errorf("replaced while opened, or larger than %d bytes", maxRecordSize)
		}
		if err == nil {
			entries, err = decodeRecord(f, sysID, want)
		}
	}
	if err != nil {
		r.Log.Warn("restore record ignored: every file is read", "file", name, "error", err)
		return nil, nil
	}
	return entries, nil
}

// decodeRecord decodes a record of at most maxRecordSize bytes from rd, entry by entry,
// and returns the entries want names, by path, when it is of format recordFormat and
// the cluster sysID.
func decodeRecord(rd io.Reader, sysID uint64, want func(path string) bool) (map[string]*recordEntry, error) {
	dec := json.NewDecoder(io.LimitReader(rd, maxRecordSize))
	var (
		format int
		id     uint64
		out    = map[string]*recordEntry{}
	)
	if t, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not a restore record: %w", err)
	} else if t != json.Delim('{') {
		return nil, errors.New("not a restore record: not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not a restore record: %w", err)
		}
		key, _ := t.(string)
		switch key {
		case "format":
			err = dec.Decode(&format)
		case "system_id":
			err = dec.Decode(&id)
		case "files":
			if t, err = dec.Token(); err == nil && t != json.Delim('[') {
				err = errors.New("files is not a list")
			}
			for err == nil && dec.More() {
				var e recordEntry
				if err = dec.Decode(&e); err == nil && want(e.Path) {
					out[e.Path] = &e
				}
			}
			if err == nil {
				_, err = dec.Token() // ]
			}
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, fmt.Errorf("not a restore record: %w", err)
		}
	}
	if format != recordFormat {
		return nil, fmt.Errorf("restore record of format %d, not %d", format, recordFormat)
	}
	if id != sysID {
		return nil, fmt.Errorf("restore record of another cluster (system identifier %d)", id)
	}
	return out, nil
}
