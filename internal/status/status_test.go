package status

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

const segSize = 16 << 20

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// fixture: segments 2..6 and 8..9 of timeline 1 (7 is missing), each with one commit
// at t0 + n minutes; backups at segments 2 (permanent) and 8.
func fixture(t *testing.T) *repo.Repo {
	t.Helper()
	ctx := context.Background()
	rp := repo.New(mem.New(), repo.Options{})
	for _, n := range []uint64{2, 3, 4, 5, 6, 8, 9} {
		f, err := wal.Parse(wal.SegmentFileName(1, n, segSize))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.PutWAL(ctx, f, strings.NewReader("wal"), 3); err != nil {
			t.Fatal(err)
		}
		start := wal.LSN(n * segSize)
		c := &walsum.Commit{Xid: uint32(100 * n), Time: t0.Add(time.Duration(n) * time.Minute), LSN: start + 0x1000}
		js, err := walsum.Encode(&walsum.Summary{Version: walsum.Version, Segment: f.Name, SegSize: segSize, SystemID: 7440292914373421110, Records: 2,
			FirstLSN: start + 0x28, LastLSN: start + 0x2000, EndLSN: start + 0x2100, Commits: 1, FirstCommit: c, LastCommit: c, MinXid: c.Xid, MaxXid: c.Xid})
		if err != nil {
			t.Fatal(err)
		}
		if err := rp.PutWALSummary(ctx, f, js); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []struct {
		name string
		seg  uint64
	}{{"20261201T100200Z", 2}, {"20261201T100800Z", 8}} {
		start := wal.LSN(b.seg * segSize)
		m := &repo.Manifest{Summary: repo.Summary{Name: b.name, Timeline: 1, StartLSN: start + 0x28, StopLSN: start + 0x800,
			StartTime: t0.Add(time.Duration(b.seg) * time.Minute), StopTime: t0.Add(time.Duration(b.seg)*time.Minute + time.Second),
			NextXID: 100*b.seg + 1, WALSegSize: segSize}}
		if err := rp.PutBackup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := rp.MarkPermanent(ctx, "20261201T100200Z", t0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []repo.RestorePoint{
		{Name: "in-first-window", LSN: 4*segSize + 0x100, Timeline: 1, Time: t0.Add(4 * time.Minute)},
		{Name: "in-the-gap", LSN: 7*segSize + 0x100, Timeline: 1, Time: t0.Add(7 * time.Minute)},
	} {
		if err := rp.PutRestorePoint(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return rp
}

func TestStatusReport(t *testing.T) {
	rp := fixture(t)
	r, err := Gather(context.Background(), rp, Options{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Windows) != 2 || !r.Windows[0].CutByGap || r.Windows[0].LastCommit.Xid != 600 || r.Windows[1].LastCommit.Xid != 900 {
		t.Fatalf("windows %+v", r.Windows)
	}
	if len(r.Gaps) != 1 || r.Gaps[0].From != "000000010000000000000007" {
		t.Fatalf("gaps %+v", r.Gaps)
	}
	if len(r.Backups) != 2 || !r.Backups[0].Permanent || r.Backups[1].Permanent || !r.Backups[0].Usable {
		t.Fatalf("backups %+v", r.Backups)
	}
	if len(r.RestorePoints) != 2 || !r.RestorePoints[0].Reachable || r.RestorePoints[1].Reachable {
		t.Fatalf("restore points %+v: want the one in the gap unreachable", r.RestorePoints)
	}
	if r.NewestWAL == nil || r.NewestWAL.Segment != "000000010000000000000009" {
		t.Fatalf("newest %+v", r.NewestWAL)
	}
	// Only the summaries each window needs: its last segment (which has a commit).
	if r.Summaries.Read != 2 || r.Summaries.Computed != 0 {
		t.Fatalf("summaries %+v", r.Summaries)
	}
	var out bytes.Buffer
	if err := r.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("wider than 80 columns: %q", line)
		}
	}
	for _, want := range []string{"Recoverable window", "CUT by missing WAL after 000000010000000000000006", "after a gap, a new window",
		"missing 000000010000000000000007", "permanent"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"windows":[{"from_backup":"20261201T100200Z"`, `"last_commit":{"xid":600,"lsn":"0/6001000","time":"2026-12-01T10:06:00Z"}`,
		`"gaps":[{"from":"000000010000000000000007"`, `"permanent":true`, `"age_seconds":`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("JSON lacks %s:\n%s", key, js)
		}
	}
}

func TestStatusTarget(t *testing.T) {
	rp := fixture(t)
	for _, tc := range []struct {
		at        time.Time
		reachable bool
		backup    string
		reason    string
	}{
		{t0.Add(4 * time.Minute), true, "20261201T100200Z", ""},
		{t0.Add(7 * time.Minute), false, "", "gap"},
		{t0.Add(8*time.Minute + 30*time.Second), true, "20261201T100800Z", ""},
		{t0.Add(time.Minute), false, "", "before the end of the oldest usable backup"},
		{t0.Add(10 * time.Minute), false, "", "after the last archived commit"},
	} {
		r, err := Gather(context.Background(), rp, Options{Now: t0.Add(time.Hour), Target: &restore.Target{Kind: restore.ToTime, Time: tc.at, Timeline: "latest"}})
		if err != nil {
			t.Fatal(err)
		}
		v := r.Target
		if v.Reachable != tc.reachable || v.Backup != tc.backup || !strings.Contains(v.Reason, tc.reason) {
			t.Errorf("at %s: %+v", tc.at.Format(time.RFC3339), v)
		}
		if !v.Reachable && len(v.Nearest) == 0 {
			t.Errorf("at %s: no nearest points", tc.at)
		}
	}
}
