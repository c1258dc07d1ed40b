// Package spool finds the data directory a WAL command works for and opens the
// private directories where pgb keeps local state beside it: pg_wal/pgb/<name>.
//
// The state lives under pg_wal because every base backup tool (pgb, pg_basebackup,
// pgBackRest) copies pg_wal's contents for no backup: a restored or cloned cluster never
// inherits another cluster's spool. PostgreSQL itself ignores directories in pg_wal.
//
// pg_wal may be a symbolic link (initdb --waldir): that link is PostgreSQL's and is
// followed. pg_wal/pgb and everything below it are pgb's own: a symbolic link there,
// or a directory another user owns, is refused rather than followed.
package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Dir is the directory under pg_wal that holds pgb's local state.
const Dir = "pgb"

// ErrNoDataDir means neither the working directory nor the configured data directory
// is a PostgreSQL data directory.
var ErrNoDataDir = errors.New("no data directory")

// DataDir returns the data directory a WAL command works for: wd when it holds
// global/pg_control (PostgreSQL runs archive_command and restore_command in the data
// directory), else pgdata when that does. Otherwise it returns ErrNoDataDir.
func DataDir(wd, pgdata string) (string, error) {
	for _, d := range []string{wd, pgdata} {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(d, "global", "pg_control")); err == nil && fi.Mode().IsRegular() {
			abs, err := filepath.Abs(d)
			if err != nil {
				return "", err
			}
			return abs, nil
		}
	}
	return "", ErrNoDataDir
}

// Open returns the directory pg_wal/pgb/name under dataDir, creating pg_wal/pgb and
// it with mode 0700 when missing. It refuses a symbolic link or a non-directory at
// either, and a directory owned by another user than this process's effective one.
func Open(dataDir, name string) (string, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", fmt.Errorf("spool: bad directory name %q", name)
	}
	walDir := filepath.Join(dataDir, "pg_wal")
	fi, err := os.Stat(walDir)
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("spool: %s is not a directory", walDir)
	}
	dir := walDir
	for _, part := range []string{Dir, name} {
		dir = filepath.Join(dir, part)
		if err := ensureOwnDir(dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// ensureOwnDir creates dir (0700) unless it exists, and checks that it is a real
// directory owned by this process's effective user.
func ensureOwnDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("spool: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("spool: %s is not a directory pgb made (a symbolic link or a file): remove it", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("spool: %s belongs to user id %d, not to this process (%d): run pgb as the user PostgreSQL runs as, or remove it", dir, st.Uid, os.Geteuid())
	}
	return nil
}
