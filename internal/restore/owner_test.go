package restore

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"os/user"

	"github.com/pgb-project/pgb/internal/repo"
)

// fakeUsers is a host with the users postgres (999:998, group postgres) and
// alice (1000:1000), and the group dba (1500).
var fakeUsers = Users{
	ByName: func(name string) (*user.User, error) {
		switch name {
		case "postgres":
			return &user.User{Username: "postgres", Uid: "999", Gid: "998"}, nil
		case "alice":
			return &user.User{Username: "alice", Uid: "1000", Gid: "1000"}, nil
		case "root":
			return &user.User{Username: "root", Uid: "0", Gid: "0"}, nil
		}
		return nil, user.UnknownUserError(name)
	},
	ByID: func(uid string) (*user.User, error) {
		switch uid {
		case "999":
			return &user.User{Username: "postgres", Uid: "999", Gid: "998"}, nil
		case "1000":
			return &user.User{Username: "alice", Uid: "1000", Gid: "1000"}, nil
		}
		return nil, user.UnknownUserIdError(0)
	},
	GroupID: func(name string) (*user.Group, error) {
		switch name {
		case "postgres":
			return &user.Group{Name: "postgres", Gid: "998"}, nil
		case "dba":
			return &user.Group{Name: "dba", Gid: "1500"}, nil
		}
		return nil, user.UnknownGroupError(name)
	},
}

func TestChooseOwner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pgdata") // every case here decides without the parent
	for _, tc := range []struct {
		name string
		req  OwnerRequest
		want *Owner
		err  string
	}{
		{"not root: the running user", OwnerRequest{EUID: 1000, Recorded: &repo.Owner{UID: 999, User: "postgres"}}, nil, ""},
		{"not root with --owner", OwnerRequest{EUID: 1000, Flag: "postgres"}, nil, "--owner needs root"},
		{"--owner wins", OwnerRequest{EUID: 0, Flag: "alice", Recorded: &repo.Owner{UID: 999, User: "postgres"}}, &Owner{1000, 1000}, ""},
		{"unknown --owner", OwnerRequest{EUID: 0, Flag: "bob"}, nil, `--owner "bob"`},
		{"recorded owner by name", OwnerRequest{EUID: 0, Recorded: &repo.Owner{UID: 26, GID: 26, User: "postgres", Group: "postgres"}}, &Owner{999, 998}, ""},
		{"recorded group by name", OwnerRequest{EUID: 0, Recorded: &repo.Owner{UID: 26, GID: 26, User: "postgres", Group: "dba"}}, &Owner{999, 1500}, ""},
		{"recorded group unknown: the user's", OwnerRequest{EUID: 0, Recorded: &repo.Owner{UID: 26, GID: 26, User: "postgres", Group: "gone"}}, &Owner{999, 998}, ""},
		{"recorded name unknown, uid known", OwnerRequest{EUID: 0, Recorded: &repo.Owner{UID: 1000, GID: 1000, User: "ghost"}}, &Owner{1000, 1000}, ""},
		{"recorded owner absent from this host", OwnerRequest{EUID: 0, Recorded: &repo.Owner{UID: 4242, User: "ghost"}}, nil, "--owner"},
		{"recorded owner is root", OwnerRequest{EUID: 0, Recorded: &repo.Owner{UID: 0, User: "root"}}, nil, "--owner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Users, tc.req.Dir = fakeUsers, dir
			got, err := ChooseOwner(tc.req)
			if tc.err != "" {
				if !errors.Is(err, ErrOwner) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ChooseOwner = %v, %v; want ErrOwner with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("ChooseOwner = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// A manifest of an older pgb records no owner: the parent's owner is used, but never
// root, on whose files PostgreSQL does not start.
func TestChooseOwnerWithoutRecordedOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own the parent directory")
	}
	parent := t.TempDir()
	req := OwnerRequest{EUID: 0, Dir: filepath.Join(parent, "pgdata"), Users: fakeUsers}
	if got, err := ChooseOwner(req); !errors.Is(err, ErrOwner) || !strings.Contains(err.Error(), "--owner") {
		t.Fatalf("root-owned parent: %v, %v; want a refusal naming --owner", got, err)
	}
	if err := os.Chown(parent, 999, 998); err != nil {
		t.Fatal(err)
	}
	if got, err := ChooseOwner(req); err != nil || got == nil || *got != (Owner{999, 998}) {
		t.Fatalf("postgres-owned parent: %+v, %v; want 999:998", got, err)
	}
}

// backup-push records who owns the data directory, for restore to give it back.
func TestBackupRecordsTheDataDirectoryOwner(t *testing.T) {
	b := takeBackup(t, "none")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	o := b.m.DataDirOwner
	if o == nil || strconv.Itoa(int(o.UID)) != me.Uid || o.User != me.Username {
		t.Fatalf("manifest records data directory owner %+v, want uid %s (%s)", o, me.Uid, me.Username)
	}
}
