// Package fs is the local-filesystem storage.Store: each object is a regular file
// under a root directory, at the path its key names.
//
// Put writes a temp file (".tmp-*") beside the target, fsyncs it, renames it over the
// target (or, with IfAbsent, hard-links it to the target name so that an existing object
// makes the call fail with storage.ErrExist, after fsyncing that object and its
// directories: its writer may have died before it did), and fsyncs the directory. A
// successful Put then removes the temp files in that directory older than
// StaleTempAge, left by killed writers. Directories are
// created 0700 and files 0600. Keys whose last element begins with ".tmp-" are
// rejected, since List skips such names; a key cannot name both an object and a
// "directory" of other objects ("a" and "a/b"), unlike in object stores.
//
// The package targets Unix filesystems that support hard links, fsync on
// directories and atomic rename.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/storage"
)

// tmpPrefix begins the name of every temp file; List skips such names.
const tmpPrefix = ".tmp-"

// copyChunk is the buffer size Put copies with; ctx is checked between chunks.
const copyChunk = 256 << 10

// Store is a storage.Store backed by a directory tree. It holds no open files and is
// safe for concurrent use, including by several processes on the same root.
type Store struct {
	root string
	opt  Options
	// owner is set when pgb runs as root in a repository that belongs to another user
	// (typically postgres): everything created is given to that user, so that the
	// archive_command running as that user can still read and write it.
	owner *[2]int
}

var _ storage.Store = (*Store)(nil)

// Options are the store's access to the OS, for tests that must observe or control it.
type Options struct {
	// Fsync makes a file or directory durable; nil means (*os.File).Sync. Tests
	// record what was synced.
	Fsync func(f *os.File) error
	// Now is the clock that ages temp files; nil means time.Now.
	Now func() time.Time
}

// StaleTempAge is the age after which a temp file is taken for the leftover of a
// killed writer and removed by the next Put into its directory. A live writer never
// leaves its temp file untouched for that long: each write updates its mtime, and a
// Put that waits that long for its data has long hit its deadline.
const StaleTempAge = time.Hour

// New opens the store rooted at root, which must be an absolute path. The directory
// is created with mode 0700, along with missing parents, if it does not exist.
func New(root string) (*Store, error) { return NewWithOptions(root, Options{}) }

// NewWithOptions is New with explicit Options.
func NewWithOptions(root string, opt Options) (*Store, error) {
	if opt.Fsync == nil {
		opt.Fsync = (*os.File).Sync
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("fs: root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("fs: create root: %w", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("fs: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("fs: root %s is not a directory", root)
	}
	st := &Store{root: root, opt: opt}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && sys.Uid != 0 {
		st.owner = &[2]int{int(sys.Uid), int(sys.Gid)}
	}
	return st, nil
}

// chown gives a created file or directory to the repository's owner, if any.
func (s *Store) chown(p string) error {
	if s.owner == nil {
		return nil
	}
	if err := os.Lchown(p, s.owner[0], s.owner[1]); err != nil {
		return fmt.Errorf("fs: give %s to the repository's owner: %w", p, err)
	}
	return nil
}

// String returns "file://" followed by the root.
func (s *Store) String() string { return "file://" + s.root }

// Close does nothing: the store holds no resources between calls.
func (s *Store) Close() error { return nil }

// path checks key and returns its file path.
func (s *Store) path(key string) (string, error) {
	if err := storage.ValidKey(key); err != nil {
		return "", err
	}
	if strings.HasPrefix(key[strings.LastIndexByte(key, '/')+1:], tmpPrefix) {
		return "", fmt.Errorf("%w: %q: names beginning with %q are reserved for temp files", storage.ErrInvalidKey, key, tmpPrefix)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// notExist translates "no such file" (or a file where a directory was expected) into
// storage.ErrNotExist, keeping the original error in the message.
func notExist(err error) error {
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// Only the storage sentinel is part of the chain: the OS error is for the message.
		return fmt.Errorf("%w: %s", storage.ErrNotExist, err.Error())
	}
	return err
}

// Put stores r's bytes under key atomically and durably; see the package comment. On
// failure or cancellation the temp file is removed and a previous object is untouched.
// A failure of the final directory fsync is reported although the new object is
// already in place.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (err error) {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("fs: put %q: %w", key, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	if opts.IfAbsent {
		// Fail early rather than after copying the data; the link below is the check
		// that counts.
		if _, err := os.Lstat(p); err == nil {
			return s.existing(p, linkError(p, iofs.ErrExist))
		}
	}
	dir := filepath.Dir(p)
	f, err := s.createTemp(dir)
	if err != nil {
		return err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if f != nil {
			_ = f.Close() // only on failure: the temp file is removed below
		}
		if !committed {
			_ = os.Remove(tmp) // best effort, like removeEmptyDirs
			s.removeEmptyDirs(dir)
		}
	}()

	if err := storage.CopyContext(ctx, f, r, make([]byte, copyChunk)); err != nil {
		return err
	}
	if err := s.opt.Fsync(f); err != nil {
		return err
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return cerr
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if opts.IfAbsent {
		if err := os.Link(tmp, p); err != nil {
			return s.existing(p, linkError(p, err))
		}
		committed = true
		// The object is in place; a temp name left behind by a failed remove is
		// harmless (List skips it), so it does not fail the Put.
		_ = os.Remove(tmp)
	} else {
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		committed = true
	}
	if err := s.syncDir(dir); err != nil {
		return err
	}
	s.removeStaleTemps(dir)
	return nil
}

// removeStaleTemps removes the temp files in dir older than StaleTempAge, left by
// writers that were killed, best effort.
func (s *Store) removeStaleTemps(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	cutoff := s.opt.Now().Add(-StaleTempAge)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tmpPrefix) || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// existing returns err, a put-if-absent's failure, once the object it found at p is
// durable when err says that it exists. The writer that made it visible may have died
// before its fsyncs (killed between link(2) and the directory fsync); a caller that
// counts ErrExist with identical content as success (a retried wal-push, after which
// PostgreSQL recycles the segment) must not rely on an object a crash can still lose.
// If the object cannot be made durable, the error says so and is not ErrExist.
func (s *Store) existing(p string, err error) error {
	if !errors.Is(err, storage.ErrExist) {
		return err
	}
	if derr := s.makeDurable(p); derr != nil {
		return fmt.Errorf("the object exists but cannot be made durable: %w", derr)
	}
	return err
}

// makeDurable fsyncs the file at p, then its directory and every parent up to the
// root, whose entries a killed writer may not have synced either.
func (s *Store) makeDurable(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = s.opt.Fsync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for dir := filepath.Dir(p); strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if err := s.syncDir(dir); err != nil {
			return err
		}
		if dir == s.root {
			break
		}
	}
	return nil
}

