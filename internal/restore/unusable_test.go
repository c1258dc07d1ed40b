package restore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// Restore to the end never starts from a backup whose own WAL (start to stop) is not
// archived: PostgreSQL could never become consistent. Here the older backup's window
// ends at that gap, before the archived 06..08, so restore to the end is refused
// (TestRestoreToTheEndAcrossAMissingSegmentIsRefused); --target-immediate starts from
// the older one.
func TestRestoreToEndSkipsABackupWhoseWALIsMissing(t *testing.T) {
	for _, kind := range []TargetKind{ToEnd, ToImmediate} {
		st := mem.New()
		putSegments(t, st, segRange(1, 2, 4)...)
		putSegments(t, st, segRange(1, 6, 8)...)
		backups := putBackups(t, st, []tlBackup{{"old", 1, 0x2000028, 0x2000100}, {"new", 1, 0x5000028, 0x5000100}})
		target := Target{Kind: kind, Timeline: "latest"}
		m, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
		if kind == ToEnd {
			if m != nil || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "from backup old") {
				t.Fatalf("%s: chose %v (%v), want a refusal: new's WAL 000000010000000000000005 is not archived and old's window ends before it", target, m, err)
			}
		} else if err != nil || m.Name != "old" {
			t.Fatalf("%s: chose %v (%v), want old: new's WAL 000000010000000000000005 is not archived", target, m, err)
		}
		if _, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "new"); !errors.Is(err, ErrNoUsableBackup) {
			t.Fatalf("%s --backup new: %v", target, err)
		}
	}
}

// With no usable backup at all, restore to the end refuses and shows the window.
func TestRestoreToEndWithNoUsableBackupIsRefused(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 6, 8)...)
	backups := putBackups(t, st, []tlBackup{{"old", 1, 0x2000028, 0x2000100}})
	target := Target{Kind: ToEnd, Timeline: "latest"}
	_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
	if !errors.Is(err, ErrNoUsableBackup) || !strings.Contains(err.Error(), "nothing is recoverable") {
		t.Fatalf("%v", err)
	}
}

// One damaged segment at an old backup's stop segment (here: an object that is not
// WAL) makes that backup unusable, not every restore impossible.
func TestOneDamagedOldSegmentDoesNotBlockRestoringANewerBackup(t *testing.T) {
	st := mem.New()
	putWAL(t, st, wal.SegmentFileName(1, 3, 16<<20), bytes.Repeat([]byte{0xff}, 16<<20))
	putSegments(t, st, segRange(1, 6, 8)...)
	backups := putBackups(t, st, []tlBackup{{"old", 1, 0x3000028, 0x3000100}, {"new", 1, 0x6000028, 0x6000100}})
	target := Target{Kind: ToEnd, Timeline: "latest"}
	m, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
	if err != nil || m.Name != "new" {
		t.Fatalf("restore to the end from new: %v", err)
	}
}

// backup-fetch sets up no recovery: it does not read the archived WAL, so a damaged
// segment cannot stop it.
func TestBackupFetchIgnoresADamagedSegment(t *testing.T) {
	st := mem.New()
	putWAL(t, st, wal.SegmentFileName(1, 3, 16<<20), bytes.Repeat([]byte{0xff}, 16<<20))
	putSegments(t, st, segRange(1, 6, 8)...)
	putBackups(t, st, []tlBackup{{"old", 1, 0x3000028, 0x3000100}, {"new", 1, 0x6000028, 0x6000100}})
	_, _, err := Plan(context.Background(), repo.New(st, repo.Options{}), slog.New(slog.DiscardHandler), "new", nil)
	if err != nil && !errors.Is(err, repo.ErrDamagedBackup) && !errors.Is(err, repo.ErrNoBackup) {
		t.Fatalf("backup-fetch --backup new: %v", err)
	}
}

// A target after the last archived commit: the refusal first says to restore to the
// end, and never that recovery waits for WAL.
func TestATargetAfterTheArchiveSuggestsRestoringToTheEnd(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	backups := putBackups(t, st, []tlBackup{{"old", 1, 0x2000028, 0x2000100}})
	target := Target{Kind: ToLSN, LSN: 0x9000000, Timeline: "latest"}
	_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
	if !errors.Is(err, ErrBeyondArchive) || !strings.Contains(err.Error(), "restore with no target (to the end of the archive)") ||
		strings.Index(err.Error(), "no target") > strings.Index(err.Error(), "--target-beyond-archive") {
		t.Fatalf("%v", err)
	}
}

// A transaction that began before the only backup (xid below its next xid) may have
// committed after it ended: restore does not refuse it, and starts from that backup.
func TestRestoreToAnXidBelowTheOldestBackupsNextXid(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	backups := putBackups(t, st, []tlBackup{{"old", 1, 0x2000028, 0x2000100}}) // next xid 1000
	target := Target{Kind: ToXID, XID: 900, Timeline: "latest"}
	m, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
	if err != nil || m.Name != "old" {
		t.Fatalf("xid 900: %v", err)
	}
}
