package status

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// A restore point made on timeline 1 after timeline 2 branched off is never met by
// recovery following timeline 2: status lists it as not reachable, as restore
// --target-name refuses it, and status --name of it (or of an unknown point) answers
// "not reachable" rather than failing to read.
func TestARestorePointOffTheFollowedTimelineIsNotReachable(t *testing.T) {
	ctx := context.Background()
	rp := fixture(t)
	f, _ := wal.Parse("00000002.history")
	if _, err := rp.PutWAL(ctx, f, strings.NewReader("1\t0/4000000\tno reason\n"), 22); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{4, 5, 6, 8, 9} {
		f, _ := wal.Parse(wal.SegmentFileName(2, n, segSize))
		if _, err := rp.PutWAL(ctx, f, strings.NewReader("wal"), 3); err != nil {
			t.Fatal(err)
		}
		start := wal.LSN(n * segSize)
		c := &walsum.Commit{Xid: uint32(100*n + 1), Time: t0.Add(time.Duration(n) * time.Minute), LSN: start + 0x1000}
		js, _ := walsum.Encode(&walsum.Summary{Version: walsum.Version, Segment: f.Name, SegSize: segSize, Records: 2,
			FirstLSN: start + 0x28, LastLSN: start + 0x2000, EndLSN: start + 0x2100, Commits: 1, FirstCommit: c, LastCommit: c, MinXid: c.Xid, MaxXid: c.Xid})
		if err := rp.PutWALSummary(ctx, f, js); err != nil {
			t.Fatal(err)
		}
	}
	if err := rp.PutRestorePoint(ctx, repo.RestorePoint{Name: "tl1", LSN: 5*segSize + 0x1800, Timeline: 1, Time: t0.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	bs, _, err := rp.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target := restore.Target{Kind: restore.ToName, Name: "tl1", Timeline: "latest"}
	if _, err := restore.Choose(ctx, rp, bs, &target, ""); !errors.Is(err, restore.ErrTimeline) {
		t.Fatalf("restore --target-name tl1: %v", err)
	}
	for _, name := range []string{"tl1", "no-such-point"} {
		r, err := Gather(ctx, rp, Options{Now: t0.Add(time.Hour), Target: &restore.Target{Kind: restore.ToName, Name: name, Timeline: "latest"}})
		if err != nil {
			t.Fatalf("status --name %s: %v", name, err)
		}
		if r.Target.Reachable || r.Target.Reason == "" {
			t.Fatalf("status --name %s: %+v", name, r.Target)
		}
		for _, p := range r.RestorePoints {
			if p.Name == "tl1" && p.Reachable {
				t.Fatalf("status lists restore point tl1 as reachable; restore refuses it")
			}
		}
	}
}
