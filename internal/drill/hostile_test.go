package drill

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pgb-project/pgb/internal/restore"
)

// As root the scratch directory is the server user's (chooseOwner) for the whole
// restore; that user (postgres: anything running as it) can plant links there.
// start must not write drill_hba.conf or open postgres.log through them, as root,
// nor chown what they point at to the server user.
func TestDrillAsRootDoesNotWriteThroughLinksPlantedByTheServerUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, c := range []struct {
		name  string
		plant func(victim, scratch string) error
	}{
		{"hba symlink", func(v, s string) error { return os.Symlink(v, filepath.Join(s, "drill_hba.conf")) }},
		{"hba hard link", func(v, s string) error { return os.Link(v, filepath.Join(s, "drill_hba.conf")) }},
		{"log symlink", func(v, s string) error { return os.Symlink(v, filepath.Join(s, "postgres.log")) }},
		{"log hard link", func(v, s string) error { return os.Link(v, filepath.Join(s, "postgres.log")) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte("root's secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			scratch := t.TempDir()
			data := filepath.Join(scratch, "data")
			if err := os.Mkdir(data, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{scratch, data} {
				if err := os.Chown(p, 65534, 65534); err != nil { // as chooseOwner and restore do
					t.Fatal(err)
				}
			}
			if err := c.plant(victim, scratch); err != nil {
				t.Fatal(err)
			}
			d := &drill{scratch: scratch, owner: &restore.Owner{UID: 65534, GID: 65534}, rep: &Report{}}
			_ = d.start(t.TempDir()) // no postgres there: Start fails after the writes
			b, _ := os.ReadFile(victim)
			fi, _ := os.Stat(victim)
			if string(b) != "root's secret\n" || fi.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("%s outside the scratch directory: now %q, owner %d", victim, b, fi.Sys().(*syscall.Stat_t).Uid)
			}
		})
	}
}
