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
// but ours. orphaned says whether pid is a live postgres on data directory data that
// no pgb runs any more, and its binary ("" if it cannot tell); euid is pgb's (for the
// stop command).
func findLeftovers(tmp, ours string, euid int, orphaned func(pid int, data string) (exe string, ok bool)) []leftover {
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
		exe, ok := orphaned(pid, data)
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

// orphanedPostgres says whether pid is a live postgres running on data directory
// data that no pgb runs any more, and its binary. A stale postmaster.pid (a drill
// killed by a reboot, /tmp on disk) may name a pid that now belongs to another
// postgres (the production server): a postmaster works in its data directory, so its
// /proc/PID/cwd must be data, or the stop command would signal that other server.
// A drill starts its server itself, so while the drill runs the server's parent is
// that pgb; once pgb is killed, the server is handed to init (or another reaper).
// What cannot be told (a process pgb may not look at) is not reported: a warning
// must never point at a drill that is still running, nor at another server.
func orphanedPostgres(pid int, data string) (string, bool) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", false
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	if filepath.Base(exe) != "postgres" {
		return "", false
	}
	if !workingIn(pid, data) {
		return "", false
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	ppid, ok := parentPid(string(st))
	if !ok {
		return "", false
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// A reaper pgb may not look into (another user's, or in another namespace):
		// its command name, which anyone may read, still tells whether it is a pgb.
		comm, cerr := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ppid))
		if cerr != nil && ppid != 1 {
			return "", false
		}
		parent = strings.TrimSpace(string(comm))
	}
	return exe, !strings.HasPrefix(filepath.Base(parent), "pgb")
}

// workingIn says whether process pid's working directory is dir (links resolved).
func workingIn(pid int, dir string) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	return cwd == want
}

// parentPid is the parent's pid in a /proc/PID/stat line ("pid (comm) state ppid ...";
// comm may hold spaces and parentheses).
func parentPid(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// stopWith comes before the command in a warning (the report prints the command
// whole, on lines of its own).
const stopWith = ": stop it with: "

func (l leftover) String() string {
	return fmt.Sprintf("a server of an earlier drill is still running (pid %d on %s; was that pgb drill killed?)%s%s",
		l.Pid, l.Dir, stopWith, l.Stop)
}
