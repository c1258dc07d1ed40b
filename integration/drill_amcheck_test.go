package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// corruptedIndexCluster archives to repo a cluster whose index broken_pkey has a
// damaged metapage (written while the server was stopped, so no WAL repairs it), and
// a backup holding it; more rows then go to another table.
func corruptedIndexCluster(t *testing.T, repo string) *pgtest.Cluster {
	t.Helper()
	c := archivingCluster(t, repo)
	c.Exec(t, "CREATE TABLE broken (id int PRIMARY KEY)")
	c.Exec(t, "INSERT INTO broken SELECT g FROM generate_series(1, 1000) g")
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	file := filepath.Join(c.DataDir(), c.QueryString(t, "SELECT pg_relation_filepath('broken_pkey')"))
	c.Exec(t, "CHECKPOINT")
	c.Stop(t)
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// BTMetaPageData.btm_magic, just after the 24-byte page header.
	if _, err := f.WriteAt(make([]byte, 4), 24); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.Start(t)
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	commitAt(t, c)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	return c
}

// binWithout is a directory of copies of the PostgreSQL 15 server binaries but the
// ones named: a server installed without some of its client tools. (Copies, not
// links: pgb looks for the tools next to the postgres a link points to.)
func binWithout(t *testing.T, c *pgtest.Cluster, missing ...string) string {
	t.Helper()
	src := filepath.Dir(c.Bin("postgres"))
	dir := filepath.Join(pgtest.TempDir(t), "pgbin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.Contains(strings.Join(missing, " "), e.Name()) {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// A nightly drill of a backup holding a corrupted index fails and names it: with
// pg_amcheck, and on a host without pg_amcheck through the amcheck extension on a
// sample of the indexes (every index here: fewer than the sample).
func TestDrillOfABackupWithACorruptedIndexFailsAndNamesIt(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := corruptedIndexCluster(t, repo)
	for _, tc := range []struct {
		name, bin, check string
	}{
		{"pg_amcheck", "", "pg_amcheck on 2 databases"},
		{"amcheck extension", binWithout(t, c, "pg_amcheck"), "amcheck bt_index_check in database postgres"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scratch := filepath.Join(pgtest.TempDir(t), "scratch")
			args := []string{"drill", "--repo", repo, "--scratch", scratch, "--json"}
			if tc.bin != "" {
				args = append(args, "--pg-bin", tc.bin)
			}
			r := pgb(t, "", nil, args...)
			var rep drillReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 3 || rep.OK {
				t.Fatalf("a drill of a corrupted index: want exit 3: %v\n%s", err, r)
			}
			found := false
			for _, ch := range rep.Checks {
				if strings.HasPrefix(ch.Name, tc.check) {
					found = true
					if ch.Passed || !strings.Contains(ch.Detail, "broken_pkey") {
						t.Errorf("check %q: passed %v, detail %q; want a failure naming broken_pkey", ch.Name, ch.Passed, ch.Detail)
					}
				}
			}
			if !found {
				t.Fatalf("no check %q: %s", tc.check, r)
			}
			assertNoDrillLeft(t, scratch)
		})
	}
}

// Without pg_amcheck, a drill checks the indexes with the amcheck extension and says
// so; paused at a target (read-only), it checks the databases where amcheck was
// installed, and says that the others were not checked.
func TestDrillWithoutPgAmcheckChecksIndexesWithTheExtension(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c, _ := writingCluster(t, repo)
	c.Exec(t, "CREATE EXTENSION amcheck")
	mustPGB(t, "", c.Env(), "restore-point", "--repo", repo, "checked")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	bin := binWithout(t, c, "pg_amcheck")
	for _, tc := range []struct {
		name   string
		args   []string
		check  string
		status string
	}{
		{"promoted", nil, "amcheck bt_index_check on ", "in 2 databases"},
		{"paused", []string{"--target", "checked"}, "amcheck bt_index_check on ", "in 1 of 2 databases, those with amcheck installed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scratch := filepath.Join(pgtest.TempDir(t), "scratch")
			r := pgb(t, "", nil, append([]string{"drill", "--repo", repo, "--scratch", scratch, "--json", "--pg-bin", bin}, tc.args...)...)
			var rep drillReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.OK {
				t.Fatalf("pgb drill: %v\n%s", err, r)
			}
			found := false
			for _, ch := range rep.Checks {
				if strings.HasPrefix(ch.Name, tc.check) && strings.HasSuffix(ch.Name, tc.status) && ch.Passed {
					found = true
				}
			}
			if !found || !strings.Contains(strings.Join(rep.Warnings, "\n"), "pg_amcheck not found") {
				t.Fatalf("want a passed check %q…%q and a warning that pg_amcheck was not found: %s", tc.check, tc.status, r)
			}
			assertNoDrillLeft(t, scratch)
		})
	}
}
