package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StopPGBWorkers kills the background processes pgb runs for dataDir (the wal-push
// archiver, and any other worker that holds a lock file pg_wal/pgb/*/*.lock with its
// process id inside) and waits until their locks are free, at most 10 s. A test's
// cleanup calls it before removing the directory, which a detached worker outlives
// otherwise, and may still write to.
func StopPGBWorkers(dataDir string) {
	locks, _ := filepath.Glob(filepath.Join(dataDir, "pg_wal", "pgb", "*", "*.lock"))
	for _, l := range locks {
		if !LockHeld(l) {
			continue
		}
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL) // best effort: the wait below tells
		}
		deadline := time.Now().Add(10 * time.Second)
		for LockHeld(l) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // waiting for the kernel to release a dead process's lock
		}
	}
}

// LockHeld reports whether a process holds an flock on the file at path.
func LockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }() // read-only; drops the probe's lock
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}
