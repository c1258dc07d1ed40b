package restore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A user whose wal-push-queue-max dropped WAL restores to a time after the drop: the
// restore is refused before anything is written, naming the dropped segments and the
// cause; with --target-beyond-archive too, even when nothing was archived after the
// drop (the drop is no end of the archive that more WAL could extend).
func TestChooseRefusesATargetAcrossDroppedWAL(t *testing.T) {
	for _, archivedAfter := range []bool{true, false} {
		st := mem.New()
		putSegments(t, st, segRange(1, 2, 4)...)
		if archivedAfter {
			putSegments(t, st, segRange(1, 7, 8)...)
		}
		rp := repo.New(st, repo.Options{})
		dropped := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
		if _, err := rp.PutGap(context.Background(), repo.GapRecord{Timeline: 1, First: "000000010000000000000005", Last: "000000010000000000000006",
			SegmentSize: 16 << 20, Segments: 2, Reason: repo.GapReasonQueueMax, DroppedFrom: dropped, DroppedTo: dropped, BacklogBytes: 5 << 30, LimitBytes: 4 << 30}); err != nil {
			t.Fatal(err)
		}
		backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
		at, _ := commitOf(7)
		for _, beyond := range []bool{false, true} {
			target := Target{Kind: ToTime, Time: at, Timeline: "latest", BeyondArchive: beyond}
			_, err := Choose(context.Background(), rp, backups, &target, "")
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("archived after %v, beyond %v: Choose = %v, want ErrUnreachable", archivedAfter, beyond, err)
			}
			for _, w := range []string{"dropped 000000010000000000000005 to 000000010000000000000006", "WAL dropped by wal-push-queue-max on 2026-11-23T11:00:00Z", "nothing was written"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("archived after %v: %q lacks %q", archivedAfter, err, w)
				}
			}
		}
		ok, _ := commitOf(3)
		target := Target{Kind: ToTime, Time: ok, Timeline: "latest"}
		if _, err := Choose(context.Background(), rp, backups, &target, ""); err != nil {
			t.Fatalf("a target before the drop: %v", err)
		}
	}
}

// putDropped records segments 05..06 of timeline 1 as dropped by wal-push-queue-max.
func putDropped(t *testing.T, rp *repo.Repo) {
	t.Helper()
	dropped := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	if _, err := rp.PutGap(context.Background(), repo.GapRecord{Timeline: 1, First: "000000010000000000000005", Last: "000000010000000000000006",
		SegmentSize: 16 << 20, Segments: 2, Reason: repo.GapReasonQueueMax, DroppedFrom: dropped, DroppedTo: dropped, BacklogBytes: 5 << 30, LimitBytes: 4 << 30}); err != nil {
		t.Fatal(err)
	}
}

// A user restores with no target (the newest state there is) while the only backup
// lies before WAL dropped by wal-push-queue-max and WAL after the drop is archived:
// PostgreSQL would replay up to the drop, take the missing segment for the end of the
// archive and promote, the archived WAL after it never replayed. The restore is
// refused before anything is written, saying where the window ends, the dropped
// segments and why, the WAL archived beyond, and how to restore to the window's end;
// as restore --dry-run and pgb status --at latest (Check) say.
func TestRestoreToTheEndAcrossDroppedWALIsRefused(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	putSegments(t, st, segRange(1, 7, 8)...)
	rp := repo.New(st, repo.Options{})
	putDropped(t, rp)
	backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
	target := Target{Timeline: "latest"} // no target: the end of the archive
	m, err := Choose(context.Background(), rp, backups, &target, "")
	if m != nil || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("restore to the end of the archive = %v, %v: want a refusal, recovery would stop before dropped 000000010000000000000005 and never replay the archived 000000010000000000000007..08", m, err)
	}
	for _, w := range []string{
		"from backup b would stop at", "WAL to 000000010000000000000004",
		"dropped 000000010000000000000005 to 000000010000000000000006 (2 segments) (WAL dropped by wal-push-queue-max on 2026-11-23T11:00:00Z",
		"never replaying the archived 000000010000000000000007 to 000000010000000000000008",
		"nothing was written", "--target-lsn 0/4FFF000", "a base backup taken now starts a window",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
	// pgb status --at latest gives the same verdict, not an error.
	r, err := Check(context.Background(), rp, backups, &Target{Timeline: "latest"})
	if err != nil || r.Verdict.Reachable || r.Backup != nil || !strings.Contains(r.Verdict.Reason, "dropped 000000010000000000000005") {
		t.Fatalf("Check(the end of the archive) = %+v, %v: want unreachable, naming the drop", r, err)
	}
	// The window's end, as the message says, can be restored to.
	end := Target{Kind: ToLSN, LSN: 0x4FFF000, Timeline: "latest"}
	if m, err := Choose(context.Background(), rp, backups, &end, ""); err != nil || m.Name != "b" {
		t.Fatalf("restore to the window's end (LSN 0/4FFF000) = %v, %v", m, err)
	}
}

// With a backup taken after the drop, restore to the end starts from it: its window
// reaches the newest WAL. Naming the older backup with --backup is refused, pointing
// to the newer one.
func TestRestoreToTheEndAfterDroppedWALUsesTheBackupAfterTheDrop(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	putSegments(t, st, segRange(1, 7, 9)...)
	rp := repo.New(st, repo.Options{})
	putDropped(t, rp)
	backups := putBackups(t, st, []tlBackup{{"before", 1, 0x2000028, 0x2000100}, {"after", 1, 0x7000028, 0x7000100}})
	target := Target{Timeline: "latest"}
	m, err := Choose(context.Background(), rp, backups, &target, "")
	if err != nil || m.Name != "after" {
		t.Fatalf("restore to the end = %v, %v: want backup after, whose window reaches 000000010000000000000009", m, err)
	}
	target = Target{Timeline: "latest"}
	_, err = Choose(context.Background(), rp, backups, &target, "before")
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "restore from backup after (drop --backup)") {
		t.Fatalf("restore to the end --backup before = %v: want a refusal naming backup after", err)
	}
}

// Dropped WAL at the very end of the archive, nothing archived after it: the window's
// end is the newest state there is, so restore to the end goes ahead (pgb status warns
// of the drop).
func TestRestoreToTheEndWithDroppedWALAtTheEndGoesAhead(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	rp := repo.New(st, repo.Options{})
	putDropped(t, rp)
	backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
	target := Target{Timeline: "latest"}
	if m, err := Choose(context.Background(), rp, backups, &target, ""); err != nil || m.Name != "b" {
		t.Fatalf("restore to the end = %v, %v", m, err)
	}
}

// An ordinary gap (a segment not in the repository) before archived WAL is treated as
// a drop is: recovery would stop at it and promote, so restore to the end is refused,
// naming the missing segment.
func TestRestoreToTheEndAcrossAMissingSegmentIsRefused(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	putSegments(t, st, segRange(1, 6, 8)...)
	backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
	target := Target{Timeline: "latest"}
	m, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
	if m != nil || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("restore to the end = %v, %v: want a refusal", m, err)
	}
	for _, w := range []string{"missing 000000010000000000000005 (not in the repository)", "never replaying the archived 000000010000000000000006 to 000000010000000000000008"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
}
