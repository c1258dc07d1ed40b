package backup

import (
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/pgb-project/pgb/internal/repo"
)

// ownerOf is who owns dir, by number and (when this host knows them) by name; nil if
// that cannot be told. Restore gives the files back to that user.
func ownerOf(dir string) *repo.Owner {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	o := &repo.Owner{UID: st.Uid, GID: st.Gid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
		o.User = u.Username
	}
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10)); err == nil {
		o.Group = g.Name
	}
	return o
}
