package drill

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dirState is a directory's mode and owner, to put back.
type dirState struct {
	mode     fs.FileMode
	uid, gid int
}

// statDir is dir's dirState.
func statDir(dir string) (*dirState, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	st := &dirState{mode: fi.Mode().Perm(), uid: -1, gid: -1}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.uid, st.gid = int(s.Uid), int(s.Gid)
	}
	return st, nil
}

// restore puts dir's mode and owner back.
func (s *dirState) restore(dir string) error {
	return errors.Join(os.Chown(dir, s.uid, s.gid), os.Chmod(dir, s.mode))
}

// removeScratch removes what the drill wrote: scratch itself when the drill created
// it, else its content, then puts the given directory's mode and owner back (orig).
// It returns what it could not do.
func removeScratch(scratch string, created bool, orig *dirState, removeAll func(string) error) error {
	if created {
		return removeAll(scratch)
	}
	ents, err := os.ReadDir(scratch)
	errs := []error{err}
	for _, e := range ents {
		errs = append(errs, removeAll(filepath.Join(scratch, e.Name())))
	}
	if orig != nil {
		errs = append(errs, orig.restore(scratch))
	}
	return errors.Join(errs...)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// stopCommand is the shell command that stops the server on data (pg_ctl waits for
// the shutdown to finish) and then removes the scratch directory (its content only
// when the user gave it). As root, pg_ctl runs as the server's OS user uid (-1: pgb's
// own), which pg_ctl requires.
func stopCommand(bin, data, scratch string, created bool, euid, uid, gid int) string {
	pgctl := "pg_ctl"
	if bin != "" {
		pgctl = filepath.Join(bin, "pg_ctl")
	}
	stop := shellQuote(pgctl) + " -D " + shellQuote(data) + " stop -m fast"
	if euid == 0 && uid > 0 {
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			stop = "runuser -u " + shellQuote(u.Username) + " -- " + stop
		} else {
			stop = fmt.Sprintf("setpriv --reuid=%d --regid=%d --clear-groups -- %s", uid, gid, stop)
		}
	}
	if created {
		return stop + " && rm -rf -- " + shellQuote(scratch)
	}
	return stop + " && find " + shellQuote(scratch) + " -mindepth 1 -delete"
}
