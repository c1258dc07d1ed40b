package repo

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host is what a lock records about the process that takes it, and what decides
// whether another lock's holder is provably gone. LocalHost reads it from the running
// system; tests build their own.
type Host struct {
	Name         string // host name
	BootID       string // /proc/sys/kernel/random/boot_id: changes with every boot, differs between clones
	PIDNamespace string // readlink /proc/self/ns/pid, e.g. "pid:[4026531836]"
	PID          int    // this process
	// ProcessStart returns the start time of process pid in this PID namespace
	// (clock ticks since boot, /proc/PID/stat field 22), or an error wrapping
	// fs.ErrNotExist when there is no such process.
	ProcessStart func(pid int) (uint64, error)
	// Now is the clock.
	Now func() time.Time
}

// LocalHost describes this process on this machine. Facts that cannot be read (no
// /proc) stay empty, and a lock with an empty fact is never taken over by pid.
func LocalHost() Host {
	name, _ := os.Hostname()
	h := Host{Name: name, PID: os.Getpid(), ProcessStart: procStart, Now: time.Now}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.BootID = strings.TrimSpace(string(b))
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		h.PIDNamespace = ns
	}
	return h
}

// procStart reads field 22 (starttime) of /proc/PID/stat. Whether the process exists
// is asked of kill(pid, 0), not of /proc, which hides other users' processes when
// mounted with hidepid.
func procStart(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("pid %d: %w", pid, iofs.ErrNotExist)
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return 0, fmt.Errorf("pid %d: %w", pid, iofs.ErrNotExist)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("pid %d exists but its start time cannot be read: %s", pid, err.Error()) // deliberately not wrapped: must not read as ErrNotExist
	}
	return parseProcStart(string(b))
}

// parseProcStart takes field 22 of a /proc/PID/stat line. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses: fields are counted
// after the last ')'.
func parseProcStart(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return 0, errors.New("short /proc stat line")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// gone says why the holder of lock o is provably gone, or "" when it may be alive.
func (h Host) gone(o LockOwner, maxAge time.Duration) string {
	if age := h.Now().Sub(o.Started); age > maxAge {
		return fmt.Sprintf("the lock is %s old, more than the %s limit (--lock-max-age)", age.Round(time.Second), maxAge)
	}
	if o.Host != h.Name || o.BootID == "" || o.BootID != h.BootID || o.PIDNamespace == "" || o.PIDNamespace != h.PIDNamespace || h.ProcessStart == nil {
		return "" // another machine, boot or PID namespace: its pid means nothing here
	}
	if o.PID <= 0 {
		return "the lock names no process"
	}
	start, err := h.ProcessStart(o.PID)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return fmt.Sprintf("process %d no longer exists on this host", o.PID)
	case err != nil:
		return "" // cannot tell
	case o.ProcStart != 0 && start != o.ProcStart:
		return fmt.Sprintf("pid %d now belongs to another process (started at tick %d, the holder at %d)", o.PID, start, o.ProcStart)
	}
	return ""
}
