package fs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t) })
}

func newStore(t *testing.T) *fs.Store {
	t.Helper()
	s, err := fs.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// root is the store's directory, from its String.
func root(t *testing.T, s *fs.Store) string {
	t.Helper()
	r, ok := strings.CutPrefix(s.String(), "file://")
	if !ok {
		t.Fatalf("String() = %q, want a file:// URL", s.String())
	}
	return r
}

// entries lists every path under dir, relative to it.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mode(t *testing.T, p string) iofs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestNew(t *testing.T) {
	if _, err := fs.New("relative/repo"); err == nil {
		t.Errorf("New with a relative root: no error")
	}
	dir := t.TempDir()
	r := filepath.Join(dir, "x", "y", "repo")
	s, err := fs.New(r + "/")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "file://"+r; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if m := mode(t, r); m != 0o700 {
		t.Errorf("root mode = %v, want 0700", m)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.New(file); err == nil {
		t.Errorf("New on a regular file: no error")
	}
}

func TestModes(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "d1/d2/obj", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "d1/once", strings.NewReader("y"), storage.PutOptions{IfAbsent: true, Size: 1}); err != nil {
		t.Fatal(err)
	}
	r := root(t, s)
	for _, p := range []string{"d1", "d1/d2"} {
		if m := mode(t, filepath.Join(r, p)); m != 0o700 {
			t.Errorf("%s: mode %v, want 0700", p, m)
		}
	}
	for _, p := range []string{"d1/d2/obj", "d1/once"} {
		if m := mode(t, filepath.Join(r, p)); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, m)
		}
	}
	if got, want := entries(t, r), []string{"d1", "d1/d2", "d1/d2/obj", "d1/once"}; !equal(got, want) {
		t.Errorf("files = %q, want %q (no temp files)", got, want)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("reader broke") }

func TestFailedPutLeavesNothing(t *testing.T) {
	s := newStore(t)
	r := root(t, s)
	ctx := t.Context()
	if err := s.Put(ctx, "keep/old", strings.NewReader("old"), storage.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	before := entries(t, r)
	for _, key := range []string{"keep/old", "keep/new", "new/dirs/obj"} {
		for _, opts := range []storage.PutOptions{{Size: -1}, {IfAbsent: true, Size: -1}} {
			r := io.MultiReader(strings.NewReader("partial data"), errReader{})
			if err := s.Put(ctx, key, r, opts); err == nil {
				t.Fatalf("Put(%q) with a failing reader: no error", key)
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := s.Put(cctx, key, strings.NewReader("data"), opts); !errors.Is(err, context.Canceled) {
				t.Fatalf("Put(%q) with cancelled ctx: error = %v", key, err)
			}
		}
	}
	// No temp files, and no directories created for the failed puts.
	if got := entries(t, r); !equal(got, before) {
		t.Errorf("after failed puts files = %q, want %q", got, before)
	}
}

func TestIfAbsentExistingLeavesNoTemp(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "k", strings.NewReader("a"), storage.PutOptions{IfAbsent: true, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", strings.NewReader("b"), storage.PutOptions{IfAbsent: true, Size: 1}); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("error = %v, want ErrExist", err)
	}
	if got := entries(t, root(t, s)); !equal(got, []string{"k"}) {
		t.Errorf("files = %q, want just k", got)
	}
}

func TestDeleteRemovesEmptyDirs(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, k := range []string{"a/b/c/d", "a/x"} {
		if err := s.Put(ctx, k, strings.NewReader(k), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	r := root(t, s)
	if err := s.Delete(ctx, "a/b/c/d"); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, r); !equal(got, []string{"a", "a/x"}) {
		t.Errorf("after deleting a/b/c/d: files = %q, want a, a/x", got)
	}
	if err := s.Delete(ctx, "a/x"); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, r); len(got) != 0 {
		t.Errorf("after deleting everything: files = %q, want none", got)
	}
	if _, err := os.Stat(r); err != nil {
		t.Errorf("root removed: %v", err)
	}
}

func TestDirectoriesAreNotObjects(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "dir/obj", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "dir", 0, -1); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Get(dir) error = %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx, "dir"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Delete(dir) error = %v, want ErrNotExist", err)
	}
	err := s.Put(ctx, "dir", strings.NewReader("y"), storage.PutOptions{IfAbsent: true, Size: 1})
	if err == nil || errors.Is(err, storage.ErrExist) {
		t.Errorf("IfAbsent Put(dir) error = %v, want a conflict that is not ErrExist", err)
	}
	if err := s.Put(ctx, "dir/obj/below", strings.NewReader("y"), storage.PutOptions{Size: 1}); err == nil {
		t.Errorf("Put below an object: no error")
	}
	if got := entries(t, root(t, s)); !equal(got, []string{"dir", "dir/obj"}) {
		t.Errorf("files = %q, want dir, dir/obj", got)
	}
}

