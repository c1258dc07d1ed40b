package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// A mass DELETE, an UPDATE, a TRUNCATE after a restore point: pgb extract --data-only
// puts back the rows the live tables lack, and leaves alone the rows still there.
func TestExtractDataOnlyPutsBackTheDeletedRowsOnly(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	c.Exec(t, `CREATE TABLE log (v int); INSERT INTO log SELECT generate_series(1, 5); INSERT INTO log VALUES (1);
		CREATE TABLE keyed (id int PRIMARY KEY, v text); INSERT INTO keyed SELECT g, 'a' FROM generate_series(1, 4) g;
		CREATE TABLE odd ("a
b" text, id serial);
		INSERT INTO odd ("a
b") VALUES ('x'), ('SELECT pg_catalog.setval(''public.odd_id_seq'', 1, true);'), ('y');
		CREATE TABLE cols (a int, b int); INSERT INTO cols VALUES (1, 2)`)
	mustPGB(t, "", c.Env(), "restore-point", "--repo", repo, "rp")
	c.Exec(t, `DELETE FROM log WHERE v > 3 OR v = 1; INSERT INTO log VALUES (1);
		UPDATE keyed SET v = 'changed' WHERE id = 2; DELETE FROM keyed WHERE id > 2;
		TRUNCATE odd; ALTER TABLE cols ADD COLUMN c int; DELETE FROM cols`)
	c.WaitArchived(t, c.SwitchWAL(t), time.Minute)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	extract := func(table string) result {
		return pgb(t, "", nil, "extract", "--repo", repo, "--scratch", scratch, "--table", table, "--target-name", "rp", "--into", c.DSN(), "--data-only")
	}

	t.Run("a table without a key gets back the rows deleted, not a second copy of the others", func(t *testing.T) {
		r := extract("log")
		t.Logf("%s", r)
		if got := c.QueryString(t, "SELECT string_agg(v::text, ',' ORDER BY v) FROM log"); got != "1,1,2,3,4,5" || r.code != 0 {
			t.Errorf("exit %d; live table now %s, was 1,1,2,3,4,5 before the DELETE", r.code, got)
		}
		if !strings.Contains(r.stdout, "3 inserted") || !strings.Contains(r.stdout, "3 already there") {
			t.Errorf("the summary does not count 3 rows inserted, 3 already there")
		}
	})
	t.Run("a table with a key gets back the rows deleted; an updated row is left alone and counted", func(t *testing.T) {
		r := extract("keyed")
		t.Logf("%s", r)
		if got := c.QueryString(t, "SELECT string_agg(id || v, ',' ORDER BY id) FROM keyed"); got != "1a,2changed,3a,4a" || r.code != 0 {
			t.Errorf("exit %d; live table now %s", r.code, got)
		}
		if !strings.Contains(r.stdout, "2 inserted") || !strings.Contains(r.stdout, "1 already there") || !strings.Contains(r.stdout, "1 left alone") {
			t.Errorf("the summary does not count 2 inserted, 1 already there, 1 left alone")
		}
	})
	t.Run("a column name with a newline and a row that looks like setval: every row comes back", func(t *testing.T) {
		r := extract("odd")
		t.Logf("%s", r)
		if got := c.QueryInt(t, "SELECT count(*) FROM odd"); got != 3 || r.code != 0 {
			t.Errorf("exit %d; %d of 3 rows back", r.code, got)
		}
		if got := c.QueryInt(t, "SELECT last_value FROM odd_id_seq"); got != 3 {
			t.Errorf("the live sequence moved to %d, was 3", got)
		}
	})
	t.Run("--dump --data-only writes every row and no setval", func(t *testing.T) {
		c.Exec(t, "TRUNCATE odd")
		file := filepath.Join(pgtest.TempDir(t), "odd.sql")
		r := pgb(t, "", nil, "extract", "--repo", repo, "--scratch", scratch, "--table", "odd", "--target-name", "rp", "--dump", file, "--data-only")
		t.Logf("%s", r)
		if r.code != 0 {
			t.Fatalf("exit %d", r.code)
		}
		out, err := exec.Command(c.Bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--dbname="+c.DSN(), "-f", file).CombinedOutput()
		if err != nil {
			t.Fatalf("psql -f %s: %v\n%s", file, err, out)
		}
		if got := c.QueryInt(t, "SELECT count(*) FROM odd"); got != 3 {
			t.Errorf("%d of 3 rows in the dump", got)
		}
		if got := c.QueryInt(t, "SELECT last_value FROM odd_id_seq"); got != 3 {
			t.Errorf("the dump moved the live sequence to %d, was 3", got)
		}
	})
	t.Run("a live table whose columns changed is refused in one line", func(t *testing.T) {
		r := extract("cols")
		t.Logf("%s", r)
		_, line, _ := strings.Cut(r.stderr, "pgb: error")
		if r.code != 1 || !strings.Contains(line, "column") || strings.Count(strings.TrimSpace(line), "\n") != 0 {
			t.Errorf("want exit 1 naming the columns, in one line")
		}
		if got := c.QueryInt(t, "SELECT count(*) FROM cols"); got != 0 {
			t.Errorf("%d rows loaded", got)
		}
	})
}
