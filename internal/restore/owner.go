package restore

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/pgb-project/pgb/internal/repo"
)

// Users finds users and groups on this host; HostUsers is os/user.
type Users struct {
	ByName  func(name string) (*user.User, error)
	ByID    func(uid string) (*user.User, error)
	GroupID func(name string) (*user.Group, error)
}

// HostUsers looks users and groups up on this host.
var HostUsers = Users{ByName: user.Lookup, ByID: user.LookupId, GroupID: user.LookupGroup}

// OwnerRequest is what decides who restored files belong to.
type OwnerRequest struct {
	EUID     int         // the user pgb runs as
	Flag     string      // --owner, "" if not given
	Recorded *repo.Owner // the data directory's owner at backup time (nil: older manifest)
	Dir      string      // the directory restored into
	Users    Users
}

// ErrOwner means restore cannot tell, or may not use, the owner of the restored files.
var ErrOwner = errors.New("cannot choose the owner of the restored files")

// ChooseOwner decides who restored files belong to. Only root chooses: otherwise they
// belong to the user pgb runs as (nil). As root: --owner; else the data directory's
// owner recorded in the manifest, found on this host by name, then by uid; else, for
// a manifest without it, the owner of Dir's parent. Root itself never: PostgreSQL
// does not start on files owned by root.
func ChooseOwner(req OwnerRequest) (*Owner, error) {
	if req.EUID != 0 {
		if req.Flag != "" {
			return nil, fmt.Errorf("%w: --owner needs root", ErrOwner)
		}
		return nil, nil
	}
	if req.Flag != "" {
		u, err := req.Users.ByName(req.Flag)
		if err != nil {
			return nil, fmt.Errorf("%w: --owner %q: %w", ErrOwner, req.Flag, err)
		}
		return ownerOfUser(u, "", req.Users)
	}
	if rec := req.Recorded; rec != nil {
		var u *user.User
		var err error
		if rec.User != "" {
			u, err = req.Users.ByName(rec.User)
		}
		if u == nil {
			u, err = req.Users.ByID(strconv.FormatUint(uint64(rec.UID), 10))
		}
		if err != nil || u == nil {
			return nil, fmt.Errorf("%w: the backup's data directory belonged to user %q (uid %d), who does not exist on this host: create that user, or name the owner with --owner USER",
				ErrOwner, rec.User, rec.UID)
		}
		o, err := ownerOfUser(u, rec.Group, req.Users)
		if err == nil && o.UID == 0 {
			return nil, fmt.Errorf("%w: the backup's data directory belonged to root, and PostgreSQL does not start on files owned by root: name the owner with --owner USER", ErrOwner)
		}
		return o, err
	}
	parent := filepath.Dir(req.Dir)
	fi, err := os.Stat(parent)
	if err != nil {
		return nil, fmt.Errorf("parent of %s: %w", req.Dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%w: cannot tell the owner of %s: name it with --owner USER", ErrOwner, parent)
	}
	if st.Uid == 0 {
		return nil, fmt.Errorf("%w: the backup does not record its owner (made by an older pgb) and %s belongs to root, and PostgreSQL does not start on files owned by root: name the owner with --owner USER (e.g. --owner postgres)",
			ErrOwner, parent)
	}
	return &Owner{UID: int(st.Uid), GID: int(st.Gid)}, nil
}

// ownerOfUser is u with the group named group when this host has it, else u's primary
// group.
func ownerOfUser(u *user.User, group string, users Users) (*Owner, error) {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("%w: user %s has uid %q", ErrOwner, u.Username, u.Uid)
	}
	gidStr := u.Gid
	if group != "" {
		if g, err := users.GroupID(group); err == nil {
			gidStr = g.Gid
		}
	}
	gid, err := strconv.Atoi(gidStr)
	if err != nil {
		return nil, fmt.Errorf("%w: user %s has gid %q", ErrOwner, u.Username, gidStr)
	}
	return &Owner{UID: uid, GID: gid}, nil
}
