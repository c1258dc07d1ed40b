package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// The source keeps committing while the drill runs: recovery fetches the WAL archived
// meanwhile and replays past the last archived commit pgb status saw before the
// restore. Nothing was lost: the RPO gap is 0, never negative. The test hook holds the
// drill after the restore, before its server starts, while the source commits.
func TestDrillOfAClusterCommittingDuringTheDrillMeasuresNoNegativeRPO(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c, _ := writingCluster(t, repo)
	fifo := filepath.Join(pgtest.TempDir(t), "go-on")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	b := startPGBReading(t, []string{"PGB_TEST_DRILL_WAIT_BEFORE_START=" + fifo}, "drill", "--repo", repo, "--scratch", scratch, "--json")
	b.until(t, "waiting on "+fifo, "it waits before its server starts")
	later := commitAt(t, c) // after pgb status looked: not in its window
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("go\n"))
	_ = f.Close()
	log, err := b.wait()
	out := &b.out
	var rep drillReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil || err != nil || !rep.OK {
		t.Fatalf("pgb drill: %v %v\n%s\n%s", err, jerr, out.String(), log)
	}
	if rep.Reached.LastCommit == nil || rep.Reached.LastCommit.Before(later.Add(-time.Millisecond)) ||
		rep.RPO.LastArchivedCommit == nil || !rep.RPO.LastArchivedCommit.Before(*rep.Reached.LastCommit) {
		t.Fatalf("the drill did not replay the commit at %s made while it ran (reached %v, last archived %v):\n%s",
			later, rep.Reached.LastCommit, rep.RPO.LastArchivedCommit, out.String())
	}
	if rep.RPO.GapSeconds == nil || *rep.RPO.GapSeconds != 0 {
		t.Fatalf("RPO gap %v, want 0:\n%s", rep.RPO.GapSeconds, out.String())
	}
	assertNoDrillLeft(t, scratch)
}
