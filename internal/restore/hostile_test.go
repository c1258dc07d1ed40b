package restore

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
)

// hostile returns a copy of m, changed by edit, that restore must refuse.
func hostile(m *repo.Manifest, edit func(m *repo.Manifest)) *repo.Manifest {
	c := *m
	c.Dirs = slices.Clone(m.Dirs)
	c.Files = slices.Clone(m.Files)
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := hostile(b.m, tc.edit)
			base := t.TempDir()
			target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
			before, out := snapshot(t, base), snapshot(t, outside)
			err := newRestorer(b.st, target, map[string]string{b.spcDir: newSpc},
				&Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}}).Run(context.Background(), m)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Run = %v, want a refusal naming %s", err, tc.msg)
			}
			if after := snapshot(t, outside); after != out {
				t.Fatalf("restore wrote outside the target:\n%s", after)
			}
			if after := snapshot(t, base); after != before {
				t.Errorf("a refused restore wrote into the target:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
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