// linkError translates the error of linking the temp file to the target name.
func linkError(target string, err error) error {
	switch {
	case errors.Is(err, iofs.ErrExist):
		if fi, serr := os.Lstat(target); serr == nil && fi.IsDir() {
			return fmt.Errorf("a directory of other objects has this name: %w", err)
		}
		return fmt.Errorf("%w: %s", storage.ErrExist, err.Error()) // only the storage sentinel in the chain
	case errors.Is(err, syscall.EPERM), errors.Is(err, errors.ErrUnsupported):
		// link(2) gives EPERM when the filesystem does not support hard links.
		return fmt.Errorf("%w: IfAbsent needs hard links: %s", storage.ErrUnsupported, err.Error()) // only the storage sentinel in the chain
	}
	return err
}

// createTemp creates the directories down to dir and a temp file in it. A concurrent
// Delete may remove a directory it just created (an empty parent), so it retries then.
func (s *Store) createTemp(dir string) (*os.File, error) {
	var err error
	for range 10 {
		if err = s.mkdirs(dir); err != nil {
			return nil, err
		}
		var f *os.File
		f, err = os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil {
			if err := s.chown(f.Name()); err != nil {
				// Best-effort cleanup of an empty temp file: the chown error is reported.
				_ = f.Close()
				_ = os.Remove(f.Name())
				return nil, err
			}
			return f, nil
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// mkdirs creates dir and its missing parents below the root, mode 0700, and fsyncs the
// parent of each directory it creates so that the new entries are durable.
func (s *Store) mkdirs(dir string) error {
	if dir == s.root {
		return nil
	}
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return fmt.Errorf("%s is outside the root %s", dir, s.root)
	}
	if err := s.mkdirs(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, iofs.ErrExist) {
			return nil // created concurrently
		}
		return err
	}
	if err := s.chown(dir); err != nil {
		return err
	}
	return s.syncDir(parent)
}

// removeEmptyDirs removes dir and then its parents while they are empty, stopping
// below the root. Failures (a directory not empty, or already gone) end it silently:
// another writer may be using the directory.
func (s *Store) removeEmptyDirs(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return
		}
		dir = filepath.Dir(dir)
	}
}

func (s *Store) syncDir(dir string) error { return atomicfile.SyncDirWith(dir, s.opt.Fsync) }

// Get opens the object and positions it at off. The reader yields at most length bytes
// (to the end when length < 0) and fails with io.ErrUnexpectedEOF if the file turns out
// shorter than its size when opened, and with ctx's error once ctx is done.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fs: get %q: %w", key, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("fs: get %q: %w", key, notExist(err))
	}
	rc, err := openRange(ctx, f, off, length)
	if err != nil {
		_ = f.Close() // opened read-only and nothing read: the openRange error is reported
		return nil, fmt.Errorf("fs: get %q: %w", key, err)
	}
	return rc, nil
}

