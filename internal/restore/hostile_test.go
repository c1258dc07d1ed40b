package restore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
)

// hostile returns a copy of m, with its files in c.Files (as a format 1 manifest is
// read), changed by edit, that restore must refuse.
func hostile(m *repo.Manifest, edit func(m *repo.Manifest)) *repo.Manifest {
	c := *m
	c.Dirs = slices.Clone(m.Dirs)
	c.Files = nil
	c.List = nil
	_ = m.EachFile(func(f *repo.File) error { c.Files = append(c.Files, *f); return nil }) // a test's file list: read back as written
	c.Links = slices.Clone(m.Links)
	c.Tablespaces = slices.Clone(m.Tablespaces)
	edit(&c)
	return &c
}

func dropDir(m *repo.Manifest, p string) {
	m.Dirs = slices.DeleteFunc(m.Dirs, func(d repo.Dir) bool { return d.Path == p })
}

// A repository is untrusted input: a manifest whose links would make restore write
// outside the target is refused before anything is written, and nothing appears
// outside the target.
func TestRestoreNeverWritesThroughALinkFromTheManifest(t *testing.T) {
	b := takeBackup(t, "none")
	outside := t.TempDir()
	for _, tc := range []struct {
		name string
		edit func(m *repo.Manifest)
		msg  string
	}{
		{"file under a link", func(m *repo.Manifest) {
			dropDir(m, "base/1")
			m.Links = append(m.Links, repo.Link{Path: "base/1", Target: outside})
		}, "base/1"},
		{"directory under a link", func(m *repo.Manifest) {
			dropDir(m, "pg_logical")
			m.Links = append(m.Links, repo.Link{Path: "pg_logical", Target: outside})
		}, "pg_logical"},
		{"link and file at one path", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "PG_VERSION", Target: filepath.Join(outside, "pgv")})
		}, "PG_VERSION"},
		{"link and directory at one path", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "pg_stat_tmp", Target: outside})
		}, "pg_stat_tmp"},
		{"link over the tablespace link", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "pg_tblspc/16400", Target: outside})
		}, "pg_tblspc/16400"},
		{"link at a file restore writes itself", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "backup_label", Target: filepath.Join(outside, "label")})
		}, "backup_label"},
		{"link under a link", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "log/deeper", Target: outside})
		}, "log/deeper"},
		{"two links at one path", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "log", Target: outside})
		}, "log"},
		{"directory under a file", func(m *repo.Manifest) {
			m.Dirs = append(m.Dirs, repo.Dir{Path: "PG_VERSION/sub", Mode: 0o700})
		}, "PG_VERSION"},
		{"link under a file", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.Link{Path: "PG_VERSION/evil", Target: outside})
		}, "PG_VERSION"},
	} {
		for _, listed := range []bool{false, true} {
			name := tc.name
			m := hostile(b.m, tc.edit)
			if listed {
				// As restore reads a format 2 manifest: its files in a list, checked one
				// by one against the directories and links.
				name += ", files listed"
				m = hostileHeader(b.m, tc.edit)
			}
			t.Run(name, func(t *testing.T) {
				checkRefused(t, b, m, outside, tc.msg)
			})
		}
	}
}

// hostileHeader returns a copy of m, whose files stay in m.List, changed by edit.
func hostileHeader(m *repo.Manifest, edit func(m *repo.Manifest)) *repo.Manifest {
	c := *m
	c.Dirs = slices.Clone(m.Dirs)
	c.Links = slices.Clone(m.Links)
	c.Tablespaces = slices.Clone(m.Tablespaces)
	edit(&c)
	return &c
}

// checkRefused restores m and checks that restore refused it, with an error naming
// msg, having written nothing, outside the target or in it.
func checkRefused(t *testing.T, b backedUp, m *repo.Manifest, outside, msg string) {
	t.Helper()
	base := t.TempDir()
	target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
	before, out := snapshot(t, base), snapshot(t, outside)
	err := newRestorer(b.st, target, map[string]string{b.spcDir: newSpc},
		&Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}}).Run(context.Background(), m)
	if err == nil || !strings.Contains(err.Error(), msg) {
		t.Fatalf("Run = %v, want a refusal naming %s", err, msg)
	}
	if after := snapshot(t, outside); after != out {
		t.Fatalf("restore wrote outside the target:\n%s", after)
	}
	if after := snapshot(t, base); after != before {
		t.Errorf("a refused restore wrote into the target:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// Links in a legitimate backup are still restored, after the files: one at the top and
// one inside a tablespace.
func TestRestoreRecreatesLinksLast(t *testing.T) {
	b := takeBackup(t, "none")
	m := hostile(b.m, func(m *repo.Manifest) {
		m.Links = append(m.Links, repo.Link{Path: "pg_tblspc/16400/PG_15_202209061/elsewhere", Target: "/nonexistent/x"})
	})
	base := t.TempDir()
	target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
	if err := newRestorer(b.st, target, map[string]string{b.spcDir: newSpc}, nil).Run(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{filepath.Join(target, "log"): "/nonexistent/pgb-log",
		filepath.Join(newSpc, "PG_15_202209061", "elsewhere"): "/nonexistent/x"} {
		if got, err := os.Readlink(p); err != nil || got != want {
			t.Errorf("link %s -> %q, %v; want %s", p, got, err, want)
		}
	}
}

// A tablespace location from the manifest that already exists belongs to someone:
// restore never changes its owner or mode, and refuses one the restored files' owner
// does not own.
func TestRestoreLeavesAnExistingTablespaceDirectoryAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	b := takeBackup(t, "none")
	base := t.TempDir()
	target, spc := filepath.Join(base, "pgdata"), filepath.Join(base, "someone-elses")
	if err := os.Mkdir(spc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(spc, 4242, 4243); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, base)
	r := newRestorer(b.st, target, map[string]string{b.spcDir: spc}, nil)
	r.Opt.Owner = &Owner{UID: 54321, GID: 54322}
	err := r.Run(context.Background(), b.m)
	if err == nil || !strings.Contains(err.Error(), spc) {
		t.Fatalf("Run = %v, want a refusal naming %s", err, spc)
	}
	fi, err := os.Stat(spc)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4243 || fi.Mode().Perm() != 0o755 {
		t.Errorf("the existing tablespace directory changed: %d:%d %o", st.Uid, st.Gid, fi.Mode().Perm())
	}
	if after := snapshot(t, base); after != before {
		t.Errorf("a refused restore wrote:\n%s", after)
	}

	// Owned by the files' owner: used as it is, its mode untouched.
	if err := os.Chown(spc, 54321, 54322); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background(), b.m); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(spc); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode of the existing tablespace directory: %v, %v; want 755 untouched", fi.Mode(), err)
	}
}

