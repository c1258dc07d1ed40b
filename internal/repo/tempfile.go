package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// TempFile opens a scratch file with no name, in dir ("": the system's temporary
// directory, $TMPDIR): nothing is left behind when it is closed or when pgb is killed.
// It is made with O_TMPFILE; on a file system without it, it is created under a
// name (pattern, see os.CreateTemp) and removed at once, so only a pgb killed between
// the two leaves that file (mode 0600, empty).
func TempFile(dir, pattern string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed "+pattern+")")), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("temporary file in %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close() // the removal's error is the one to report
		return nil, err
	}
	return f, nil
}
