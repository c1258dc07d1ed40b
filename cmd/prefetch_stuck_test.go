package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/spool"
	"github.com/pgb-project/pgb/internal/waltest"
)

// A prefetcher that is alive but stuck writing the very segment PostgreSQL asks for
// (a hung connection: its own bound is the whole wal-timeout) must not make wal-fetch
// spend its whole deadline waiting and then exit 255 without ever asking the
// repository, which holds the segment.
func TestWALFetchFetchesItsSegmentItselfWhenThePrefetcherIsStuckWritingIt(t *testing.T) {
	isolate(t)
	repo, pgdata := pushedRepo(t)
	dir, err := spool.Open(pgdata, "fetch")
	if err != nil {
		t.Fatal(err)
	}
	// A live prefetcher: holds the lock and has a temp file of seg1 open for writing.
	lock, err := os.OpenFile(filepath.Join(dir, "prefetcher.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Close() }()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".tmp-"+seg1+"-1"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pgdata)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	var calls []spawned
	start := time.Now()
	r := fetchWithSpawn(t, &calls, "wal-fetch", "--repo", repo, "--wal-timeout", "3s", seg1, dest)
	if r.code != 0 {
		t.Fatalf("wal-fetch exit %d after %v with the segment in the repository: %s", r.code, time.Since(start).Round(time.Millisecond), r.stderr)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, waltest.Stamped(seg1, waltest.Segment(42, 1))) {
		t.Fatal("DEST does not hold the segment")
	}
}
