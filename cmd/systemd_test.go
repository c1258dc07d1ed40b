package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/config"
)

// The systemd units that ship with pgb run commands pgb accepts, every service has a
// timer or is a long-running one, and systemd-analyze (where the machine has it) finds
// nothing wrong with them.
func TestSystemdUnitsRunCommandsPgbAccepts(t *testing.T) {
	isolate(t)
	units, err := filepath.Glob("../scripts/systemd/pgb-*")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in scripts/systemd (%v)", err)
	}
	names := map[string]bool{}
	for _, u := range units {
		names[filepath.Base(u)] = true
	}
	for _, want := range []string{"pgb-backup.service", "pgb-backup.timer", "pgb-drill.service", "pgb-drill.timer", "pgb-wal-stream.service"} {
		if !names[want] {
			t.Errorf("scripts/systemd has no %s", want)
		}
	}
	dir := t.TempDir() // the units as systemd-analyze checks them: a timer needs its service beside it
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		body := string(b)
		if strings.HasSuffix(u, ".timer") {
			if !names[strings.TrimSuffix(filepath.Base(u), ".timer")+".service"] {
				t.Errorf("%s: no service of that name to start", u)
			}
		}
		var execs []string
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				execs = append(execs, v)
			}
		}
		if strings.HasSuffix(u, ".service") && len(execs) == 0 {
			t.Errorf("%s: no ExecStart", u)
		}
		for _, ex := range execs {
			args := strings.Fields(ex)
			if len(args) < 2 || args[0] != "/usr/bin/pgb" {
				t.Fatalf("%s: ExecStart=%q does not run /usr/bin/pgb", u, ex)
			}
			// --help parses every flag before it: an unknown one fails.
			if r := pgb(t, append(args[1:], "--help")...); r.code != 0 {
				t.Errorf("%s: pgb %s: %s", u, strings.Join(args[1:], " "), r.stderr)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(u)), []byte(strings.ReplaceAll(body, "/usr/bin/pgb", "/bin/true")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		verifyUnit(t, filepath.Join(dir, filepath.Base(u)))
	}
}

// verifyUnit runs systemd-analyze verify on a unit whose ExecStart's binary exists
// here; without systemd-analyze it says so.
func verifyUnit(t *testing.T, path string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed: %s not verified by systemd", path)
		return
	}
	// --man=no: man:pgb(1) is installed by the package, which this machine may not have
	// (integration.TestThePackageInstallsAndItsUnitsVerify checks the installed units, man
	// page included).
	if out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}

// The example /etc/pgb/pgb.yaml the packages install is a valid configuration: every
// key in it, commented out or not, is a setting pgb knows.
func TestPackagedConfigExampleIsValid(t *testing.T) {
	isolate(t)
	const example = "../scripts/packaging/pgb.yaml"
	if _, err := config.ReadFile(example); err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	src := func(k string) (string, bool) {
		if k == config.KeyConfig {
			return example, true
		}
		return "", false
	}
	if _, err := config.Load(src); err != nil {
		t.Fatalf("%s does not load: %v", example, err)
	}
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	// The commented keys too: uncommented one by one, each must be a known setting.
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		key, _, ok := strings.Cut(l, ":")
		if !ok || strings.ContainsAny(key, " /.()") || key == "" || strings.HasPrefix(key, "-") {
			continue
		}
		if _, known := config.Lookup(key); !known {
			t.Errorf("%s names %q, which is no setting", example, key)
		}
	}
}
