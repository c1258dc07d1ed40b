package lookahead

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage/mem"
)

// On a busy primary the archiver never idles, so it never exits: the records of the
// segments PostgreSQL archived and then recycled must be removed while it runs, or they
// pile up in pg_wal/pgb/push for as long as WAL flows.
func TestABusyArchiverRemovesTheRecordsOfRecycledSegmentsAsItRuns(t *testing.T) {
	c := newCluster(t, 0)
	a := c.archiver(mem.New(), 2)
	a.Idle = time.Hour // busy: it must not exit during the test
	a.CleanupEvery = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("archiver: %v", err)
		}
	}()

	guard := time.Now().Add(time.Minute) // a hang guard, not a timing
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if time.Now().After(guard) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	const n = 10
	for i := 1; i <= n; i++ {
		c.ready(t, i)
		waitFor(segName(i)+" recorded", func() bool { _, err := c.spool.ReadRecord(segName(i)); return err == nil })
		// PostgreSQL's call found it recorded: .ready becomes .done, and a later
		// checkpoint recycles the segment file.
		if err := os.Rename(filepath.Join(c.walDir, "archive_status", segName(i)+".ready"),
			filepath.Join(c.walDir, "archive_status", segName(i)+".done")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(c.path(i)); err != nil {
			t.Fatal(err)
		}
	}
	records := func() int {
		ents, err := os.ReadDir(string(c.spool))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), recordSuffix) {
				k++
			}
		}
		return k
	}
	c.ready(t, n+1) // activity wakes the running archiver
	waitFor("the records of the recycled segments removed", func() bool { return records() <= 1 })
	if !c.spool.ArchiverRunning() {
		t.Fatal("the archiver exited: the test no longer shows the running case")
	}
}
