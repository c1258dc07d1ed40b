package cmd

import (
	"strings"
	"testing"
)

// restore --dry-run of a target beyond the archive (--target-beyond-archive) counts,
// at least, the WAL from the backup's start to the archive's end (segments 2 to 4 of
// smallRepo), and says "at least": not a recovery that replays nothing.
func TestRestoreDryRunBeyondTheArchiveEstimatesAtLeastTheArchive(t *testing.T) {
	isolate(t)
	dir, _ := smallRepo(t, 100<<20)
	r := pgb(t, "restore", "--repo", dir, "--dry-run", "--target-lsn", "0/9000000", "--target-beyond-archive")
	if r.code != 0 || !strings.Contains(r.stdout, "replay at least 32.0 MiB of WAL") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
