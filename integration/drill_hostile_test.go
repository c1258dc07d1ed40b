package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// The copy must not run the source's recovery_end_command nor archive_cleanup_command,
// which act on what the source talks to (a shared archive, an HA manager). Here recovery_end_command only touches a file outside scratch.
func TestDrillOfAClusterWithRecoveryEndAndArchiveCleanupCommandsRunsNeither(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	outside := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "outside"))
	ran := filepath.Join(outside, "recovery_end_command_ran")
	c.Exec(t, "ALTER SYSTEM SET recovery_end_command = 'touch "+ran+"'")
	c.Exec(t, "ALTER SYSTEM SET archive_cleanup_command = 'touch "+ran+".%r'")
	c.Exec(t, "SELECT pg_reload_conf()")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch)
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("the drilled copy ran the source's commands: %s exists", ents[0].Name())
	}
}

// With the source's log_error_verbosity = verbose PostgreSQL would write
// "LOG:  00000: recovery stopping ...": the copy logs as the drill reads it, and a
// drill to a transaction that was reached passes.
func TestDrillToATransactionOfAVerboseLoggingClusterPauses(t *testing.T) {
	pgtest.Require(t)
	drillToATransactionOfAClusterSetTo(t, "log_error_verbosity = 'verbose'")
}

// drillToATransactionOfAClusterSetTo drills, to the commit of a transaction, a
// cluster whose settings ALTER SYSTEM SET set: the drill must pause there and pass.
func drillToATransactionOfAClusterSetTo(t *testing.T, set string) {
	t.Helper()
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	c.Exec(t, "ALTER SYSTEM SET "+set)
	c.Exec(t, "SELECT pg_reload_conf()")
	c.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	xid := c.QueryString(t, "INSERT INTO ticks (pad) VALUES ('target') RETURNING pg_current_xact_id()::text")
	c.Exec(t, "INSERT INTO ticks (pad) VALUES ('after')")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	mustPGB(t, "", nil, "drill", "--repo", repo, "--scratch", scratch, "--target-xid", xid)
}

// A source logging to syslog, or only fatal errors, would leave no "recovery stopping"
// line in the copy's log: the copy logs to its own log file, LOG lines included.
func TestDrillToATransactionOfAClusterLoggingToSyslogOrOnlyFatalErrorsPauses(t *testing.T) {
	pgtest.Require(t)
	for _, set := range []string{"log_destination = 'syslog'", "log_min_messages = 'fatal'"} {
		t.Run(set, func(t *testing.T) { drillToATransactionOfAClusterSetTo(t, set) })
	}
}
