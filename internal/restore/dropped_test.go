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
