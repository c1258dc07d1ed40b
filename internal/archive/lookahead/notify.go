package lookahead

import (
	"context"
	"errors"
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

// dirWatch signals C when entries are created, renamed into or removed from any of
// its directories: the archiver waits on it for new ready segments (archive_status)
// and for records and error records removed by wal-push calls (the spool), rather
// than listing both directories every few milliseconds. ok is false when inotify is
// unavailable: the caller polls instead.
type dirWatch struct {
	C  chan struct{}
	f  *os.File
	ok bool
}

func newDirWatch(dirs ...string) *dirWatch {
	w := &dirWatch{C: make(chan struct{}, 1)}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return w
	}
	for _, d := range dirs {
		if _, err := syscall.InotifyAddWatch(fd, d, syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_DELETE|syscall.IN_MOVED_FROM); err != nil {
			_ = syscall.Close(fd)
			return w
		}
	}
	w.f = os.NewFile(uintptr(fd), "inotify") // non-blocking: Read parks in the runtime poller
	w.ok = true
	go w.loop()
	return w
}

// loop turns events (or a queue overflow, which also ends a Read) into one pending
// signal, until close.
func (w *dirWatch) loop() {
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil && !errors.Is(err, syscall.EINTR) {
			return // closed
		}
		select {
		case w.C <- struct{}{}:
		default: // one pending signal is enough: the archiver looks at everything
		}
	}
}

func (w *dirWatch) close() {
	if w.f != nil {
		_ = w.f.Close()
	}
}
