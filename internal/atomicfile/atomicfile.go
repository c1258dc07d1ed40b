// Package atomicfile writes local files so that their final name only ever holds the
// complete content: temp file beside the target, fsync, rename, fsync the directory.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// File is a temp file that becomes Path on Commit.
type File struct {
	*os.File
	path string
	done bool
}

// Create opens a temp file in the same directory as path (so rename is atomic), with
// the given mode.
func Create(path string, mode os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, ".pgb-tmp-"+base+"-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(mode); err != nil {
		// Best-effort cleanup of an empty temp file: the Chmod error is what matters.
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit syncs the file, renames it to its final name and syncs the directory.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("atomicfile: %s already closed", f.path)
	}
	f.done = true
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		// Best-effort cleanup: the temp file is abandoned and the Sync error is reported.
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp) // best effort: the Close error is reported
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		_ = os.Remove(tmp) // best effort: the Rename error is reported
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// CommitNew is Commit that never replaces an existing file: the temp file is linked
// to its final name, and an error wrapping os.ErrExist says that name is taken (the
// temp file is then removed).
func (f *File) CommitNew() error {
	if f.done {
		return fmt.Errorf("atomicfile: %s already closed", f.path)
	}
	f.done = true
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // linked or abandoned: the temp name goes
	if err := f.Sync(); err != nil {
		_ = f.Close() // best effort: the Sync error is reported
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	if err := os.Link(tmp, f.path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort removes the temp file. It is safe to call after Commit (then it does nothing).
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	// Best effort: the content is being thrown away, so a failed Close or Remove loses
	// nothing but a stray temp file.
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// SyncDir fsyncs a directory so that a rename or create in it is durable. It is the
// one directory sync of pgb: the filesystem store uses it too (through SyncDirWith).
func SyncDir(dir string) error { return SyncDirWith(dir, (*os.File).Sync) }

// SyncDirWith is SyncDir making the directory durable with fsync, which tests replace
// to inject faults.
func SyncDirWith(dir string, fsync func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // opened read-only: only the Sync result matters
	if err := fsync(d); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
