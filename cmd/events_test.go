package cmd

import (
	"strings"
	"testing"
)

func TestEventsRefusesBadFlagsInOneLine(t *testing.T) {
	isolate(t)
	repo := t.TempDir()
	for _, args := range [][]string{
		{"--min-rows", "0"},
		{"--since", "yesterday"},
		{"--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01T00:00:00Z"},
		{"--timeline", "0"},
	} {
		o := pgb(t, append([]string{"events", "--repo", repo}, args...)...)
		if o.code != 255 || strings.Count(strings.TrimSpace(o.stderr), "\n") != 0 {
			t.Errorf("events %v: exit %d, stderr %q: want a one-line usage error", args, o.code, o.stderr)
		}
	}
}
