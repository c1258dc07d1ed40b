package verify

import (
	"context"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/retention"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// pgb delete keeps of a permanent backup only the WAL it needs to become consistent;
// verify --wal must then pass on what delete left.
func TestVerifyPassesOnWhatDeleteLeavesOfAPermanentBackup(t *testing.T) {
	f := &fixture{t: t, st: mem.New(), ctx: context.Background()}
	f.rp = repo.New(f.st, repo.Options{})
	if _, err := f.rp.EnsureIdentity(f.ctx, repo.Identity{Format: repo.FormatVersion, SystemID: sysID, PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for no := uint64(2); no <= 10; no++ {
		f.putSegment(1, no, segment(1, no))
	}
	f.putBackup("20261201T000000Z", 2*segSize+0x28, 3*segSize+0x100, map[int][]tfile{1: {{"PG_VERSION", "15\n"}}})
	f.putBackup("20261202T000000Z", 5*segSize+0x28, 6*segSize+0x100, map[int][]tfile{1: {{"PG_VERSION", "15\n"}}})
	f.putBackup("20261203T000000Z", 8*segSize+0x28, 9*segSize+0x100, map[int][]tfile{1: {{"PG_VERSION", "15\n"}}})
	if err := f.rp.MarkPermanent(f.ctx, "20261201T000000Z", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ps := run(t, f.st, Options{WAL: true}); len(ps) != 0 {
		t.Fatalf("before delete: %v", ps)
	}
	res, err := retention.Delete(f.ctx, f.rp, retention.Options{Policy: retention.Policy{RetainFull: 1}, Now: time.Now(), Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted %d backups and %d WAL files", len(res.Delete), len(res.WAL))
	if _, ps := run(t, f.st, Options{WAL: true}); len(ps) != 0 {
		t.Fatalf("verify --wal after pgb delete --retain-full 1 --confirm: %v", ps)
	}
}
