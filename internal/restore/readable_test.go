package restore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The server's OS user must be able to read the config file restore_command names:
// search permission on every directory above it, read permission on the file, judged
// from the mode bits against the owner's uid and primary gid.
func TestCannotReadConfigDecision(t *testing.T) {
	postgres := Owner{UID: 999, GID: 998}
	for _, c := range []struct {
		name       string
		mode       os.FileMode
		uid, gid   int
		bit        os.FileMode
		wantDenied bool
	}{
		{"root's 0600 file", 0o600, 0, 0, 4, true},
		{"root's 0644 file", 0o644, 0, 0, 4, false},
		{"root's 0640 file, group postgres", 0o640, 0, 998, 4, false},
		{"root's 0640 file, group root", 0o640, 0, 0, 4, true},
		{"postgres's 0600 file", 0o600, 999, 998, 4, false},
		{"postgres's 0060 file: the owner bits decide", 0o060, 999, 998, 4, true},
		{"root's 0700 directory", 0o700, 0, 0, 1, true},
		{"root's 0755 directory", 0o755, 0, 0, 1, false},
		{"root's 0750 directory, group postgres", 0o750, 0, 998, 1, false},
		{"root's 0704 directory: read but no search", 0o704, 0, 0, 1, true},
	} {
		if got := denied(c.mode, c.uid, c.gid, postgres, c.bit); got != c.wantDenied {
			t.Errorf("%s: denied = %v, want %v", c.name, got, c.wantDenied)
		}
	}
	if denied(0o000, 5, 5, Owner{UID: 0, GID: 0}, 4) {
		t.Error("root is never denied")
	}
}

func TestCannotReadConfigWalksTheDirectories(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	postgres := Owner{UID: 999, GID: 998}
	dir := filepath.Join(t.TempDir(), "pgb")
	file := filepath.Join(dir, "pgb.yaml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("repo: /r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} { // t.TempDir's own directories
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		do   func() error
		want string
	}{
		{func() error { return nil }, ""},
		{func() error { return os.Chmod(file, 0o600) }, file},
		{func() error { return os.Chown(file, 999, 0) }, ""},
		{func() error { return os.Chmod(dir, 0o700) }, dir},
		{func() error { return errors.Join(os.Chown(dir, 0, 998), os.Chmod(dir, 0o710)) }, ""},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		got, err := CannotRead(file, postgres)
		if err != nil || got != s.want {
			t.Errorf("step %d: CannotRead = %q, %v; want %q", i, got, err, s.want)
		}
	}
}
