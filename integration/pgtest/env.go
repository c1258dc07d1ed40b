// Package pgtest is test support for integration tests that need a real
// PostgreSQL server: it creates throw-away clusters with initdb, starts and
// stops them with pg_ctl, runs SQL through pgx, drives and observes WAL
// archiving, and builds the pgb binary under test.
//
// Running as root: PostgreSQL refuses to run as root, so when the test
// process runs as root every server-side process (initdb, pg_ctl, pgbench,
// and anything started with RunAsPG or Cluster.Command) runs as the
// "postgres" OS user, and every directory the server or those commands must
// write is owned by that user. As a non-root user everything runs as the
// current user. Directories given to the server must be reachable by that
// user: t.TempDir() is not (it is 0700 and owned by root), use TempDir.
//
// None of the types here are safe for concurrent use by several goroutines.
package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pgb-project/pgb/internal/testenv"
)

// DefaultPGBin is the PostgreSQL binary directory used when $PGBIN is unset.
const DefaultPGBin = "/usr/lib/postgresql/15/bin"

// PGUser is the OS user that runs PostgreSQL processes when tests run as root.
const PGUser = "postgres"

// PGBin returns the directory holding the PostgreSQL server binaries: $PGBIN
// if set, else DefaultPGBin if it exists, else the directory of initdb found
// on $PATH. It checks that initdb and pg_ctl exist there.
func PGBin() (string, error) {
	check := func(dir string) error {
		for _, name := range []string{"initdb", "pg_ctl"} {
			p := filepath.Join(dir, name)
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
				return fmt.Errorf("%s is not an executable file", p)
			}
		}
		return nil
	}
	if dir := os.Getenv("PGBIN"); dir != "" {
		if err := check(dir); err != nil {
			return "", fmt.Errorf("pgtest: $PGBIN=%q: %w", dir, err)
		}
		return filepath.Abs(dir)
	}
	if check(DefaultPGBin) == nil {
		return DefaultPGBin, nil
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return "", fmt.Errorf("pgtest: PostgreSQL not found: $PGBIN unset, %s missing, and no initdb on $PATH", DefaultPGBin)
	}
	initdb, err = filepath.Abs(initdb)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(initdb)
	if err := check(dir); err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return dir, nil
}

// Require returns PGBin(). Under `go test -short` (make unit) the test is skipped. If PostgreSQL is not usable (binaries missing, or
// running as root without a "postgres" OS user) the test is skipped, except
// when $CI is non-empty: there a skipped integration test would hide a
// broken setup, so the test fails instead.
func Require(t testing.TB) string {
	t.Helper()
	testenv.SkipIfShort(t, "starts PostgreSQL")
	bin, err := PGBin()
	if err == nil {
		_, err = credential()
	}
	if err != nil {
		testenv.SkipOrFail(t, "pgtest: PostgreSQL unavailable: %v", err)
	}
	return bin
}

type pgCred struct {
	cred *syscall.Credential // nil when not root
	uid  int
	gid  int
	home string
	name string
}

var (
	credOnce sync.Once
	credVal  pgCred
	credErr  error
)

// credential returns who server-side processes run as.
func credential() (pgCred, error) {
	credOnce.Do(func() {
		if os.Geteuid() != 0 {
			credVal = pgCred{uid: os.Geteuid(), gid: os.Getegid()}
			return
		}
		u, err := user.Lookup(PGUser)
		if err != nil {
			credErr = fmt.Errorf("pgtest: running as root but cannot look up OS user %q: %w", PGUser, err)
			return
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			credErr = fmt.Errorf("pgtest: user %q: %w", PGUser, err)
			return
		}
		credVal = pgCred{
			// Groups is empty: drop root's supplementary groups.
			cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
			uid:  int(uid),
			gid:  int(gid),
			home: u.HomeDir,
			name: u.Username,
		}
	})
	return credVal, credErr
}

