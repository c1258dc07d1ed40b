package drill

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/pgb-project/pgb/internal/restore"
)

// createOwned writes a new file at p and gives it to owner (nil: stays pgb's). As
// root pgb writes into directories the server's OS user owns (the scratch
// directory, the restored data directory), where that user may have planted a link
// to a file of root's: p is created, never opened through a link nor reused
// (O_EXCL|O_NOFOLLOW), and the chown is on the open descriptor. replace removes what
// is at p first (the name, not what it points at).
func createOwned(p string, data []byte, owner *restore.Owner, replace bool) error {
	if replace {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if owner != nil {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			_ = f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
