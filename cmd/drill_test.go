package cmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A drill that cannot choose a backup says why in one line on stderr, prints no
// half-empty report, exits 1, and leaves no scratch directory.
func TestDrillOfAnEmptyRepositorySaysSoInOneLine(t *testing.T) {
	isolate(t)
	dir, scratch := t.TempDir(), filepath.Join(t.TempDir(), "scratch")
	r := pgb(t, "drill", "--repo", dir, "--scratch", scratch)
	if r.code != exitError || r.stdout != "" || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "no backups") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Fatalf("scratch dir left: %v", err)
	}
}

// A drill that could not run (no backup in a repository that pgb archives into) is
// recorded as failed, and its --prom file says success 0: that is when monitoring
// needs it.
func TestDrillThatCouldNotRunIsRecordedAndItsPromFileSaysFailed(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	prom := filepath.Join(t.TempDir(), "pgb_drill.prom")
	dir, rp := fsRepo(t, true)
	r := pgb(t, "drill", "--repo", dir, "--prom", prom)
	if r.code != exitError || !strings.Contains(r.stderr, "no backups") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	d, err := rp.RecentDrills(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Last == nil || d.Last.OK || !strings.Contains(d.Last.Error, "no backups") || d.LastSuccess() != nil || d.Last.Version != "test" {
		t.Fatalf("record %+v", d.Last)
	}
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\npgb_drill_success{repo=\"file://" + dir + "\"} 0\n", "\npgb_drill_last_success_timestamp_seconds{repo=\"file://" + dir + "\"} 0\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("prom file lacks %q:\n%s", want, b)
		}
	}
}

// A drill whose record cannot be written says so, and fails: never a silent exit.
func TestDrillWhoseRecordCannotBeWrittenSaysSo(t *testing.T) {
	isolate(t)
	dir, _ := fsRepo(t, true)
	// drills/ cannot be a directory: every record write fails.
	if err := os.WriteFile(filepath.Join(dir, "drills"), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := pgb(t, "drill", "--repo", dir)
	if r.code != exitError || !strings.Contains(r.stderr, "no backups") || !strings.Contains(r.stderr, "was not recorded in the repository") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// The drill takes the targets restore takes: --target-xid, --target-exclusive and
// --target-timeline, checked as restore checks them.
func TestDrillTakesRestoresTargetFlags(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	r := pgb(t, "drill", "--repo", dir, "--scratch", filepath.Join(t.TempDir(), "s"), "--target-xid", "750", "--target-exclusive", "--target-timeline", "1")
	if r.code != exitError || !strings.Contains(r.stderr, "no backups") {
		t.Fatalf("a drill to an xid of an empty repository: exit %d, stderr %q; want exit 1, no backups", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"--target-xid", "seven"},
		{"--target-xid", "750", "--target", "before-upgrade"},
		{"--target", "before-upgrade", "--target-exclusive"},
		{"--target-exclusive"},
		{"--target-timeline", "newest"},
	} {
		r := pgb(t, append([]string{"drill", "--repo", dir}, args...)...)
		if r.code != exitUsage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("pgb drill %v: exit %d, stderr %q; want a one-line usage error", args, r.code, r.stderr)
		}
	}
}