func TestTempNamesReserved(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "a/.tmp-x", strings.NewReader("x"), storage.PutOptions{Size: 1}); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("Put(a/.tmp-x) error = %v, want ErrInvalidKey", err)
	}
	// A temp file left by a crashed writer is not listed; a directory with such a
	// name is an ordinary directory.
	r := root(t, s)
	if err := os.MkdirAll(filepath.Join(r, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r, "a", ".tmp-123"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, ".tmp-dir/obj", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !equal(keys, []string{".tmp-dir/obj"}) {
		t.Errorf("List = %q, want only .tmp-dir/obj", keys)
	}
}

func TestShortFileIsAnError(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	data := bytes.Repeat([]byte("z"), 1000)
	if err := s.Put(ctx, "obj", bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	for _, length := range []int64{-1, 500} {
		rc, err := s.Get(ctx, "obj", 100, length)
		if err != nil {
			t.Fatal(err)
		}
		// Shrink the file underneath the open reader.
		if err := os.Truncate(filepath.Join(root(t, s), "obj"), 300); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 200 {
			t.Errorf("Get(obj, 100, %d) of a truncated file: %d bytes, error %v; want 200 bytes and io.ErrUnexpectedEOF", length, len(got), err)
		}
		if err := os.WriteFile(filepath.Join(root(t, s), "obj"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permissions are not enforced")
	}
	s := newStore(t)
	ctx := t.Context()
	r := root(t, s)
	if err := s.Put(ctx, "ro/old", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(r, "ro"), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chmod(filepath.Join(r, "ro"), 0o700); err != nil { // else TempDir cannot be removed
			t.Error(err)
		}
	})
	for _, opts := range []storage.PutOptions{{Size: 1}, {IfAbsent: true, Size: 1}} {
		if err := s.Put(ctx, "ro/new", strings.NewReader("y"), opts); err == nil || errors.Is(err, storage.ErrExist) {
			t.Errorf("Put(%+v) into a read-only directory: error = %v, want a permission error", opts, err)
		}
		if err := s.Put(ctx, "ro/old", strings.NewReader("y"), opts); err == nil {
			t.Errorf("Put(%+v) over an object in a read-only directory: no error", opts)
		}
	}
	if err := s.Delete(ctx, "ro/old"); err == nil {
		t.Errorf("Delete in a read-only directory: no error")
	}
	b, err := os.ReadFile(filepath.Join(r, "ro", "old"))
	if err != nil || string(b) != "x" {
		t.Errorf("ro/old = %q, %v; want x", b, err)
	}
}

// As root in a repository that belongs to another user, everything pgb creates goes to
// that user: a backup run as root must not lock archive_command (as postgres) out.
func TestRootGivesNewObjectsToTheRepositoryOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := filepath.Join(t.TempDir(), "repo")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), "a/b/c", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65534 {
			t.Errorf("%s belongs to uid %d, want the repository owner 65534", p, uid)
		}
	}
}