// relist returns a copy of m whose files are edit's result, in a new list: each
// part's entries in the order edit leaves them, the parts' counts made to match.
func relist(t *testing.T, m *repo.Manifest, edit func([]repo.File) []repo.File) *repo.Manifest {
	t.Helper()
	files := edit(allFiles(t, m))
	l, err := repo.NewFileList(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	c := *m
	c.List = l
	c.Parts = slices.Clone(m.Parts)
	for i := range c.Parts {
		pt := &c.Parts[i]
		w, err := l.Writer(pt.N)
		if err != nil {
			t.Fatal(err)
		}
		pt.Files = 0
		for _, f := range files {
			if f.Part == pt.N {
				if err := w.Add(&f); err != nil {
					t.Fatal(err)
				}
				pt.Files++
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return &c
}

// A format 2 manifest's entries are matched one by one with their part's tar stream:
// entries out of the part's order, a file listed twice, a file in a directory the
// manifest does not list, are refused, and nothing is written outside the target.
// (The repository's reader refuses most of these first; restore does not rely on it.)
func TestRestoreMatchesListedFilesWithTheirPart(t *testing.T) {
	b := takeBackup(t, "none")
	outside := t.TempDir()
	first := func(files []repo.File, part int) int {
		for i, f := range files {
			if f.Part == part {
				return i
			}
		}
		t.Fatalf("no file in part %d", part)
		return -1
	}
	// The part with several files.
	busy := 0
	for _, pt := range b.m.Parts {
		if pt.Files > 1 {
			busy = pt.N
		}
	}
	if busy == 0 {
		t.Fatal("no part holds two files")
	}
	for _, tc := range []struct {
		name   string
		edit   func([]repo.File) []repo.File
		msg    string
		midway bool // found only when the part is read: files before it are written
	}{
		{"two entries swapped", func(fs []repo.File) []repo.File {
			i := first(fs, busy)
			fs[i], fs[i+1] = fs[i+1], fs[i]
			return fs
		}, "where the manifest lists", true},
		{"the last entry of a part missing", func(fs []repo.File) []repo.File {
			last := first(fs, busy)
			for last+1 < len(fs) && fs[last+1].Part == busy {
				last++
			}
			return slices.Delete(fs, last, last+1)
		}, "which the manifest does not list there", true},
		{"an entry too many", func(fs []repo.File) []repo.File {
			return append(fs, repo.File{Path: "base/5/99999", Size: 1, CRC: "00000000", Part: busy})
		}, "ends before base/5/99999", true},
		{"file in a directory not listed", func(fs []repo.File) []repo.File {
			fs[0].Path = "pg_nowhere/" + path.Base(fs[0].Path)
			return fs
		}, "pg_nowhere", false},
		{"file under a link", func(fs []repo.File) []repo.File {
			fs[0].Path = "log/" + path.Base(fs[0].Path)
			return fs
		}, "log", false},
		{"file at a directory's path", func(fs []repo.File) []repo.File {
			fs[0].Path = "base/5"
			return fs
		}, "base/5", false},
		{"path outside", func(fs []repo.File) []repo.File {
			fs[0].Path = "../../escaped"
			return fs
		}, "escaped", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := relist(t, b.m, tc.edit)
			if !tc.midway {
				checkRefused(t, b, m, outside, tc.msg)
				return
			}
			target := filepath.Join(t.TempDir(), "pgdata")
			err := newRestorer(b.st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")}, nil).Run(context.Background(), m)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Run = %v, want ErrDamaged naming %q", err, tc.msg)
			}
			if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed restore left global/pg_control: %v", err)
			}
			if !hasMarker(target) {
				t.Error("a failed restore left its directory unmarked")
			}
		})
	}
	// Listed twice: found when the second is created, before anything is written
	// through it; and never silently.
	m := relist(t, b.m, func(fs []repo.File) []repo.File {
		i := first(fs, busy)
		fs[i+1].Path = fs[i].Path
		return fs
	})
	target := filepath.Join(t.TempDir(), "pgdata")
	err := newRestorer(b.st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")}, nil).Run(context.Background(), m)
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("restore of a manifest listing a file twice = %v, want ErrDamaged", err)
	}
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed restore left global/pg_control: %v", err)
	}
	// The control: the same list, unchanged, restores.
	target = filepath.Join(t.TempDir(), "pgdata")
	if err := newRestorer(b.st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")}, nil).Run(context.Background(),
		relist(t, b.m, func(fs []repo.File) []repo.File { return fs })); err != nil {
		t.Errorf("restore of the unchanged list: %v", err)
	}
}
