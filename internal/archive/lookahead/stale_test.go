package lookahead

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// After the repository setting changes, an archiver started before the change still
// ships to the old repository. Its error must not fail a call working for the new one:
// the call ships its segment itself.
func TestACallForANewRepositoryIsNotFailedByAnArchiverShippingToTheOldOne(t *testing.T) {
	c := newCluster(t, 1)
	oldRepo := faulty.New(named{Store: mem.New(), name: "mem:retired"}, faulty.Rule{Op: faulty.Put, Key: "wal/", Err: errors.New("bucket retired")})
	start, ended := inProcessWaiting(c.archiver(oldRepo, 2))
	fg := c.foreground(named{Store: mem.New(), name: "mem:new"}, start)
	err := fg.Await(context.Background(), c.path(1))
	ended()
	if !errors.Is(err, ErrArchiverGone) {
		t.Fatalf("await: %v; want ErrArchiverGone (the call ships the segment itself), never the old repository's error", err)
	}
}

// Look-ahead is a speed-up: when no archiver can be started (fork fails under a process
// limit, the binary replaced mid-upgrade), the call ships its segment itself instead of
// failing archiving (and, with wal-push-queue-max, dropping the segment).
func TestACallShipsItselfWhenNoArchiverCanBeStarted(t *testing.T) {
	c := newCluster(t, 1)
	fg := c.foreground(mem.New(), func() (<-chan struct{}, error) {
		return nil, errors.New("fork/exec /usr/bin/pgb: resource temporarily unavailable")
	})
	if err := fg.Await(context.Background(), c.path(1)); !errors.Is(err, ErrArchiverGone) {
		t.Fatalf("await: %v; want ErrArchiverGone (the call ships the segment itself)", err)
	}
}

// An archiver of another repository that never goes idle (a busy primary) would hold
// the lock for ever: the call asks it to stop (SIGTERM), so that the next call starts one
// with the current settings. The one of the call's own repository is left alone.
func TestAnArchiverShippingToAnotherRepositoryIsAskedToStop(t *testing.T) {
	c := newCluster(t, 0)
	// A process holding the lock as an archiver does: flock(1) keeps it (-o: not its
	// child), and ends on SIGTERM.
	holder := exec.Command("flock", "-o", c.spool.LockPath(), "sleep", "300")
	if err := holder.Start(); err != nil {
		t.Skipf("flock(1): %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- holder.Wait() }()
	t.Cleanup(func() { _ = holder.Process.Kill() })
	deadline := time.Now().Add(time.Minute) // a hang guard, not a timing
	for !c.spool.ArchiverRunning() {
		if time.Now().After(deadline) {
			t.Fatal("flock never took the lock")
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.WriteFile(c.spool.LockPath(), []byte(strconv.Itoa(holder.Process.Pid)+"\nmem:old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if c.spool.StopStale("mem:old", log) {
		t.Fatal("the archiver of the call's own repository was taken for a stale one")
	}
	if !c.spool.StopStale("mem:new", log) {
		t.Fatal("an archiver shipping to another repository was not recognised")
	}
	err := <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("the stale archiver ended with %v, want SIGTERM", err)
	}
}
