package cmd

import (
	"strings"
	"testing"
)

// status --name of a restore point the repository does not hold answers "not
// reachable" (exit 2, as for any target that cannot be reached), not "could not read
// the repository" (1).
func TestStatusOfAnUnknownRestorePointExitsTwo(t *testing.T) {
	isolate(t)
	dir, _ := smallRepo(t, 1)
	r := pgb(t, "status", "--repo", dir, "--name", "no-such-point")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "no-such-point") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
