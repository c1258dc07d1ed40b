package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// result is what one pgb run did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// pgb runs the pgb binary in dir (if not "") with extra environment variables.
func pgb(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(pgtest.BuildPGB(t), args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run pgb %v: %v", args, err)
	}
	return r
}

// cleanEnv is the test's environment without PGB_* and PG* settings, so that a
// developer's own configuration cannot leak into a test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PGB_") || strings.HasPrefix(kv, "PG") {
			continue
		}
		out = append(out, kv)
	}
	// Cloud SDKs must never reach for instance metadata from a test.
	return append(out, "PGB_CONFIG=", "AWS_EC2_METADATA_DISABLED=true", "GCE_METADATA_HOST=127.0.0.1:1")
}

func mustPGB(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	r := pgb(t, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("pgb %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// repoFiles lists the regular files below a filesystem repository, relative to it.
func repoFiles(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(repo, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