func mustCred(t testing.TB) pgCred {
	t.Helper()
	c, err := credential()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runsAsOther reports whether server-side processes run as another user.
func (c pgCred) runsAsOther() bool { return c.cred != nil }

// setEnv returns env with each "KEY=value" in kv replacing any existing
// entry for KEY (or appended).
func setEnv(env []string, kv ...string) []string {
	out := make([]string, 0, len(env)+len(kv))
	replace := make(map[string]bool, len(kv))
	for _, e := range kv {
		k, _, _ := strings.Cut(e, "=")
		replace[k] = true
	}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if !replace[k] {
			out = append(out, e)
		}
	}
	return append(out, kv...)
}

// newCmd builds a command that runs as the PostgreSQL user (when root).
// A bare name that exists in the PostgreSQL bin directory is resolved there.
func newCmd(cred pgCred, name string, args ...string) *exec.Cmd {
	if !strings.ContainsRune(name, os.PathSeparator) {
		if bin, err := PGBin(); err == nil {
			if p := filepath.Join(bin, name); isExecutable(p) {
				name = p
			}
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	if cred.runsAsOther() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred.cred}
		kv := []string{"USER=" + cred.name, "LOGNAME=" + cred.name}
		if cred.home != "" {
			kv = append(kv, "HOME="+cred.home)
		}
		cmd.Env = setEnv(cmd.Env, kv...)
	}
	return cmd
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// RunAsPG returns a command that runs as the "postgres" OS user when the
// test runs as root (as the current user otherwise). Its environment is the
// test's, with HOME/USER/LOGNAME of the postgres user when switching. A bare
// name found in PGBin() (pgbench, psql, pg_basebackup, ...) is resolved
// there, otherwise through $PATH. The working directory is inherited: make
// sure the postgres user can access it, or set cmd.Dir.
func RunAsPG(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	return newCmd(mustCred(t), name, args...)
}

// ChownToPG recursively changes ownership of path to the postgres user when
// running as root (symbolic links themselves, not their targets). It is a
// no-op for non-root users.
func ChownToPG(t testing.TB, path string) {
	t.Helper()
	if err := chownToPG(path); err != nil {
		t.Fatal(err)
	}
}

func chownToPG(path string) error {
	cred, err := credential()
	if err != nil {
		return err
	}
	if !cred.runsAsOther() {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, cred.uid, cred.gid)
	})
}

// MkdirPG creates directory path (and missing parents) and makes path
// itself mode 0700 and owned by the postgres user when root. It returns path.
func MkdirPG(t testing.TB, path string) string {
	t.Helper()
	cred := mustCred(t)
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if cred.runsAsOther() {
		if err := os.Chown(path, cred.uid, cred.gid); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TempDir creates a fresh directory under os.TempDir() with mode 0755, owned
// by the postgres user when root, so that both the test and the server
// processes can use it. It is removed (with everything in it) when the test
// ends. Use it instead of t.TempDir() for anything the server must reach.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := makeTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: removing %s: %v", dir, err)
		}
	})
	return dir
}

func makeTempDir() (string, error) {
	cred, err := credential()
	if err != nil {
		return "", err
	}
	// Keep the path short: unix socket paths are limited to ~107 bytes.
	dir, err := os.MkdirTemp(os.TempDir(), "pgtest-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir) // best-effort cleanup; the error below is what matters
		return "", err
	}
	if cred.runsAsOther() {
		if err := os.Chown(dir, cred.uid, cred.gid); err != nil {
			_ = os.RemoveAll(dir) // best-effort cleanup; the error below is what matters
			return "", err
		}
	}
	return dir, nil
}

// RequireParallel is Require for a top-level test that shares nothing with other tests
// (its own clusters, repositories, ports and scratch directories): it runs in parallel
// with the others that say so, which keeps the integration package within CI's time.
// Tests that look at processes or servers beyond their own stay serial (Require).
func RequireParallel(t *testing.T) string {
	t.Helper()
	bin := Require(t)
	t.Parallel()
	return bin
}
