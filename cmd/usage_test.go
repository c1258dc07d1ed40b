package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/waltest"
)

const seg1 = "000000010000000000000001"

// pushedRepo returns a repository holding seg1 of a cluster, and that cluster's data directory.
func pushedRepo(t *testing.T) (repo, pgdata string) {
	t.Helper()
	repo, pgdata = t.TempDir(), waltest.DataDir(t, 42)
	seg := waltest.WriteWAL(t, pgdata, seg1, waltest.Segment(42, 1))
	if r := pgb(t, "wal-push", "--repo", repo, "--pgdata", pgdata, seg); r.code != 0 {
		t.Fatalf("wal-push: %+v", r)
	}
	return repo, pgdata
}

func walStored(repo string) bool {
	_, err := os.Stat(filepath.Join(repo, "wal", "0000000100000000", seg1))
	return err == nil
}

func TestFlagsBeforeTheCommandNameWork(t *testing.T) {
	isolate(t)
	repo, pgdata := pushedRepo(t)
	cfg := filepath.Join(t.TempDir(), "pgb.yaml")
	if err := os.WriteFile(cfg, []byte("repo: "+repo+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	// restore_command = 'pgb --config F wal-fetch %f %p'
	if r := pgb(t, "--config", cfg, "wal-fetch", seg1, dest); r.code != 0 {
		t.Fatalf("pgb --config F wal-fetch: %+v", r)
	}
	if _, err := os.Stat(dest); err != nil {
		t.Fatalf("wal-fetch with --config before the command wrote nothing: %v", err)
	}

	// Every setting goes before the command too, in both spellings; after wins.
	other, ignored := t.TempDir(), t.TempDir()
	seg := filepath.Join(pgdata, "pg_wal", seg1)
	if r := pgb(t, "--repo="+ignored, "--log-level", "debug", "--pgdata", pgdata, "wal-push", "--repo", other, seg); r.code != 0 {
		t.Fatalf("flags before and after: %+v", r)
	}
	if !walStored(other) || walStored(ignored) {
		t.Fatal("the flag after the command name did not win over the one before it")
	}
	// A subcommand: the flags go after it.
	if r := pgb(t, "--repo", repo, "restore-point", "list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("pgb --repo R restore-point list: %+v", r)
	}
}

func TestUsageErrorsExitAbove125WithOneLine(t *testing.T) {
	isolate(t)
	repo, pgdata := pushedRepo(t)
	seg := filepath.Join(pgdata, "pg_wal", seg1)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"wal-fecth", seg1, dest}, `unknown command "wal-fecth" (did you mean wal-fetch?)`},
		{"unknown command after flags", []string{"--repo", repo, "wal-fech", seg1, dest}, `(did you mean wal-fetch?)`},
		{"unknown flag", []string{"wal-fetch", "--rpo", repo, seg1, dest}, "unknown flag --rpo for wal-fetch (did you mean --repo?)"},
		{"unknown flag before the command", []string{"--rpo", repo, "wal-fetch", seg1, dest}, "unknown flag --rpo (did you mean --repo?)"},
		{"flag the command lacks", []string{"--pgdata", pgdata, "backup-list", "--repo", repo}, "unknown flag --pgdata for backup-list"},
		{"missing argument", []string{"wal-fetch", "--repo", repo, seg1}, "wal-fetch wants 2 argument(s): NAME DEST (got 1)"},
		{"missing value", []string{"wal-push", "--repo"}, "--repo of wal-push needs a value"},
		{"missing value before the command", []string{"--config"}, "flag --config needs a value"},
		{"no command after flags", []string{"--repo", repo}, "no command after --repo"},
		{"unknown flag of pgb itself", []string{"--repo", repo, "--help=x"}, "see pgb --help"},
		{"bad value", []string{"wal-push", "--repo", repo, "--storage-retries", "many", seg}, `--storage-retries: "many" is not a whole number`},
		{"bad boolean", []string{"backup-push", "--repo", repo, "--fast=maybe"}, `invalid boolean value "maybe" for --fast: parse error; see pgb backup-push --help`},
		{"missing config file", []string{"--config", "/nonexistent/pgb.yaml", "wal-fetch", seg1, dest}, "/nonexistent/pgb.yaml"},
		{"--trust-time without --delta", []string{"restore", "--repo", repo, "--pgdata", filepath.Join(t.TempDir(), "new"), "--trust-time"}, "--trust-time goes with --delta"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := pgb(t, c.args...)
			if r.code <= 125 {
				t.Errorf("exit %d, want above 125 (PostgreSQL takes 1..125 from restore_command for the end of the archive)", r.code)
			}
			if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "pgb: error: ") {
				t.Errorf("stderr is not one error line:\n%s", r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr %q does not say %q", r.stderr, c.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout is not empty (no help text on a usage error):\n%s", r.stdout)
			}
		})
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("a usage error wrote DEST")
	}
}

