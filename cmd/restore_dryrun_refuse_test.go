package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// restore --dry-run refuses what the real restore refuses: a relative
// --tablespace-map, an --owner this host does not have (as root) or --owner at all
// (not root).
func TestRestoreDryRunRefusesWhatRestoreRefuses(t *testing.T) {
	isolate(t)
	dir, _ := smallRepo(t, 100<<20)
	cases := [][]string{{"--tablespace-map", "relative=also-relative"}}
	if os.Geteuid() == 0 {
		cases = append(cases, []string{"--owner", "no-such-user-here"})
	} else {
		cases = append(cases, []string{"--owner", "postgres"})
	}
	for _, extra := range cases {
		pgdata := filepath.Join(t.TempDir(), "pgdata")
		base := append([]string{"restore", "--repo", dir, "--pgdata", pgdata, "--target-lsn", "0/3001000"}, extra...)
		real := pgb(t, base...)
		dry := pgb(t, append(base, "--dry-run")...)
		if real.code == 0 || dry.code != real.code {
			t.Errorf("%v: restore exit %d (%s), --dry-run exit %d (%s%s)", extra, real.code, strings.TrimSpace(real.stderr), dry.code,
				strings.TrimSpace(dry.stdout), strings.TrimSpace(dry.stderr))
		}
	}
}
