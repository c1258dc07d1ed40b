package spool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func dataDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, sub := range []string{"global", "pg_wal"} {
		if err := os.Mkdir(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "global", "pg_control"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDataDirPrefersTheWorkingDirectory(t *testing.T) {
	wd, pgdata, other := dataDir(t), dataDir(t), t.TempDir()
	for _, c := range []struct{ wd, pgdata, want string }{
		{wd, pgdata, wd},
		{other, pgdata, pgdata},
		{"", pgdata, pgdata},
		{wd, "", wd},
	} {
		got, err := DataDir(c.wd, c.pgdata)
		if err != nil || got != c.want {
			t.Errorf("DataDir(%q, %q) = %q, %v; want %q", c.wd, c.pgdata, got, err, c.want)
		}
	}
	if _, err := DataDir(other, ""); !errors.Is(err, ErrNoDataDir) {
		t.Errorf("DataDir of a plain directory: %v, want ErrNoDataDir", err)
	}
}

func TestOpenCreatesPrivateDirectoriesUnderPGWal(t *testing.T) {
	d := dataDir(t)
	dir, err := Open(d, "push")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(d, "pg_wal", "pgb", "push"); dir != want {
		t.Fatalf("Open = %q, want %q", dir, want)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	if again, err := Open(d, "push"); err != nil || again != dir {
		t.Fatalf("second Open = %q, %v", again, err)
	}
}

func TestOpenFollowsASymlinkedPGWalButNoLinkBelowIt(t *testing.T) {
	d := dataDir(t)
	elsewhere := t.TempDir()
	if err := os.Remove(filepath.Join(d, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(d, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	dir, err := Open(d, "fetch")
	if err != nil {
		t.Fatalf("pg_wal as a link (initdb --waldir) must work: %v", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "pgb", "fetch")); err != nil {
		t.Fatalf("spool not created through the pg_wal link (%s): %v", dir, err)
	}

	// A link planted at pg_wal/pgb/push must not be followed.
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(elsewhere, "pgb", "push")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(d, "push"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Open through a planted link: %v, want a refusal", err)
	}
}

func TestOpenRefusesBadNames(t *testing.T) {
	d := dataDir(t)
	for _, n := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := Open(d, n); err == nil {
			t.Errorf("Open(%q) succeeded", n)
		}
	}
}

func TestOpenWithoutPGWalFails(t *testing.T) {
	if _, err := Open(t.TempDir(), "push"); err == nil {
		t.Fatal("Open without pg_wal succeeded")
	}
}
