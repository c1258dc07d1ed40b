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
