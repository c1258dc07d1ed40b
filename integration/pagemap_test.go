package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/pagecheck"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/wal"
)

// sameSize, as scanRelation's prevSize, says the file had its present size before.
const sameSize = -2

// scanRelation runs pagemap.Scan over a table's main fork as PostgreSQL left it on
// disk (the caller checkpoints first).
func scanRelation(t *testing.T, c *pgtest.Cluster, table string, prevSize int64, since wal.LSN) (pagemap.Map, int64) {
	t.Helper()
	rel := c.QueryString(t, "SELECT pg_relation_filepath($1)", table)
	if !pagemap.Eligible(rel) || pagemap.Eligible(rel+"_vm") || pagemap.Eligible(rel+"_fsm") {
		t.Fatalf("eligibility of %s and its forks", rel)
	}
	f, err := os.Open(filepath.Join(c.DataDir(), rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if prevSize == sameSize {
		prevSize = fi.Size()
	}
	m, err := pagemap.Scan(f, fi.Size(), prevSize, uint64(since))
	if err != nil {
		t.Fatal(err)
	}
	return m, fi.Size()
}

func blockList(m pagemap.Map) []uint32 {
	var out []uint32
	m.Blocks(func(b uint32) bool { out = append(out, b); return true })
	return out
}

// The rule an incremental backup will judge pages by (pagemap.Changed), checked on
// the pages of a real PostgreSQL 15 cluster with data checksums: after a base backup
// would start, exactly the blocks rows were updated in count as changed, not the
// blocks merely read; and a table truncated in place by VACUUM and extended again
// has every block from the truncation point on counted, so no page of the old,
// truncated tail can come back from the base.
func TestAnIncrementalWouldStoreExactlyTheBlocksWrittenSinceItsBaseStarted(t *testing.T) {
	pgtest.RequireParallel(t)
	c := checksumCluster(t, "")
	c.Exec(t, "CREATE TABLE t (id int, v int) WITH (fillfactor = 10, autovacuum_enabled = off)")
	c.Exec(t, "INSERT INTO t SELECT g, 0 FROM generate_series(1, 3000) g")
	c.Exec(t, "VACUUM FREEZE t")
	c.Exec(t, "CHECKPOINT")
	lsn := func() wal.LSN {
		t.Helper()
		l, err := wal.ParseLSN(c.QueryString(t, "SELECT pg_current_wal_insert_lsn()"))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	since := lsn()
	c.Exec(t, "UPDATE t SET v = 1 WHERE ctid IN ('(3,1)', '(7,2)')")
	if n := c.QueryInt(t, "SELECT count(*) FROM t WHERE v = 0"); n != 2998 { // reads every page
		t.Fatalf("%d rows unchanged", n)
	}
	c.Exec(t, "CHECKPOINT")
	m, size := scanRelation(t, c, "t", sameSize, since)
	if size < 20*pagemap.BlockSize {
		t.Fatalf("the table has %d bytes: too few blocks for the test", size)
	}
	if got := blockList(m); len(got) != 2 || got[0] != 3 || got[1] != 7 {
		t.Fatalf("changed blocks %v, want [3 7]", got)
	}

	// VACUUM truncates the emptied tail in place (same file); new rows extend it again.
	c.Exec(t, "DELETE FROM t WHERE ctid >= '(10,0)'")
	c.Exec(t, "VACUUM t")
	c.Exec(t, "CHECKPOINT")
	if got := c.QueryInt(t, "SELECT pg_relation_size('t')") / pagemap.BlockSize; got != 10 {
		t.Fatalf("VACUUM left %d blocks, want 10", got)
	}
	since = lsn()
	c.Exec(t, "INSERT INTO t SELECT g, 2 FROM generate_series(1, 500) g")
	c.Exec(t, "CHECKPOINT")
	m, size = scanRelation(t, c, "t", size, since)
	n := uint32(pagemap.Blocks(size))
	if n <= 10 {
		t.Fatalf("the table did not grow again: %d blocks", n)
	}
	for b := uint32(10); b < n; b++ {
		if !m.Has(b) {
			t.Fatalf("block %d, written after the truncation, is not counted as changed (changed: %v)", b, blockList(m))
		}
	}
	for b := uint32(0); b < 10; b++ {
		if m.Has(b) && b != 9 { // the last block kept may take new rows
			t.Fatalf("block %d, untouched since, is counted as changed (changed: %v)", b, blockList(m))
		}
	}
}

// pagecheck's checksum is PostgreSQL's: every page of a table's main, free space map
// and visibility map forks written by a real PostgreSQL 15 server with data checksums
// verifies, and a byte changed with dd in one page of the stopped cluster is caught in
// that block and no other.
func TestPageChecksumsOfARealClusterVerifyAndADamagedPageIsFound(t *testing.T) {
	pgtest.RequireParallel(t)
	c := checksumCluster(t, "")
	c.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	c.Exec(t, "INSERT INTO t SELECT g, repeat('x', g % 300) FROM generate_series(1, 20000) g")
	c.Exec(t, "DELETE FROM t WHERE id % 7 = 0")
	c.Exec(t, "VACUUM t")
	c.Exec(t, "CHECKPOINT")
	rel := c.QueryString(t, "SELECT pg_relation_filepath('t')")
	idx := c.QueryString(t, "SELECT pg_relation_filepath('t_pkey')")
	verdicts := func(path string) map[pagecheck.Verdict][]uint32 {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(c.DataDir(), path))
		if err != nil {
			t.Fatal(err)
		}
		first, ok := pagecheck.FirstBlock(path)
		if !ok || len(b)%pagecheck.BlockSize != 0 || len(b) == 0 {
			t.Fatalf("%s: checksummed %v, %d bytes", path, ok, len(b))
		}
		out := map[pagecheck.Verdict][]uint32{}
		for i := 0; i < len(b)/pagecheck.BlockSize; i++ {
			v := pagecheck.Verify(b[i*pagecheck.BlockSize:(i+1)*pagecheck.BlockSize], first+uint32(i))
			out[v] = append(out[v], uint32(i))
		}
		return out
	}
	for _, p := range []string{rel, rel + "_fsm", rel + "_vm", idx} {
		if v := verdicts(p); len(v[pagecheck.Mismatch]) != 0 || len(v[pagecheck.Valid]) == 0 {
			t.Fatalf("%s as PostgreSQL wrote it: %d valid pages, mismatches in blocks %v", p, len(v[pagecheck.Valid]), v[pagecheck.Mismatch])
		}
	}
	c.Stop(t)
	dd := exec.Command("dd", "of="+filepath.Join(c.DataDir(), rel), "bs=1", "seek="+strconv.Itoa(5*pagecheck.BlockSize+3000), "count=1", "conv=notrunc")
	dd.Stdin = strings.NewReader("\x55")
	if out, err := dd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, out)
	}
	if got := verdicts(rel)[pagecheck.Mismatch]; len(got) != 1 || got[0] != 5 {
		t.Fatalf("after dd into block 5: mismatches in blocks %v, want [5]", got)
	}
}
