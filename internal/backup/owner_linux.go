package backup

import (
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// openFunc opens a file or directory of the cluster for reading.
type openFunc func(name string) (*os.File, error)

// clusterOpener returns how to open the cluster's files. As root, pgb could read any
// file on the machine, and the data directory is in the hands of its owner (the
// postgres OS user), who could plant a link or swap a directory to make a root
// backup read root-only files into the repository. So as root every file and
// directory is opened with the filesystem credentials of the data directory's owner
// (uid, gid and that user's groups, on the opening thread only): the kernel then
// checks every path component, symlink and permission as for the owner, and pgb
// reads exactly what the cluster's owner could read. Any other user opens normally.
func clusterOpener(dataDir string) (openFunc, error) {
	if os.Geteuid() != 0 {
		return os.Open, nil
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return os.Open, nil // a root-owned cluster: root reads as itself
	}
	o := ownerOpener{uid: int(st.Uid), gid: int(st.Gid), groups: []int{int(st.Gid)}}
	if u, err := user.LookupId(strconv.Itoa(o.uid)); err == nil {
		if ids, err := u.GroupIds(); err == nil {
			o.groups = o.groups[:0]
			for _, id := range ids {
				if g, err := strconv.Atoi(id); err == nil {
					o.groups = append(o.groups, g)
				}
			}
		}
	}
	return o.open, nil
}

// ownerOpener opens files as the cluster's owner.
type ownerOpener struct {
	uid, gid int
	groups   []int
}

func (o ownerOpener) open(name string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, restored, err := o.openOnThread(name)
		if restored {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// openOnThread switches the calling thread's filesystem credentials to the owner's,
// opens name, and switches back. restored is false when the thread's credentials
// could not be put back, so that the caller never lets it run anything else.
func (o ownerOpener) openOnThread(name string) (f *os.File, restored bool, err error) {
	groups, err := unix.Getgroups()
	if err != nil {
		return nil, true, fmt.Errorf("open %s as the cluster's owner: %w", name, err)
	}
	if err := unix.Setgroups(o.groups); err != nil {
		return nil, true, fmt.Errorf("open %s as the cluster's owner: setgroups: %w", name, err)
	}
	prevGID, _ := unix.SetfsgidRetGid(o.gid)
	prevUID, _ := unix.SetfsuidRetUid(o.uid)
	if cur, _ := unix.SetfsuidRetUid(-1); cur == o.uid {
		if cur, _ := unix.SetfsgidRetGid(-1); cur == o.gid {
			f, err = os.Open(name)
		} else {
			err = fmt.Errorf("open %s: could not take the cluster owner's group %d", name, o.gid)
		}
	} else {
		err = fmt.Errorf("open %s: could not take the cluster owner's uid %d", name, o.uid)
	}
	_, _ = unix.SetfsuidRetUid(prevUID)
	_, _ = unix.SetfsgidRetGid(prevGID)
	gerr := unix.Setgroups(groups)
	uid, _ := unix.SetfsuidRetUid(-1)
	gid, _ := unix.SetfsgidRetGid(-1)
	restored = gerr == nil && uid == prevUID && gid == prevGID
	if err != nil && f != nil {
		_ = f.Close() // opened for reading, nothing read: err is what is reported
		f = nil
	}
	return f, restored, err
}
