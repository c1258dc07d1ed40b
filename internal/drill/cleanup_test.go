package drill

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestFindLeftoversNamesALiveServerOfAnotherDrillAndHowToStopIt(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name, pidFile string) string {
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if pidFile != "" {
			if err := os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(pidFile), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	live := mk("pgb-drill-111", "4242\n/tmp/pgb-drill-111/data\n")
	mk("pgb-drill-222", "4343\n/tmp/pgb-drill-222/data\n") // its postgres is gone
	mk("pgb-drill-333", "")                                // never started
	ours := mk("pgb-drill-444", "4444\n")                  // this drill's own
	mk("not-a-drill", "4545\n")
	running := func(pid int, _ string) (string, bool) {
		switch pid {
		case 4242, 4444, 4545:
			return "/usr/lib/postgresql/15/bin/postgres", true
		}
		return "", false
	}
	got := findLeftovers(tmp, ours, 1000, running)
	if len(got) != 1 || got[0].Dir != live || got[0].Pid != 4242 {
		t.Fatalf("findLeftovers = %+v, want only the live server on %s", got, live)
	}
	want := "/usr/lib/postgresql/15/bin/pg_ctl -D " + live + "/data stop -m fast && rm -rf -- " + live
	if got[0].Stop != want {
		t.Errorf("stop command %q, want %q", got[0].Stop, want)
	}
	if s := got[0].String(); !strings.Contains(s, "pid 4242") || !strings.Contains(s, want) {
		t.Errorf("warning %q lacks the pid or the stop command", s)
	}
}

func TestStopCommandWaitsForTheShutdownAndRunsAsTheServersUser(t *testing.T) {
	tests := []struct {
		name           string
		created        bool
		euid, uid, gid int
		want           string
	}{
		{"own user, created", true, 1000, -1, -1, "/pg/bin/pg_ctl -D '/s d/data' stop -m fast && rm -rf -- '/s d'"},
		{"own user, given", false, 1000, -1, -1, "/pg/bin/pg_ctl -D '/s d/data' stop -m fast && find '/s d' -mindepth 1 -delete"},
		{"root, server as uid 0 (root's own)", true, 0, 0, 0, "/pg/bin/pg_ctl -D '/s d/data' stop -m fast && rm -rf -- '/s d'"},
		{"root, server as an unknown uid", true, 0, 987654, 987654,
			"setpriv --reuid=987654 --regid=987654 --clear-groups -- /pg/bin/pg_ctl -D '/s d/data' stop -m fast && rm -rf -- '/s d'"},
	}
	for _, tt := range tests {
		if got := stopCommand("/pg/bin", "/s d/data", "/s d", tt.created, tt.euid, tt.uid, tt.gid); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if u, err := user.Lookup("nobody"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		want := "runuser -u nobody -- pg_ctl -D /d/data stop -m fast && rm -rf -- /d"
		if got := stopCommand("", "/d/data", "/d", true, 0, uid, uid); got != want {
			t.Errorf("as root, server as nobody: %q, want %q", got, want)
		}
	}
}

func TestRemoveScratchReportsWhatItCouldNotRemoveAndPutsAGivenDirBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "given")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	orig, err := statDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"data", "postgres.log"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	busy := errors.New("device or resource busy")
	err = removeScratch(dir, false, orig, func(p string) error {
		if filepath.Base(p) == "data" {
			return busy
		}
		return os.RemoveAll(p)
	})
	if !errors.Is(err, busy) {
		t.Fatalf("removeScratch = %v, want the failure to remove data", err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("the given directory after the drill: %v, %v; want mode 0750 back", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); !os.IsNotExist(err) {
		t.Errorf("postgres.log left: %v", err)
	}
}

func TestParentPid(t *testing.T) {
	for stat, want := range map[string]int{
		"4242 (postgres) S 1 4242 4242 0 -1":         1,
		"4242 (post gres) (x)) S 731 4242 4242 0 -1": 731,
		"garbage": 0,
	} {
		if got, ok := parentPid(stat); got != want || ok != (want != 0) {
			t.Errorf("parentPid(%q) = %d, %v; want %d", stat, got, ok, want)
		}
	}
}
