package restore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
)

// A drill's copy writes nowhere outside its data directory: a link to a directory
// (pg_stat_tmp on another disk) or to nothing on this host becomes an empty directory
// in its place; a link to a configuration file, which the server only reads, stays.
func TestRestoreForADrillMakesLinksToDirectoriesEmptyDirectories(t *testing.T) {
	target, outside := t.TempDir(), t.TempDir()
	conf := filepath.Join(outside, "postgresql.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Restorer{Opt: Options{DataDir: target, ContainLinks: true}}
	m := &repo.Manifest{Summary: repo.Summary{Name: "b"}, Links: []repo.Link{
		{Path: "pg_stat_tmp", Target: outside}, {Path: "log", Target: "/nowhere/log"}, {Path: "rel", Target: "../x"},
		{Path: "postgresql.conf", Target: conf}}}
	if err := r.makeLinks(m, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pg_stat_tmp", "log", "rel"} {
		if fi, err := os.Lstat(filepath.Join(target, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, %v; want an empty directory", p, fi, err)
		}
	}
	if got, err := os.Readlink(filepath.Join(target, "postgresql.conf")); err != nil || got != conf {
		t.Errorf("postgresql.conf: %q, %v; want the link kept", got, err)
	}
	if len(r.Contained) != 3 {
		t.Errorf("Contained = %v, want the three links made directories", r.Contained)
	}
}
