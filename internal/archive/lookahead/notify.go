package lookahead

import (
	"context"
	"os"
	"syscall"
	"time"
)

// watcher wakes a waiting wal-push when a file appears in the spool (a record or an
// error record: both are renamed into place), instead of polling: a wait costs no CPU.
// Without inotify it falls back to polling every poll.
type watcher struct {
	f    *os.File // the inotify descriptor, nil when polling
	poll time.Duration
	buf  []byte
}

func newWatcher(dir string, poll time.Duration) *watcher {
	w := &watcher{poll: poll}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return w
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE|syscall.IN_DELETE); err != nil {
		_ = syscall.Close(fd)
		return w
	}
	w.f = os.NewFile(uintptr(fd), "inotify") // non-blocking: reads go through the runtime poller
	w.buf = make([]byte, 4096)
	return w
}

// wait returns after something changed in the directory, after at most limit, or when
// ctx ends.
func (w *watcher) wait(ctx context.Context, limit time.Duration) {
	if w.f == nil {
		limit = min(limit, w.poll)
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return
	}
	deadline := time.Now().Add(limit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := w.f.SetReadDeadline(deadline); err != nil {
		time.Sleep(w.poll) //nolint:forbidigo // fallback pacing of a poll loop, not synchronisation
		return
	}
	_, _ = w.f.Read(w.buf) // events or the deadline: the caller looks again either way
}

func (w *watcher) close() {
	if w.f != nil {
		_ = w.f.Close()
	}
}
