package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// TestMistypedRestoreCommandStopsRecoveryInsteadOfPromoting: a usage mistake in
// restore_command (here a mistyped flag) must stop recovery. PostgreSQL takes an exit
// code of 1..125 for "not in the archive": the server would end recovery at the end of
// the backup's own WAL and promote, with every row committed after the backup missing.
// Fixed (the flag before the command name, which pgb accepts), the same directory
// recovers every row.
func TestMistypedRestoreCommandStopsRecoveryInsteadOfPromoting(t *testing.T) {
	pgtest.Require(t)
	bin := pgtest.BuildPGB(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE t (v int)")
	backup := filepath.Join(pgtest.TempDir(t), "backup")
	// The backup holds its own WAL: it reaches consistency without the archive, so
	// only restore_command's exit code decides whether it promotes early.
	if out, err := src.Command(t, "pg_basebackup", "-D", backup, "-X", "fetch", "-c", "fast", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	src.Exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)
	src.Stop(t)
	if err := os.WriteFile(filepath.Join(backup, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ restoreCommand, says string }{
		{bin + " wal-fecth --repo " + repo + " %f %p", `unknown command "wal-fecth" (did you mean wal-fetch?)`},
		{bin + " --rpo " + repo + " wal-fetch %f %p", "unknown flag --rpo (did you mean --repo?)"},
	} {
		mustStopRecovery(t, backup, c.restoreCommand, c.says)
	}

	fixed := pgtest.OpenDataDir(t, backup, pgtest.Options{
		RestoreCommand: bin + " --repo " + repo + " wal-fetch %f %p",
		Conf:           []string{"archive_mode = off"},
	})
	fixed.Start(t)
	fixed.WaitRecoveryDone(t, 60*time.Second)
	if n := fixed.QueryInt(t, "SELECT count(*) FROM t"); n != 1000 {
		t.Fatalf("after fixing restore_command: %d of 1000 rows", n)
	}
}

// mustStopRecovery starts PostgreSQL on the data directory dir, set up for recovery with
// restoreCommand, and fails the test unless recovery stops (FATAL, the server exits,
// recovery.signal stays) with the server log showing says.
func mustStopRecovery(t *testing.T, dir, restoreCommand, says string) {
	t.Helper()
	dst := startRecoveryThatMustStop(t, dir, restoreCommand)
	log := dst.LogTail(60)
	if !strings.Contains(log, says) || !strings.Contains(log, "FATAL") {
		t.Fatalf("restore_command = '%s': the server log does not show the usage mistake (%q) stopping recovery:\n%s", restoreCommand, says, log)
	}
	if !fileExists(filepath.Join(dir, "recovery.signal")) {
		t.Fatal("recovery.signal is gone: recovery ended instead of stopping")
	}
}

// endOfRecovery is a recovery_end_command that makes the end of recovery observable:
// PostgreSQL runs it when recovery ends (before it would come up promoted) and, as
// the command exits above 125, stops with a FATAL error naming it instead.
const endOfRecovery = "exit 200"

// startRecoveryThatMustStop runs PostgreSQL for archive recovery on dir with
// restoreCommand until the server exits, and fails the test unless it exits with
// recovery stopped: a server that ends recovery (it would promote) runs
// recovery_end_command and exits naming it. The server runs as a child of the test,
// which waits for its exit; the timeout is only a safety net against a hang.
func startRecoveryThatMustStop(t *testing.T, dir, restoreCommand string) *pgtest.Cluster {
	t.Helper()
	dst := pgtest.OpenDataDir(t, dir, pgtest.Options{
		RestoreCommand: restoreCommand,
		Conf:           []string{"archive_mode = off", "recovery_end_command = '" + endOfRecovery + "'"},
	})
	err := dst.RunUntilExit(5 * time.Minute)
	if errors.Is(err, pgtest.ErrStillRunning) {
		t.Fatalf("restore_command = '%s': the server neither stopped nor ended recovery:\n%s", restoreCommand, dst.LogTail(40))
	}
	if log := dst.LogTail(60); err == nil || strings.Contains(log, `recovery_end_command "`+endOfRecovery+`"`) {
		t.Fatalf("restore_command = '%s': PostgreSQL ended recovery (it would have promoted with committed rows missing):\n%s",
			restoreCommand, log)
	}
	return dst
}
