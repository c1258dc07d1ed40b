package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// restoreFetchingVerbosely restores s's latest backup into a new directory and starts
// PostgreSQL on it with the default prefetch, restore_command logging at debug level
// (so that the server log says which segments came from the prefetch spool), archiving
// off, and waits for recovery to end.
func restoreFetchingVerbosely(t *testing.T, s *scenario) *pgtest.Cluster {
	t.Helper()
	bin := pgtest.BuildPGB(t)
	conf := []string{"archive_mode = off",
		"restore_command = '" + bin + " wal-fetch --repo " + s.repo + " --log-level debug %f %p'"}
	c := s.restoreWith(t, conf)
	c.WaitRecoveryDone(t, 180*time.Second)
	return c
}

var spoolServedRE = regexp.MustCompile(`msg="fetched from the prefetch spool" file=([0-9A-F]{24})`)

// servedFromSpool lists the segments the server log says wal-fetch took from the spool.
func servedFromSpool(t *testing.T, c *pgtest.Cluster) []string {
	t.Helper()
	b, err := os.ReadFile(c.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range spoolServedRE.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

// prefetcherGone waits until no prefetcher holds the lock of c's spool (the deadline
// only guards against a hang: an idle prefetcher exits by itself), then checks that it
// left no segment behind in pg_wal/pgb/fetch.
func prefetcherGone(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	dir := filepath.Join(c.DataDir(), "pg_wal", "pgb", "fetch")
	if _, err := os.Stat(filepath.Join(dir, "prefetcher.log")); err != nil {
		t.Fatalf("no prefetcher ran for this recovery: %v", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		f, err := os.Open(filepath.Join(dir, "prefetcher.lock"))
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		_ = f.Close() // releases the lock if taken
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prefetcher is still running 2 minutes after recovery ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if len(e.Name()) >= 24 && strings.Trim(e.Name()[:24], "0123456789ABCDEF") == "" {
			t.Errorf("the prefetcher left %s in the spool", e.Name())
		}
	}
}

// A recovery across many segments with the default prefetch: every row comes back,
// most segments come from the spool, and the prefetcher is gone once recovery ended.
func TestRecoveryOfManySegmentsWithPrefetchReplaysEveryRow(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	s := &scenario{repo: repo, sel: []string{"--repo", repo}}
	s.src = archivingCluster(t, repo)
	s.src.Exec(t, "CREATE TABLE orders (id bigint PRIMARY KEY, total bigint)")
	s.backup(t)
	for i := 0; i < 24; i++ {
		s.src.Exec(t, "INSERT INTO orders SELECT g, g * 7 FROM generate_series($1::bigint * 1000 + 1, ($1::bigint + 1) * 1000) g", i)
		s.src.GenerateWAL(t, 1)
	}
	wantRows, wantSum := s.src.QueryInt(t, "SELECT count(*) FROM orders"), s.src.QueryInt(t, "SELECT sum(total) FROM orders")
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 60*time.Second)
	s.src.Stop(t)

	c := restoreFetchingVerbosely(t, s)
	if got := c.QueryInt(t, "SELECT count(*) FROM orders"); got != wantRows {
		t.Fatalf("rows = %d, want %d", got, wantRows)
	}
	if got := c.QueryInt(t, "SELECT sum(total) FROM orders"); got != wantSum {
		t.Fatalf("sum = %d, want %d", got, wantSum)
	}
	served := servedFromSpool(t, c)
	t.Logf("%d segments served from the prefetch spool", len(served))
	if len(served) < 10 {
		t.Errorf("only %d of the 24+ segments came from the prefetch spool: %v", len(served), served)
	}
	prefetcherGone(t, c)
}

// Issue 11: prefetch across a timeline switch. Production archives timeline 1 and
// fails; its restored copy is promoted onto timeline 2, writes and archives into the
// same repository. A restore of the first backup to the latest timeline must replay
// both, taking segments of timeline 2 from the spool after the switch and never a
// spooled file of the wrong timeline.
func TestPrefetchAcrossATimelineSwitchReplaysCorrectly(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	s := &scenario{repo: repo, sel: []string{"--repo", repo}}
	s.src = archivingCluster(t, repo)
	s.src.Exec(t, "CREATE TABLE orders (id bigserial PRIMARY KEY, phase text)")
	s.backup(t)
	for i := 0; i < 6; i++ {
		s.src.Exec(t, "INSERT INTO orders (phase) SELECT 'A' FROM generate_series(1, 500)")
		s.src.GenerateWAL(t, 1)
	}
	rowsA := s.src.QueryInt(t, "SELECT count(*) FROM orders")
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 60*time.Second)
	s.src.Stop(t) // production fails

	// The copy replays timeline 1 to its end, is promoted onto timeline 2 and archives.
	cp := s.restoreWith(t, nil, "--archive-mode", "preserve")
	cp.WaitRecoveryDone(t, 180*time.Second)
	if tli := cp.QueryInt(t, "SELECT timeline_id FROM pg_control_checkpoint()"); tli != 2 {
		t.Fatalf("the promoted copy is on timeline %d, want 2", tli)
	}
	for i := 0; i < 6; i++ {
		cp.Exec(t, "INSERT INTO orders (phase) SELECT 'B' FROM generate_series(1, 500)")
		cp.GenerateWAL(t, 1)
	}
	rowsB := cp.QueryInt(t, "SELECT count(*) FROM orders WHERE phase = 'B'")
	cp.WaitArchived(t, cp.SwitchWAL(t), 60*time.Second)
	cp.Stop(t)

	c := restoreFetchingVerbosely(t, s)
	if tli := c.QueryInt(t, "SELECT timeline_id FROM pg_control_checkpoint()"); tli != 3 {
		t.Errorf("the restore ended on timeline %d, want 3 (after following 2)", tli)
	}
	if got := c.QueryInt(t, "SELECT count(*) FROM orders WHERE phase = 'A'"); got != rowsA {
		t.Errorf("rows of timeline 1 = %d, want %d", got, rowsA)
	}
	if got := c.QueryInt(t, "SELECT count(*) FROM orders WHERE phase = 'B'"); got != rowsB {
		t.Errorf("rows of timeline 2 = %d, want %d", got, rowsB)
	}
	served := servedFromSpool(t, c)
	var onTL2 int
	for _, n := range served {
		if strings.HasPrefix(n, "00000002") {
			onTL2++
		}
	}
	t.Logf("served from the spool: %v", served)
	if onTL2 < 3 {
		t.Errorf("only %d segments of timeline 2 came from the prefetch spool: %v", onTL2, served)
	}
	prefetcherGone(t, c)
}
