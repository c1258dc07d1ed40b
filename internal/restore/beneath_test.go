package restore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
)

// A link that appears inside the target while restore works (the restored files'
// owner can make one in a directory restore already gave it) must never make restore
// create a directory, or a link, outside the target.
func TestRestoreNeverCreatesDirectoriesOrLinksThroughALinkThatAppeared(t *testing.T) {
	target, outside := t.TempDir(), t.TempDir()
	r := &Restorer{Opt: Options{DataDir: target}}
	if err := os.Symlink(outside, filepath.Join(target, "base")); err != nil {
		t.Fatal(err)
	}
	m := &repo.Manifest{Summary: repo.Summary{Name: "b"}, Dirs: []repo.Dir{{Path: "base/5", Mode: 0o700}}}
	if err := r.makeDirsInside(m, nil); err == nil {
		t.Error("a directory under a planted link was made without error")
	}
	if _, err := os.Lstat(filepath.Join(outside, "5")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("restore created a directory outside the target: %v", err)
	}

	m = &repo.Manifest{Summary: repo.Summary{Name: "b"}, Links: []repo.Link{{Path: "base/evil", Target: "/etc"}}}
	if err := r.makeLinks(m, nil); err == nil {
		t.Error("a link under a planted link was made without error")
	}
	if _, err := os.Lstat(filepath.Join(outside, "evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("restore created a link outside the target: %v", err)
	}

	// The same without the planted link works, and the directory is 0700.
	if err := os.Remove(filepath.Join(target, "base")); err != nil {
		t.Fatal(err)
	}
	m = &repo.Manifest{Summary: repo.Summary{Name: "b"}, Dirs: []repo.Dir{{Path: "base", Mode: 0o700}, {Path: "base/5", Mode: 0o700}},
		Links: []repo.Link{{Path: "base/5/l", Target: "/nowhere"}}}
	if err := r.makeDirsInside(m, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.makeLinks(m, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(target, "base", "5"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("base/5: %v, %v", fi, err)
	}
	if got, err := os.Readlink(filepath.Join(target, "base", "5", "l")); err != nil || got != "/nowhere" {
		t.Errorf("link: %q, %v", got, err)
	}
}
