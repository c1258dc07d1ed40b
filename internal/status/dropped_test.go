package status

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// A user runs pgb status after wal-push-queue-max dropped segment 7: the window is
// cut there with the cause, the gap says DROPPED with when and why, a warning says a
// restore cannot cross it, and --json carries the same.
func TestStatusShowsDroppedWALWithItsCause(t *testing.T) {
	rp := fixture(t)
	dropped := t0.Add(7 * time.Minute)
	if _, err := rp.PutGap(context.Background(), repo.GapRecord{Timeline: 1, First: "000000010000000000000007", Last: "000000010000000000000007",
		SegmentSize: segSize, Segments: 1, Reason: repo.GapReasonQueueMax, DroppedFrom: dropped, DroppedTo: dropped,
		BacklogBytes: 5 << 30, LimitBytes: 4 << 30, Host: "db1"}); err != nil {
		t.Fatal(err)
	}
	r, err := Gather(context.Background(), rp, Options{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cause := "WAL dropped by wal-push-queue-max on 2026-12-01T10:07:00Z (host db1; archiver backlog 5 GiB over the 4 GiB limit)"
	if len(r.Windows) != 2 || r.Windows[0].CutCause != cause || len(r.Gaps) != 1 || !r.Gaps[0].Dropped || r.Gaps[0].Cause != cause {
		t.Fatalf("windows %+v gaps %+v", r.Windows, r.Gaps)
	}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, w := range []string{"CUT by DROPPED WAL after 000000010000000000000006", "DROPPED 000000010000000000000007",
		"WAL dropped by wal-push-queue-max on 2026-12-01T10:07:00Z", "WARNING: WAL was dropped (wal-push-queue-max)"} {
		if !strings.Contains(text, w) {
			t.Errorf("no %q in\n%s", w, text)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"dropped":true`, `"cause":"WAL dropped by wal-push-queue-max`, `"cut_cause":"WAL dropped`} {
		if !bytes.Contains(js, []byte(w)) {
			t.Errorf("no %s in %s", w, js)
		}
	}
}

// Run in the data directory, status shows the archiver's backlog and the drops not
// yet recorded in the repository, with a warning.
func TestStatusShowsTheArchiverBacklogAndUnrecordedDrops(t *testing.T) {
	rp := fixture(t)
	d := t.TempDir()
	for _, p := range []string{"global", "pg_wal/archive_status", "pg_wal/pgb/dropped"} {
		if err := os.MkdirAll(filepath.Join(d, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ctl, err := os.ReadFile("../pg/testdata/pg_control_15")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"global/pg_control":                                    string(ctl),
		"pg_wal/00000001000000000000000A":                      strings.Repeat("x", 1000),
		"pg_wal/00000001000000000000000B":                      strings.Repeat("x", 24),
		"pg_wal/archive_status/00000001000000000000000A.ready": "",
		"pg_wal/archive_status/00000001000000000000000B.ready": "",
		"pg_wal/pgb/dropped/000000010000000000000007.json":     `{"format":1,"segment":"000000010000000000000007","segment_size":16777216,"dropped":"2026-12-01T10:07:00Z"}`,
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(d, p), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Gather(context.Background(), rp, Options{Now: time.Now(), DataDir: d})
	if err != nil {
		t.Fatal(err)
	}
	a := r.Archiver
	if a == nil || a.Files != 2 || a.Bytes != 1024 || a.Oldest != "00000001000000000000000A" || len(a.PendingDrops) != 1 {
		t.Fatalf("archiver %+v, warnings %q", a, r.Warnings)
	}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Archiver:    2 files (1.0 KiB) waiting in pg_wal", "oldest 00000001000000000000000A",
		"1 DROPPED segments not yet recorded in the repository", "WARNING: 1 WAL segments were dropped by wal-push-queue-max"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("no %q in\n%s", w, b.String())
		}
	}
}
