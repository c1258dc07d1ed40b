package drill

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// leftover is a drill's server still running on a default scratch directory
// (TMPDIR/pgb-drill-*): left by a pgb drill that was killed (SIGKILL, a crash, the
// machine's OOM killer) before it could stop it.
type leftover struct {
	Dir  string // the scratch directory
	Pid  int    // the postmaster
	Exe  string // its binary, "" if unknown
	UID  int    // the data directory's owner
	GID  int
	Stop string // the command that stops it and removes Dir
}

// findLeftovers lists the servers still running on pgb-drill-* directories in tmp,
// but ours. running says whether pid is a live postgres, and its binary ("" if it
// cannot tell); euid is pgb's (for the stop command).
func findLeftovers(tmp, ours string, euid int, running func(pid int) (exe string, ok bool)) []leftover {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "pgb-drill-*"))
	var out []leftover
	for _, dir := range dirs {
		if dir == ours {
			continue
		}
		data := filepath.Join(dir, "data")
		b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 {
			continue
		}
		exe, ok := running(pid)
		if !ok {
			continue
		}
		l := leftover{Dir: dir, Pid: pid, Exe: exe, UID: -1, GID: -1}
		if fi, err := os.Stat(data); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				l.UID, l.GID = int(st.Uid), int(st.Gid)
			}
		}
		bin := ""
		if exe != "" {
			bin = filepath.Dir(exe)
		}
		l.Stop = stopCommand(bin, data, dir, true, euid, l.UID, l.GID)
		out = append(out, l)
	}
	return out
}

// postgresRunning says whether pid is a live postgres (its binary's path when /proc
// shows it; a process pgb may not look at counts as one).
func postgresRunning(pid int) (string, bool) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err == nil {
		exe = strings.TrimSuffix(exe, " (deleted)")
		return exe, filepath.Base(exe) == "postgres"
	}
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	err = syscall.Kill(pid, 0)
	return "", err == nil || errors.Is(err, syscall.EPERM)
}

func (l leftover) String() string {
	return fmt.Sprintf("a server of an earlier drill is still running (pid %d on %s; was that pgb drill killed?): stop it with: %s",
		l.Pid, l.Dir, l.Stop)
}
