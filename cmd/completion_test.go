package cmd

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/testenv"
)

// completeBash runs the bash completion script for the words typed so far (the last one
// being completed) and returns what bash offers.
func completeBash(t *testing.T, script string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)-1) + "\n_pgb\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "--norc", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestBashCompletionOffersCommandsAndTheirFlags(t *testing.T) {
	isolate(t)
	r := pgb(t, "completion", "bash")
	if r.code != 0 {
		t.Fatalf("completion bash: %d %s", r.code, r.stderr)
	}
	script := filepath.Join(t.TempDir(), "pgb.bash")
	if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words []string
		want  string
		not   string
	}{
		{[]string{"pgb", "wal-f"}, "wal-fetch", "wal-push"},
		{[]string{"pgb", "restore", "--target-n"}, "--target-name", "--target-xid"},
		// A flag before the command that takes a value: its value is not the command.
		{[]string{"pgb", "--config", "/etc/pgb/pgb.yaml", "wal-stream", "--sync"}, "--synchronous", ""},
		{[]string{"pgb", "status", "--js"}, "--json", ""},
		{[]string{"pgb", "--ver"}, "--version", ""},
		// --flag=value, as bash splits it.
		{[]string{"pgb", "--config", "=", "/x", "wal-stream", "--sync"}, "--synchronous", ""},
		// Before the command, any command's flag.
		{[]string{"pgb", "--con"}, "--config", ""},
	} {
		got := completeBash(t, script, c.words...)
		if !contains(got, c.want) || (c.not != "" && contains(got, c.not)) {
			t.Errorf("%q: bash offers %q, want %q (and not %q)", c.words, got, c.want, c.not)
		}
	}
	// Arguments that are not flags are left to bash's file names (complete -o default).
	if got := completeBash(t, script, "pgb", "wal-push", "pg_w"); len(got) != 0 {
		t.Errorf("wal-push PATH: the script offers %q, want nothing (file names)", got)
	}
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// The zsh script parses, and for each position hands zsh's completion functions what
// the command line's definitions say (they are replaced by stubs that print their
// arguments: zsh's completion system needs a terminal to run for real).
func TestZshCompletionDescribesCommandsAndFlags(t *testing.T) {
	isolate(t)
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		testenv.SkipOrFail(t, "zsh is not installed (scripts/ensure-test-tools installs it)")
	}
	r := pgb(t, "completion", "zsh")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "#compdef pgb\n") {
		t.Fatalf("completion zsh: %d %s\n%.200s", r.code, r.stderr, r.stdout)
	}
	script := filepath.Join(t.TempDir(), "_pgb")
	if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	run := func(words ...string) string {
		prog := `_describe() { print -l -- "$@" "${commands[@]}" }
_arguments() { print -l -- "$@" }
words=(` + strings.Join(words, " ") + `)
CURRENT=${#words}
source ` + script
		out, err := exec.Command(zsh, "-f", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("zsh: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run("pgb", "''"); !strings.Contains(out, "\nwal-fetch:") || !strings.Contains(out, "\nrestore:") {
		t.Errorf("commands offered:\n%s", out)
	}
	for _, words := range [][]string{{"pgb", "restore", "--t"}, {"pgb", "--config", "/etc/pgb/pgb.yaml", "restore", "--t"}} {
		out := run(words...)
		if !strings.Contains(out, "--target-name=[") || !strings.Contains(out, "--delta[") || strings.Contains(out, "--synchronous") {
			t.Errorf("%q: restore's flags offered:\n%s", words, out)
		}
	}
	if out := run("pgb", "--config", "/etc/pgb/pgb.yaml", "''"); !strings.Contains(out, "\nwal-fetch:") {
		t.Errorf("commands offered after a flag:\n%s", out)
	}
}

// The man page lists every command and renders without a groff warning.
func TestManPageListsEveryCommandAndRendersCleanly(t *testing.T) {
	isolate(t)
	r := pgb(t, "man", "--date", "2026-12-04")
	if r.code != 0 {
		t.Fatalf("man: %d %s", r.code, r.stderr)
	}
	for _, c := range allCommands() {
		if !strings.Contains(r.stdout, `.SS "pgb `+strings.ReplaceAll(c.Name, "-", `\-`)) {
			t.Errorf("the man page has no section for %s", c.Name)
		}
	}
	if !strings.Contains(r.stdout, `\fB\-\-target\-name\fR \fIvalue\fR`) {
		t.Error("the man page does not list restore --target-name")
	}
	if strings.Contains(r.stdout, "`") {
		t.Error("the man page shows urfave/cli's `placeholders` literally")
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		testenv.SkipOrFail(t, "groff is not installed: rendering not checked (scripts/ensure-test-tools installs it)")
	}
	page := filepath.Join(t.TempDir(), "pgb.1")
	if err := os.WriteFile(page, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", page).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}

func TestVersionNamesCommitGoAndTestedPostgreSQL(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{{"--version"}, {"-v"}, {"version"}} {
		r := pgb(t, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "pgb test\n") || !strings.Contains(r.stdout, runtime.Version()) ||
			!strings.Contains(r.stdout, "postgresql tested: 15") {
			t.Errorf("pgb %s: %d\n%s%s", args[0], r.code, r.stdout, r.stderr)
		}
	}
	r := pgb(t, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != "test" || len(v.PGTested) == 0 {
		t.Errorf("version --json: %v %+v\n%s", err, v, r.stdout)
	}
	for _, args := range [][]string{{"--version", "extra"}, {"--version=false"}} {
		if r := pgb(t, args...); r.code != exitUsage {
			t.Errorf("pgb %q: exit %d, want a usage error", args, r.code)
		}
	}
	if r := pgb(t, "completion", "fish"); r.code != exitUsage || !strings.Contains(r.stderr, "bash or zsh") {
		t.Errorf("completion fish: %d %s", r.code, r.stderr)
	}
}

// pgb check --json is one document, also when a step fails (exit 1).
func TestCheckJSONIsOneDocument(t *testing.T) {
	isolate(t)
	r := pgb(t, "check", "--json", "--repo", t.TempDir(), "--pg-dsn", "host="+t.TempDir()+" connect_timeout=2")
	var doc struct {
		Passed bool `json:"passed"`
		Failed int  `json:"failed"`
		Steps  []struct {
			Name, Status, Message string
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("check --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	if r.code != 1 || doc.Passed || doc.Failed == 0 || len(doc.Steps) == 0 || doc.Steps[0].Name != "postgresql" || doc.Steps[0].Status != "fail" {
		t.Errorf("check --json without a server: exit %d, %+v", r.code, doc)
	}
}
