package backup

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// The manifest put commits, its acknowledgement is lost, and every retry fails on
// the network: the manifest is stored, so the backup is complete and reported so —
// not failed, and never "can be deleted".
func TestPushWhoseManifestIsStoredDespiteAFailedWriteIsComplete(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	inner := mem.New()
	putWAL(t, inner, "000000010000000000000002")
	name := "20260101T000000Z"
	fst := faulty.New(inner,
		faulty.Rule{Op: faulty.Put, Key: repo.ManifestKey(name), Fault: faulty.FailAfter, Count: 1, Err: syscall.ECONNRESET},
		faulty.Rule{Op: faulty.Put, Key: repo.ManifestKey(name), Err: syscall.ECONNRESET})
	st := retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	p := newPusher(st, src, fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var logged bytes.Buffer
	p.Log = slog.New(slog.NewTextHandler(&logged, nil))
	m, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("Run = %v; the manifest is stored, so the backup is complete\n%s", err, logged.String())
	}
	if fst.Faults(faulty.Put) < 2 {
		t.Fatalf("the faults were not injected (%d)", fst.Faults(faulty.Put))
	}
	list, _, err := repo.New(inner, repo.Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 || list[0].Name != m.Name {
		t.Fatalf("ListBackups = %v, %v; want %s", names(list), err, m.Name)
	}
	if !strings.Contains(logged.String(), "the backup is complete") {
		t.Errorf("no warning that the write reported an error:\n%s", logged.String())
	}
}

// When the manifest's write fails and whether it was stored cannot be checked, nothing
// is removed: a manifest that landed after all must not be left without its parts.
func TestPushLeavesABackupWhoseManifestStateIsUnknown(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	inner := mem.New()
	putWAL(t, inner, "000000010000000000000002")
	name := "20260101T000000Z"
	fst := faulty.New(inner,
		faulty.Rule{Op: faulty.Put, Key: repo.ManifestKey(name), Err: syscall.ECONNRESET},
		faulty.Rule{Op: faulty.Get, Key: repo.ManifestKey(name), Err: syscall.ECONNRESET})
	p := newPusher(fst, newFakeSource(fx.dataDir), fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	_, err := p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "left in place") {
		t.Fatalf("Run = %v, want an error saying the objects are left in place", err)
	}
	if keys := allKeys(t, inner, repo.BackupPrefix(name)); len(keys) == 0 {
		t.Fatal("the backup's parts were removed while its manifest's state was unknown")
	}
}
