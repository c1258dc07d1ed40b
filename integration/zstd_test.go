package integration

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// zstd end to end, with streams longer than its windows: parts of 64 MiB (8 MiB window:
// the encoder's history moves down many times within a part) and 16 MiB WAL segments
// (1 MiB window), shipped by the look-ahead archiver, whose encoders are reused from one
// segment to the next. Every byte restored is checked by pgb; the data by PostgreSQL.
func TestZstdBackupAndWALRestoreWhatWasWritten(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo, "--compression", "zstd")
	if out, err := src.Command(t, "pgbench", "-i", "-q", "-s", "6").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--compression", "zstd", "--part-size", "64MiB", "--fast")
	// WAL after the backup, so that the restore replays zstd segments.
	if out, err := src.Command(t, "pgbench", "-n", "-c", "2", "-t", "300").CombinedOutput(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	want := src.QueryString(t, "SELECT count(*) || '/' || sum(abalance) || '/' || (SELECT count(*) FROM pgbench_history) FROM pgbench_accounts")
	src.WaitArchived(t, src.SwitchWAL(t), 60*time.Second)

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryString(t, "SELECT count(*) || '/' || sum(abalance) || '/' || (SELECT count(*) FROM pgbench_history) FROM pgbench_accounts"); got != want {
		t.Fatalf("restored accounts/balance/history = %s, source has %s", got, want)
	}
	if out, err := c.Command(t, "psql", "-XAtc", "CREATE EXTENSION amcheck; SELECT bt_index_check('pgbench_accounts_pkey', true)").CombinedOutput(); err != nil {
		t.Fatalf("amcheck on the restored index: %v\n%s", err, out)
	}
}
