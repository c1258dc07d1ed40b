package pgtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pgb-project/pgb/internal/testenv"
)

// BuildTags are the build tags of every pgb build (the Makefile's TAGS): they leave out
// urfave/cli's documentation generators and cloud.google.com/go/storage's gRPC
// direct-path modules, which pgb never runs and which cost start-up time per call.
const BuildTags = "urfave_cli_no_docs,disable_grpc_modules,grpcnotrace"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BuildPGB returns the absolute path of a pgb binary for the test to run (the test
// is skipped under `go test -short`).
// If $PGB_BIN is set, that binary is used as is. Otherwise the module's main
// package is built with `go build` once per test binary (later calls reuse
// the result, or the same error). The binary and its directory are mode 0755
// so the postgres user can execute it (e.g. from archive_command).
//
// The build output lives in a per-user, per-module directory under
// os.TempDir() that is reused (atomically replaced) across runs rather than
// removed, so concurrent test binaries never delete each other's binary.
func BuildPGB(t testing.TB) string {
	t.Helper()
	testenv.SkipIfShort(t, "builds the pgb binary")
	if p := os.Getenv("PGB_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if !isExecutable(abs) {
			t.Fatalf("pgtest: $PGB_BIN=%q is not an executable file", p)
		}
		return abs
	}
	buildOnce.Do(func() { buildPath, buildErr = buildPGB() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func buildPGB() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		// go test puts GOROOT/bin first in PATH, so this is only for other runners.
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if os.Getenv("GOROOT") == "" || !isExecutable(goTool) {
			return "", fmt.Errorf("pgtest: cannot find the go tool to build pgb: %w", err)
		}
	}
	dir, err := buildDir(root)
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, "pgb")
	tmp := fmt.Sprintf("%s.tmp%d", final, os.Getpid())
	// -tags pgbtest: the test hooks some tests arm (cmd/testhook_pgbtest.go); BuildTags:
	// the binary under test is linked like the one that ships.
	cmd := exec.Command(goTool, "build", "-tags", "pgbtest,"+BuildTags, "-o", tmp, ".")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp) // best effort: the build error is what matters
		return "", fmt.Errorf("pgtest: go build pgb in %s: %w\n%s", root, err, out)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.Remove(tmp) // best effort: the error above is what matters
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp) // best effort: the error above is what matters
		return "", err
	}
	return final, nil
}

// buildDir returns os.TempDir()/pgtest-pgb-<euid>/<hash of root>, creating
// it 0755. The shared parent is only trusted if it is a real directory owned
// by us and not writable by others; otherwise a fresh private temp dir is used.
func buildDir(root string) (string, error) {
	sum := sha256.Sum256([]byte(root))
	parent := filepath.Join(os.TempDir(), "pgtest-pgb-"+strconv.Itoa(os.Geteuid()))
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if trustedDir(parent) {
		dir := filepath.Join(parent, hex.EncodeToString(sum[:6]))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", err
		}
		if trustedDir(dir) {
			return dir, nil
		}
	}
	dir, err := os.MkdirTemp(os.TempDir(), "pgtest-pgb-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

func trustedDir(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Geteuid() {
		return false
	}
	if fi.Mode().Perm() != 0o755 {
		return os.Chmod(dir, 0o755) == nil
	}
	return true
}

// moduleRoot finds the directory of the main module's go.mod: via `go env
// GOMOD` from the working directory (a package directory under go test),
// falling back to walking up from this source file.
func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		gomod := string(bytes.TrimSpace(out))
		if gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	_, file, _, ok := runtime.Caller(0)
	if ok && filepath.IsAbs(file) {
		for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
			if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module ") {
				return dir, nil
			}
			if parent := filepath.Dir(dir); parent == dir {
				break
			}
		}
	}
	return "", errors.New("pgtest: cannot locate the pgb module root (go.mod); set $PGB_BIN")
}
