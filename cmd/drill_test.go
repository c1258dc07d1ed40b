package cmd

import (
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
