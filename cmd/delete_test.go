package cmd

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/wal"
)

// threeBackups stores backups b1, b2, b3 (a day apart, one segment each) in a
// filesystem repository.
func threeBackups(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st, repo.Options{})
	defer func() { _ = r.Close() }()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	for i, name := range []string{"b1", "b2", "b3"} {
		lsn := wal.LSN(uint64(2+3*i) << 24)
		s := repo.Summary{Name: name, Timeline: 1, WALSegSize: 16 << 20, StartLSN: lsn + 0x28, StopLSN: lsn + 0x100,
			StartWAL: wal.SegmentFileName(1, uint64(2+3*i), 16<<20), StopWAL: wal.SegmentFileName(1, uint64(2+3*i), 16<<20),
			StartTime: t0.Add(time.Duration(i) * 24 * time.Hour), StopTime: t0.Add(time.Duration(i)*24*time.Hour + time.Minute)}
		if err := r.PutBackup(ctx, &repo.Manifest{Summary: s}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func backupsIn(t *testing.T, dir string) string {
	t.Helper()
	r := pgb(t, "backup-list", "--repo", dir)
	if r.code != 0 {
		t.Fatalf("backup-list: %+v", r)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		names = append(names, strings.Fields(l)[0])
	}
	return strings.Join(names, " ")
}

func TestDeleteWithoutAPolicyIsAUsageError(t *testing.T) {
	isolate(t)
	dir := threeBackups(t)
	r := pgb(t, "delete", "--repo", dir, "--confirm")
	if r.code != exitUsage || !strings.Contains(r.stderr, "no retention policy given") {
		t.Fatalf("delete without a policy: %+v", r)
	}
	if got := backupsIn(t, dir); got != "b1 b2 b3" {
		t.Fatalf("backups %q", got)
	}
}

func TestMarkedPermanentBackupSurvivesDelete(t *testing.T) {
	isolate(t)
	dir := threeBackups(t)
	if r := pgb(t, "backup-mark", "--repo", dir, "b1"); r.code != exitUsage {
		t.Fatalf("backup-mark without --permanent or --no-permanent: %+v", r)
	}
	if r := pgb(t, "backup-mark", "--repo", dir, "--permanent", "nope"); r.code != exitError || !strings.Contains(r.stderr, `no such backup "nope"`) {
		t.Fatalf("backup-mark of a missing backup: %+v", r)
	}
	if r := pgb(t, "backup-mark", "--repo", dir, "--permanent", "b1"); r.code != 0 {
		t.Fatalf("backup-mark: %+v", r)
	}
	r := pgb(t, "delete", "--repo", dir, "--retain-full", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "would delete backup b2") || strings.Contains(r.stdout, "backup b1") ||
		!strings.Contains(r.stdout, "2 kept (1 permanent)") || !strings.Contains(r.stdout, "dry run") {
		t.Fatalf("dry run: %+v", r)
	}
	if r := pgb(t, "delete", "--repo", dir, "--retain-full", "1", "--confirm"); r.code != 0 {
		t.Fatalf("delete --confirm: %+v", r)
	}
	if got := backupsIn(t, dir); got != "b1 b3" {
		t.Fatalf("backups after delete %q, want b1 b3", got)
	}
	if r := pgb(t, "backup-mark", "--repo", dir, "--no-permanent", "b1"); r.code != 0 {
		t.Fatalf("backup-mark --no-permanent: %+v", r)
	}
	if r := pgb(t, "delete", "--repo", dir, "--before", "b3", "--confirm"); r.code != 0 {
		t.Fatalf("delete --before b3: %+v", r)
	}
	if got := backupsIn(t, dir); got != "b3" {
		t.Fatalf("backups after delete --before b3 %q", got)
	}
}

func TestDeleteBeforeATimeStamp(t *testing.T) {
	isolate(t)
	dir := threeBackups(t)
	if r := pgb(t, "delete", "--repo", dir, "--before", "2026-11-02T00:00:00Z", "--confirm"); r.code != 0 {
		t.Fatalf("delete --before: %+v", r)
	}
	if got := backupsIn(t, dir); got != "b2 b3" {
		t.Fatalf("backups %q, want b2 b3", got)
	}
}

// deleteDoc is the part of pgb delete --json that the test reads.
type deleteDoc struct {
	DryRun  bool `json:"dry_run"`
	Deleted bool `json:"deleted"`
	Backups []struct {
		Name       string `json:"name"`
		StopLSN    string `json:"stop_lsn"`
		StoredSize int64  `json:"stored_size"`
	} `json:"backups"`
	Kept []struct {
		Name      string `json:"name"`
		Permanent bool   `json:"permanent"`
	} `json:"kept"`
	Unfinished    []any `json:"unfinished"`
	RestorePoints []any `json:"restore_points"`
	WAL           struct {
		Count int    `json:"count"`
		Bytes int64  `json:"bytes"`
		First string `json:"first"`
		Last  string `json:"last"`
	} `json:"wal"`
	BytesFreed int64 `json:"bytes_freed"`
	Window     *struct {
		FromBackup string    `json:"from_backup"`
		FromTime   time.Time `json:"from_time"`
		FromLSN    string    `json:"from_lsn"`
		Timeline   uint32    `json:"timeline"`
	} `json:"window"`
}

// A monitoring script reads the plan, and then what was deleted, as JSON.
func TestDeleteJSONSaysWhatWouldBeAndWhatWasDeleted(t *testing.T) {
	isolate(t)
	dir := threeBackups(t)
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st, repo.Options{})
	for n := uint64(2); n <= 9; n++ {
		f, err := wal.Parse(wal.SegmentFileName(1, n, 16<<20))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.PutWAL(context.Background(), f, strings.NewReader("wal"), 3); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.Close()
	for _, confirm := range []bool{false, true} {
		args := []string{"delete", "--repo", dir, "--retain-full", "2", "--json"}
		if confirm {
			args = append(args, "--confirm")
		}
		res := pgb(t, args...)
		if res.code != 0 {
			t.Fatalf("%v: %+v", args, res)
		}
		var doc deleteDoc
		if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
			t.Fatalf("%v: not one JSON document: %v\n%s", args, err, res.stdout)
		}
		if doc.DryRun == confirm || doc.Deleted != confirm || len(doc.Backups) != 1 || doc.Backups[0].Name != "b1" ||
			doc.Backups[0].StopLSN != "0/2000100" || len(doc.Kept) != 2 || doc.Kept[0].Name != "b2" ||
			doc.Unfinished == nil || doc.RestorePoints == nil {
			t.Fatalf("%v: %s", args, res.stdout)
		}
		if doc.WAL.Count != 3 || doc.WAL.First != "000000010000000000000002" || doc.WAL.Last != "000000010000000000000004" ||
			doc.WAL.Bytes <= 0 || doc.BytesFreed != doc.WAL.Bytes+doc.Backups[0].StoredSize {
			t.Fatalf("%v: WAL and bytes: %s", args, res.stdout)
		}
		if w := doc.Window; w == nil || w.FromBackup != "b2" || w.FromLSN != "0/5000100" || w.Timeline != 1 ||
			!w.FromTime.Equal(time.Date(2026, 11, 2, 3, 1, 0, 0, time.UTC)) {
			t.Fatalf("%v: window: %s", args, res.stdout)
		}
	}
	if got := backupsIn(t, dir); got != "b2 b3" {
		t.Fatalf("backups after delete --json --confirm %q", got)
	}
	if res := pgb(t, "delete", "--repo", dir, "--garbage", "--json"); res.code != exitUsage {
		t.Fatalf("delete --garbage --json: %+v", res)
	}
}