func openRange(ctx context.Context, f *os.File, off, length int64) (io.ReadCloser, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", storage.ErrNotExist)
	}
	size := fi.Size()
	if off < 0 || off > size {
		return nil, fmt.Errorf("%w: offset %d, size %d", storage.ErrInvalidRange, off, size)
	}
	n := size - off
	if length >= 0 && length < n {
		n = length
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return &rangeReader{ctx: ctx, f: f, r: io.LimitedReader{R: f, N: n}}, nil
}

// rangeReader reads exactly r.N bytes from f, or fails.
type rangeReader struct {
	ctx context.Context
	f   *os.File
	r   io.LimitedReader
}

func (rr *rangeReader) Read(p []byte) (int, error) {
	if err := rr.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := rr.r.Read(p)
	if errors.Is(err, io.EOF) && rr.r.N > 0 {
		err = fmt.Errorf("fs: %s: file ended %d bytes early: %w", rr.f.Name(), rr.r.N, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (rr *rangeReader) Close() error { return rr.f.Close() }

// Stat describes the object under key.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("fs: stat %q: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("fs: stat %q: %w", key, notExist(err))
	}
	if !fi.Mode().IsRegular() {
		return storage.ObjectInfo{}, fmt.Errorf("fs: stat %q: %w: not a regular file", key, storage.ErrNotExist)
	}
	return storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes the object under key, then removes the directories that this left
// empty, up to but not including the root.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: delete %q: %w", key, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("fs: delete %q: %w", key, notExist(err))
	}
	if fi.IsDir() {
		return fmt.Errorf("fs: delete %q: %w: is a directory", key, storage.ErrNotExist)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("fs: delete %q: %w", key, notExist(err))
	}
	s.removeEmptyDirs(filepath.Dir(p))
	return nil
}

// List walks only the directory that the prefix names up to its last "/", entering
// only the subdirectories that can hold matching keys, and calls fn in lexical key
// order. Temp files are skipped. Files and directories that vanish during the walk are
// skipped too.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidPrefix(prefix); err != nil {
		return err
	}
	i := strings.LastIndexByte(prefix, '/')
	dirKey, partial := prefix[:i+1], prefix[i+1:] // dirKey is "" or ends in "/"
	err := s.walk(ctx, dirKey, partial, fn)
	var stop stopError
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("fs: list %q: %w", prefix, err)
	}
	return nil
}

// stopError carries fn's error out of walk, so that List returns it unchanged.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }

// walk lists directory dirKey ("" for the root, else ending in "/"), keeping only the
// entries whose name begins with partial.
func (s *Store) walk(ctx context.Context, dirKey, partial string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(s.root, filepath.FromSlash(dirKey))
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	type entry struct {
		sortKey string // name, plus "/" for a directory, so that order matches key order
		ent     iofs.DirEntry
		dir     bool
	}
	es := make([]entry, 0, len(ents))
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, partial) {
			continue
		}
		isDir := e.IsDir()
		if e.Type()&iofs.ModeSymlink != 0 {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			isDir = fi.IsDir()
		}
		if isDir {
			es = append(es, entry{sortKey: name + "/", ent: e, dir: true})
		} else if !strings.HasPrefix(name, tmpPrefix) {
			es = append(es, entry{sortKey: name, ent: e})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].sortKey < es[j].sortKey })
	for _, e := range es {
		if e.dir {
			if err := s.walk(ctx, dirKey+e.sortKey, "", fn); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.ent.Name()))
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				continue // deleted meanwhile
			}
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(storage.ObjectInfo{Key: dirKey + e.ent.Name(), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return stopError{err}
		}
	}
	return nil
}

// RemoveStaleTemps finds, below the key prefix (a directory: "backups/"), the temp
// files that killed writers left and that were last written before cutoff, and with remove
// deletes them and the directories they leave empty. It returns how many files and
// bytes it found. The next Put into a directory removes its stale temp files, but a
// killed backup leaves them in a directory of its own that nothing writes again: only
// this removes them. The caller makes sure no writer is live below prefix (pgb delete
// --garbage holds the backup lock, under which alone backups/ is written).
func (s *Store) RemoveStaleTemps(ctx context.Context, prefix string, cutoff time.Time, remove bool) (files int, bytes int64, err error) {
	dir, err := s.path(strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return 0, 0, err
	}
	var emptied []string
	err = filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !strings.HasPrefix(d.Name(), tmpPrefix) || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil // gone meanwhile, or young
		}
		files++
		bytes += fi.Size()
		if remove {
			if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
				return err
			}
			emptied = append(emptied, filepath.Dir(p))
		}
		return nil
	})
	if err != nil {
		return files, bytes, fmt.Errorf("fs: stale temp files below %q: %w", prefix, err)
	}
	for _, d := range emptied {
		s.removeEmptyDirs(d)
	}
	return files, bytes, nil
}
