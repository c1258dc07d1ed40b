package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// Tables that are not plain: an inheritance parent dropped with its children, an
// unlogged table, a partitioned table dropped with its partitions; and a role dropped
// after the restore point with --data-only, and column grants and policies naming a
// role the live cluster lacks.
func TestExtractOfInheritedPartitionedAndUnloggedTables(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	c.Exec(t, `CREATE TABLE parent (id int, v text); CREATE TABLE child () INHERITS (parent);
		INSERT INTO parent VALUES (1, 'p'); INSERT INTO child VALUES (2, 'c'), (3, 'c');
		CREATE UNLOGGED TABLE u (id int); INSERT INTO u SELECT generate_series(1, 5);
		CREATE ROLE gone; CREATE TABLE keep (id int PRIMARY KEY); GRANT SELECT ON keep TO gone;
		INSERT INTO keep SELECT generate_series(1, 4);
		CREATE ROLE colrole; CREATE TABLE colg (id int); GRANT SELECT (id) ON colg TO colrole;
		CREATE ROLE polrole; CREATE TABLE pol (id int); CREATE POLICY p ON pol TO polrole USING (true);
		CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
		CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (100);
		CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id);
		CREATE TABLE m2a PARTITION OF m2 FOR VALUES FROM (100) TO (200);
		INSERT INTO m SELECT g, 'x' FROM generate_series(1, 150) g`)
	mustPGB(t, "", c.Env(), "restore-point", "--repo", repo, "rp")
	c.Exec(t, `DROP TABLE parent CASCADE; DROP TABLE u; REVOKE ALL ON keep FROM gone; DROP ROLE gone; DELETE FROM keep;
		DROP TABLE m; DROP TABLE colg; DROP ROLE colrole; DROP TABLE pol; DROP ROLE polrole`)
	c.WaitArchived(t, c.SwitchWAL(t), time.Minute)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	extract := func(args ...string) result {
		return pgb(t, "", nil, append([]string{"extract", "--repo", repo, "--scratch", scratch, "--target-name", "rp", "--into", c.DSN()}, args...)...)
	}
	exists := func(name string) bool {
		return c.QueryInt(t, "SELECT count(*) FROM pg_class WHERE relname = $1", name) == 1
	}

	t.Run("an inheritance parent alone is refused naming its children", func(t *testing.T) {
		r := extract("--table", "parent")
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, `"public"."child"`) || exists("parent") {
			t.Errorf("want exit 1 naming the child, nothing loaded")
		}
	})
	t.Run("an inheritance parent with its child: each counts its own rows", func(t *testing.T) {
		r := extract("--table", "parent", "--table", "child")
		t.Logf("%s", r)
		if r.code != 0 || !strings.Contains(r.stdout, `"public"."parent": 1 rows loaded`) || !strings.Contains(r.stdout, `"public"."child": 2 rows loaded`) ||
			c.QueryInt(t, "SELECT count(*) FROM parent") != 3 {
			t.Errorf("exit %d; live parent holds %d rows of 3", r.code, c.QueryInt(t, "SELECT count(*) FROM parent"))
		}
	})
	t.Run("an unlogged table is refused: its rows are in no backup", func(t *testing.T) {
		r := extract("--table", "u")
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, "unlogged") || exists("u") {
			t.Errorf("want exit 1 naming unlogged, nothing loaded")
		}
	})
	t.Run("--data-only needs no role: its rows name none", func(t *testing.T) {
		r := extract("--table", "keep", "--data-only")
		t.Logf("%s", r)
		if r.code != 0 || c.QueryInt(t, "SELECT count(*) FROM keep") != 4 {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("a column grant's role missing is refused before loading", func(t *testing.T) {
		r := extract("--table", "colg")
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, `"colrole"`) {
			t.Errorf("want exit 1 naming colrole")
		}
	})
	t.Run("a policy's role missing is refused before loading", func(t *testing.T) {
		r := extract("--table", "pol")
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, `"polrole"`) {
			t.Errorf("want exit 1 naming polrole")
		}
	})
	t.Run("a partition of a dropped partitioned table is refused naming the parent", func(t *testing.T) {
		r := extract("--table", "m1")
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, `"public"."m"`) || strings.Contains(r.stderr, "restored backup") && strings.Contains(r.stderr, "ATTACH") {
			t.Errorf("want exit 1 naming the partitioned table")
		}
	})
	t.Run("a partitioned table comes back with its partitions", func(t *testing.T) {
		r := extract("--table", "m")
		t.Logf("%s", r)
		if r.code != 0 || c.QueryInt(t, "SELECT count(*) FROM m") != 150 || !exists("m2a") {
			t.Errorf("exit %d", r.code)
		}
	})
}
