package lookahead

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrArchiverRunning means another archiver holds the spool's lock.
var ErrArchiverRunning = errors.New("another archiver runs for this data directory")

// Lock is the archiver's exclusive flock on the spool's lock file. The kernel releases
// it when the process ends, however it ends.
type Lock struct{ f *os.File }

// lockAttempts and lockPause: a wal-push probing whether an archiver runs holds a
// shared lock for a few microseconds, so a starting archiver tries a few times before
// it concludes that another archiver holds the lock.
const (
	lockAttempts = 20
	lockPause    = 5 * time.Millisecond
)

// TakeLock takes the exclusive lock of spool s and writes this process's id into the
// lock file (for people and tests: the lock, not the id, says whether an archiver
// runs). It fails with ErrArchiverRunning when another process holds it.
func (s Spool) TakeLock(ctx context.Context) (*Lock, error) {
	f, err := os.OpenFile(s.LockPath(), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lookahead: %w", err)
	}
	for i := 0; ; i++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || i == lockAttempts {
			_ = f.Close() // nothing written
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, ErrArchiverRunning
			}
			return nil, fmt.Errorf("lookahead: lock %s: %w", s.LockPath(), err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close() // nothing written
			return nil, context.Cause(ctx)
		case <-time.After(lockPause):
		}
	}
	// The id is informative only: a failure to write it does not matter.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release releases the lock.
func (l *Lock) Release() { _ = l.f.Close() } // closing the descriptor drops the flock

// ArchiverRunning reports whether a process holds the lock of spool s: a probe with a
// shared lock, released at once.
func (s Spool) ArchiverRunning() bool {
	f, err := os.OpenFile(s.LockPath(), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false // no lock file: no archiver ever ran
	}
	defer func() { _ = f.Close() }() // read-only; drops the probe's lock
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}
