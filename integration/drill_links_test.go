package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// A data directory link other than pg_wal and the tablespaces' (here pg_stat_tmp on
// another disk) must not lead the copy into the source's directory:
// pg_stat_statements truncates its query text file there at the copy's start, and
// the source's pg_stat_statements would lose its texts. The copy gets an empty
// directory there, and the report says so.
func TestDrillOfAClusterWithPgStatTmpLinkedElsewhereLeavesTheSourcesFilesAlone(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	bin := pgtest.BuildPGB(t)
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: bin + " wal-push --repo " + repo + " %p",
		Conf: []string{"shared_preload_libraries = 'pg_stat_statements'"}})
	outside := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "stat_tmp"))
	if err := os.RemoveAll(filepath.Join(c.DataDir(), "pg_stat_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(c.DataDir(), "pg_stat_tmp")); err != nil {
		t.Fatal(err)
	}
	c.Start(t)
	c.Exec(t, "CREATE EXTENSION pg_stat_statements")
	c.Exec(t, "CREATE TABLE rev_drill_marker (v int)")
	c.Exec(t, "SELECT count(*) FROM rev_drill_marker")
	texts := filepath.Join(outside, "pgss_query_texts.stat")
	before, err := os.ReadFile(texts)
	if err != nil || !strings.Contains(string(before), "rev_drill_marker") {
		t.Fatalf("the source's query texts: %v %q", err, before)
	}
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	r := mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch)
	after, _ := os.ReadFile(texts)
	if !strings.Contains(string(after), "rev_drill_marker") {
		t.Fatalf("the drill rewrote the source's %s (%d bytes before, %d after):\n%s", texts, len(before), len(after), r.stdout)
	}
	if !strings.Contains(r.stdout, "link pg_stat_tmp -> "+outside+" is an empty directory in the copy") {
		t.Errorf("the report does not say pg_stat_tmp was a link made a directory:\n%s", r.stdout)
	}
}
