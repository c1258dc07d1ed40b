package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CannotRead returns the first path that keeps owner from reading the file at path —
// a directory above it without search permission, or the file itself without read
// permission — or "" when owner can read it. It judges from mode bits against owner's
// uid and primary gid only: supplementary groups and ACLs are not considered, so it
// may name a path that owner could in fact read through one of them.
func CannotRead(path string, owner Owner) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	var dirs []string
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
		if d == filepath.Dir(d) {
			break
		}
	}
	for _, d := range dirs {
		if blocked, err := deniedPath(d, owner, 1); err != nil || blocked {
			return d, err
		}
	}
	if blocked, err := deniedPath(abs, owner, 4); err != nil || blocked {
		return abs, err
	}
	return "", nil
}

func deniedPath(p string, owner Owner, bit os.FileMode) (bool, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("cannot tell the owner of %s", p)
	}
	return denied(fi.Mode().Perm(), int(st.Uid), int(st.Gid), owner, bit), nil
}

// denied says whether owner lacks permission bit (4 read, 1 search) on a file of mode
// perm owned by uid:gid, as the kernel decides it: the owner bits for the file's owner,
// else the group bits for its group, else the others' bits. Root is never denied.
func denied(perm os.FileMode, uid, gid int, owner Owner, bit os.FileMode) bool {
	switch {
	case owner.UID == 0:
		return false
	case owner.UID == uid:
		return perm&(bit<<6) == 0
	case owner.GID == gid:
		return perm&(bit<<3) == 0
	default:
		return perm&bit == 0
	}
}
