package lookahead

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
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

// TakeLock takes the exclusive lock of spool s and writes this process's id and the
// location of the repository it ships to into the lock file (the lock, not the id,
// says whether an archiver runs; the location tells a wal-push call whether the
// archiver works for its repository). It fails with ErrArchiverRunning when another
// process holds it.
func (s Spool) TakeLock(ctx context.Context, location string) (*Lock, error) {
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
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+oneLine(location)+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// oneLine keeps s on one line of at most 1 KiB.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

// Holder returns the process id and repository location the running archiver wrote
// into the lock file; ok is false when the file cannot be read or says nothing usable
// (an archiver of an older pgb wrote only its id: location is then "").
func (s Spool) Holder() (pid int, location string, ok bool) {
	b, err := s.readSmall(lockName)
	if err != nil {
		return 0, "", false
	}
	lines := strings.SplitN(string(b), "\n", 3)
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 1 {
		return 0, "", false
	}
	if len(lines) > 1 {
		location = strings.TrimSpace(lines[1])
	}
	return pid, location, true
}

// StopStale asks the running archiver to stop (SIGTERM: it finishes the segments in
// flight and exits) when it ships to another repository than location: one started
// before the configuration changed. It reports whether the archiver is such a stale
// one; this process itself is never signalled.
func (s Spool) StopStale(location string, log *slog.Logger) bool {
	pid, loc, ok := s.Holder()
	if !ok || loc == oneLine(location) || !s.ArchiverRunning() {
		return false
	}
	if pid != os.Getpid() {
		log.Info("stopping a background archiver that ships to another repository (started before a configuration change)",
			"pid", pid, "its_repo", loc)
		_ = syscall.Kill(pid, syscall.SIGTERM) // best effort: the call ships its segment itself either way
	}
	return true
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
