package archive

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/wal"
)

// A body that breaks mid-stream and whose resume gets 404 must not read as
// "end of archive".
func TestAWALFileThatVanishesWhileBeingReadIsNotTheEndOfTheArchive(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	dir := dataDir(t, 42)
	const name = "000000010000000000000003"
	if _, err := newArchive(t, inner, "none").Push(ctx, writeWAL(t, dir, name, segment(42, 1)), cluster(t, dir)); err != nil {
		t.Fatal(err)
	}
	f, _ := wal.Parse(name)
	key := repo.WALKey(f)
	fst := faulty.New(inner,
		faulty.Rule{Op: faulty.Get, Key: key, Count: 1, Fault: faulty.Truncate, Offset: 100000, Err: syscall.ECONNRESET},
		faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Fail, Err: storage.ErrNotExist})
	st := retry.New(fst, retry.Config{MaxAttempts: 5, Sleep: func(context.Context, time.Duration) error { return nil }})
	a := newArchive(t, st, "none")
	_, err := a.Fetch(ctx, name, filepath.Join(t.TempDir(), "RECOVERYXLOG"))
	t.Logf("err = %v", err)
	if errors.Is(err, ErrNotArchived) {
		t.Fatalf("a read that broke after 100000 bytes and could not be resumed is reported as end of archive: %v", err)
	}
}
