package drill

import (
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
)

// The store's clock a second ahead of the drill host (S3 LastModified, NFS mtime):
// the newest WAL looks a second younger than now. A drill that passed must still be
// recorded: the figure is cosmetic, the record is not.
func TestPassedDrillWithTheStoreClockAheadIsRecorded(t *testing.T) {
	st := &status.Report{NewestWAL: &status.NewestWAL{Segment: "000000010000000000000007", AgeSeconds: -1}}
	got := time.Now()
	rpo, _, _ := measureRPO(st, nil, restore.Target{Kind: restore.ToEnd}, &got)
	now := time.Now().UTC()
	rep := &Report{OK: true, Started: now.Add(-time.Minute), Finished: now, RPO: rpo,
		Backup: BackupUsed{Name: "20261202T030001Z"}}
	rec := Record(rep, "test")
	rec.Format = 1 // as PutDrill sets it
	if err := rec.Validate(); err != nil {
		t.Fatalf("a passed drill's record is refused: %v", err)
	}
	if a := rec.RPO.NewestWALAgeSeconds; a == nil || *a < 0 {
		t.Errorf("newest WAL age recorded %v, want 0 (clamped)", a)
	}
}
