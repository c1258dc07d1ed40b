package cmd

import (
	"strings"
	"testing"
)

// Mistakes in how pgb extract is called are one line each, exit 255, before anything
// is read.
func TestExtractUsageMistakesSayWhatToDo(t *testing.T) {
	isolate(t)
	repo := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--table", "orders", "--into", "dbname=x"}, "no default"},
		{[]string{"--table", "orders", "--before-event", "751"}, "--into DSN"},
		{[]string{"--before-event", "751", "--into", "dbname=x"}, "--table"},
		{[]string{"--table", "orders", "--before-event", "x", "--into", "dbname=x"}, "not a transaction id"},
		{[]string{"--table", "orders", "--before-event", "2", "--into", "dbname=x"}, "not a transaction id"},
		{[]string{"--table", "orders", "--before-event", "751", "--target-exclusive", "--into", "dbname=x"}, "leave out --target-exclusive"},
		{[]string{"--table", "orders", "--before-event", "751", "--target-lsn", "0/3000000", "--into", "dbname=x"}, "give one of"},
		{[]string{"--table", `pub"lic.x`, "--before-event", "751", "--into", "dbname=x"}, "--table"},
		{[]string{"--table", "a", "--table", "b", "--rename-to", "c", "--before-event", "751", "--into", "dbname=x"}, "single --table"},
	} {
		r := pgb(t, append([]string{"extract", "--repo", repo}, c.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("pgb extract %v: exit %d, stderr %q; want 255 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// The xid pgb events prints is taken as is, in its 32-bit form and in the 64-bit one,
// and a comma inside a quoted table name is no separator: the usage checks pass and the
// extract goes on to the repository (an empty one here).
func TestExtractTakesTheXidPgbEventsPrints(t *testing.T) {
	isolate(t)
	repo := t.TempDir()
	for _, xid := range []string{"751", "4294968047"} {
		r := pgb(t, "extract", "--repo", repo, "--table", `public."a,b"`, "--before-event", xid, "--dump", t.TempDir()+"/d.sql")
		if r.code != exitError || !strings.Contains(r.stderr, "no backups") {
			t.Errorf("--before-event %s: exit %d, stderr %q", xid, r.code, r.stderr)
		}
	}
}
