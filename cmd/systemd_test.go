package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The systemd units that ship with pgb run commands pgb accepts, and systemd-analyze
// (where the machine has it) finds nothing wrong with them.
func TestSystemdUnitsRunCommandsPgbAccepts(t *testing.T) {
	isolate(t)
	units, err := filepath.Glob("../scripts/systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in scripts/systemd (%v)", err)
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		var exec string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				exec = v
			}
		}
		args := strings.Fields(exec)
		if len(args) < 2 || args[0] != "/usr/bin/pgb" {
			t.Fatalf("%s: ExecStart=%q does not run /usr/bin/pgb", u, exec)
		}
		// --help parses every flag before it: an unknown one fails.
		if r := pgb(t, append(args[1:], "--help")...); r.code != 0 {
			t.Errorf("%s: pgb %s: %s", u, strings.Join(args[1:], " "), r.stderr)
		}
		verifyUnit(t, u, string(b))
	}
}

// verifyUnit runs systemd-analyze verify on the unit with its ExecStart's binary
// replaced by one that exists here; without systemd-analyze it says so.
func verifyUnit(t *testing.T, path, body string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed: %s not verified by systemd", path)
		return
	}
	p := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "/usr/bin/pgb", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", p).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}
