package archive

import (
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"
)

// wantNotifier wakes the prefetcher when a wal-fetch renames a new request into the
// spool (inotify), so that it neither polls often nor answers late. Without inotify
// the prefetcher falls back to polling.
type wantNotifier struct {
	f *os.File
	C chan struct{} // one pending wake-up at most
}

// notifyWant watches dir for a request; nil when inotify is not available.
func notifyWant(dir string) *wantNotifier {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO); err != nil {
		_ = unix.Close(fd) // unused
		return nil
	}
	n := &wantNotifier{f: os.NewFile(uintptr(fd), "inotify"), C: make(chan struct{}, 1)}
	go n.read()
	return n
}

// read turns the events naming the request file into wake-ups, until Close.
func (n *wantNotifier) read() {
	buf := make([]byte, 64<<10)
	for {
		k, err := n.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			end := min(off+unix.SizeofInotifyEvent+nameLen, k)
			name := buf[off+unix.SizeofInotifyEvent : end]
			if i := indexZero(name); i >= 0 {
				name = name[:i]
			}
			if string(name) == wantFile {
				select {
				case n.C <- struct{}{}:
				default:
				}
			}
			off = end
		}
	}
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// Close stops watching.
func (n *wantNotifier) Close() {
	if n != nil {
		_ = n.f.Close() // ends read
	}
}
