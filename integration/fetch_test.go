package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

func TestWalFetchExitCodesTellPostgreSQLWhatHappened(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	seg := c.SwitchWAL(t)
	c.WaitArchived(t, seg, 30*time.Second)
	work := pgtest.TempDir(t)

	// Found: exit 0, byte-identical.
	mustPGB(t, work, nil, "wal-fetch", "--repo", repo, seg, "pg_wal_copy")
	if !sameFile(t, c.WALFile(seg), filepath.Join(work, "pg_wal_copy")) {
		t.Fatal("fetched segment differs")
	}

	// Not archived: exit 1 (end of archive), nothing written, nothing said at info level.
	dest := filepath.Join(work, "RECOVERYXLOG")
	r := pgb(t, work, nil, "wal-fetch", "--repo", repo, "0000000100000000000000FF", dest)
	if r.code != 1 || fileExists(dest) {
		t.Fatalf("missing segment: %s (dest written: %v)", r, fileExists(dest))
	}
	r = pgb(t, work, nil, "wal-fetch", "--repo", repo, "00000002.history", dest)
	if r.code != 1 || fileExists(dest) {
		t.Fatalf("missing history file: %s", r)
	}

	// Corrupt object: above 125 (PostgreSQL stops recovery), nothing written, the cause named.
	obj := filepath.Join(repo, "wal", seg[:16], seg)
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(obj, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, work, nil, "wal-fetch", "--repo", repo, seg, dest)
	if r.code <= 125 || !strings.Contains(r.stderr, "corrupt") || fileExists(dest) {
		t.Fatalf("corrupt object: %s (dest written: %v)", r, fileExists(dest))
	}
	if leftovers, _ := filepath.Glob(filepath.Join(work, ".pgb-tmp-*")); len(leftovers) > 0 {
		t.Fatalf("temp files left behind: %v", leftovers)
	}

	// The same failure on a standby: exit 1, since a standby retries by itself.
	if err := os.WriteFile(filepath.Join(work, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, work, nil, "wal-fetch", "--repo", repo, seg, dest)
	if r.code != 1 || !strings.Contains(r.stderr, "corrupt") {
		t.Fatalf("corrupt object on a standby: %s", r)
	}
	os.Remove(filepath.Join(work, "standby.signal"))

	// A repository that is not there is no "end of archive": recovery must stop.
	for name, args := range map[string][]string{
		"empty repository":   {"wal-fetch", "--repo", pgtest.TempDir(t), seg, dest},
		"missing repository": {"wal-fetch", "--repo", filepath.Join(work, "nope"), seg, dest},
		"wrong arguments":    {"wal-fetch", "--repo", repo, seg},
		"unknown flag":       {"wal-fetch", "--repo", repo, "--bogus", seg, dest},
		"bad setting":        {"wal-fetch", "--repo", repo, "--storage-retries", "0", seg, dest},
		"not a WAL name":     {"wal-fetch", "--repo", repo, "pg_control", dest},
	} {
		r := pgb(t, work, nil, args...)
		if r.code <= 125 || fileExists(dest) {
			t.Errorf("%s: want exit > 125 and nothing written, got %s", name, r)
		}
	}
	if fileExists(filepath.Join(work, "nope")) {
		t.Error("wal-fetch created the missing repository directory")
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestCorruptSegmentStopsRecoveryInsteadOfPromoting is the reason for wal-fetch's
// exit codes: with a damaged segment in the archive, PostgreSQL must stop, not end
// recovery early and come up promoted with committed transactions missing.
func TestCorruptSegmentStopsRecoveryInsteadOfPromoting(t *testing.T) {
	pgtest.RequireParallel(t)
	bin := pgtest.BuildPGB(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE t (v int)")
	backup := filepath.Join(pgtest.TempDir(t), "backup")
	if out, err := src.Command(t, "pg_basebackup", "-D", backup, "-X", "none", "-c", "fast", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	src.Exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
	damaged := src.SwitchWAL(t)
	src.Exec(t, "INSERT INTO t SELECT generate_series(1001, 2000)")
	last := src.SwitchWAL(t)
	src.WaitArchived(t, last, 30*time.Second)
	src.Stop(t)

	obj := filepath.Join(repo, "wal", damaged[:16], damaged)
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0x10
	if err := os.WriteFile(obj, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(backup, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := startRecoveryThatMustStop(t, backup, bin+" wal-fetch --repo "+repo+" %f %p")
	log := dst.LogTail(60)
	if !strings.Contains(log, "corrupt") || !strings.Contains(log, damaged) {
		t.Fatalf("the server log does not name the corrupt segment:\n%s", log)
	}
	if fileExists(filepath.Join(backup, "recovery.signal")) == false {
		t.Fatal("recovery.signal is gone: recovery ended instead of stopping")
	}
}