func TestUsageErrorOfWALFetchOnAStandbyStillStopsRecovery(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir) // restore_command runs in the data directory
	for _, args := range [][]string{
		{"wal-fetch", "--rpo", t.TempDir(), seg1, "pg_wal/RECOVERYXLOG"},
		{"wal-fetch", "--repo", t.TempDir(), seg1},
	} {
		if r := pgb(t, args...); r.code <= 125 {
			t.Errorf("pgb %v on a standby: exit %d, want above 125: %+v", args, r.code, r)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	names := []string{"repo", "pgdata", "config", "s3-endpoint", "log-level"}
	for _, c := range []struct{ in, want string }{
		{"rpo", "repo"}, {"repos", "repo"}, {"conifg", "config"}, {"s3-endpont", "s3-endpoint"},
		{"log", "log-level"}, {"nope", ""}, {"x", ""},
	} {
		got := didYouMean("--", c.in, names)
		if c.want == "" && got != "" || c.want != "" && got != " (did you mean --"+c.want+"?)" {
			t.Errorf("didYouMean(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// restoreDataDir is a data directory of cluster sysid made the working directory, as
// PostgreSQL runs restore_command in it.
func restoreDataDir(t *testing.T, sysid uint64) string {
	t.Helper()
	dir := waltest.DataDir(t, sysid)
	t.Chdir(dir)
	return dir
}

// A plain restore (no standby.signal in the data directory restore_command runs in)
// must stop on a repository error even when the config file's pgdata names a standby
// elsewhere on the host: exit 1 would end recovery and promote with commits missing.
func TestWALFetchDuringARestoreStopsOnARepositoryErrorWhenTheConfigNamesAStandby(t *testing.T) {
	isolate(t)
	repo, _ := pushedRepo(t)
	obj := filepath.Join(repo, "wal", "0000000100000000", seg1)
	if err := os.WriteFile(obj, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	standby := t.TempDir()
	if err := os.WriteFile(filepath.Join(standby, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "pgb.yaml")
	if err := os.WriteFile(cfg, []byte("repo: "+repo+"\npgdata: "+standby+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	restoreDataDir(t, 42)
	if r := pgb(t, "wal-fetch", "--config", cfg, seg1, "pg_wal/RECOVERYXLOG"); r.code != exitRecoveryMustStop {
		t.Fatalf("wal-fetch of a damaged object during a restore: exit %d, want %d: %+v", r.code, exitRecoveryMustStop, r)
	}
}

// A restore_command pointing at another cluster's repository must never look like the
// end of the archive: wal-fetch of a file that repository lacks exits 255 naming both
// clusters, on a standby too; in the right repository it is the end of the archive (1).
func TestWALFetchFromAnotherClustersRepositoryStopsRecovery(t *testing.T) {
	isolate(t)
	repo, _ := pushedRepo(t) // cluster 42
	const absent = "000000010000000000000002"
	dir := restoreDataDir(t, 43)
	r := pgb(t, "wal-fetch", "--repo", repo, absent, "pg_wal/RECOVERYXLOG")
	if r.code != exitRecoveryMustStop || !strings.Contains(r.stderr, "cluster 42") || !strings.Contains(r.stderr, "cluster 43") ||
		!strings.Contains(r.stderr, "wrong --repo") {
		t.Errorf("wal-fetch from another cluster's repository: exit %d, stderr %q; want 255 naming both clusters", r.code, r.stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := pgb(t, "wal-fetch", "--repo", repo, absent, "pg_wal/RECOVERYXLOG"); r.code != exitRecoveryMustStop {
		t.Errorf("on a standby: exit %d, want %d: %+v", r.code, exitRecoveryMustStop, r)
	}
	restoreDataDir(t, 42)
	if r := pgb(t, "wal-fetch", "--repo", repo, absent, "pg_wal/RECOVERYXLOG"); r.code != exitError || r.stderr != "" {
		t.Errorf("the cluster's own repository: exit %d, stderr %q; want 1 (end of the archive), silent", r.code, r.stderr)
	}
}
