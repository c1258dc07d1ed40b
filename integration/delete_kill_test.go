package integration

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// startPGB starts pgb in the background; wait returns its result once it exits.
func startPGB(t *testing.T, env []string, args ...string) (cmd *exec.Cmd, wait func() result) {
	t.Helper()
	cmd = exec.Command(pgtest.BuildPGB(t), args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd, func() result {
		<-done
		return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	}
}

// A delete that runs while backup-push --permanent is marking its new backup finds
// the backup lock still held: the mark is written before the lock is released, so no
// policy can take the just-taken backup in between.
func TestDeleteWhileBackupPushPermanentMarksItsBackupIsRefused(t *testing.T) {
	pgtest.Require(t)
	sel, _, proxy := s3RepoCounted(t, "")
	s := &scenario{sel: sel}
	s.src = archivingClusterWith(t, s.sel)
	s.backup(t)
	// The upload of the permanent mark is held until the test has tried its delete.
	held := proxy.holdRequests(func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/permanent")
	})
	_, wait := startPGB(t, s.src.Env(), s.cmd("backup-push", "--fast", "--permanent")...)
	select {
	case <-held.arrived:
	case <-time.After(5 * time.Minute):
		t.Fatalf("backup-push never wrote its permanent mark: %s", wait())
	}
	del := pgb(t, "", nil, s.cmd("delete", "--retain-full", "1", "--confirm")...)
	held.release()
	push := wait()
	if push.code != 0 {
		t.Fatalf("backup-push --permanent: %s", push)
	}
	if del.code == 0 || !strings.Contains(del.stderr, "another backup is running") {
		t.Fatalf("delete while backup-push --permanent was marking its backup: %s", del)
	}
	if got := deleteTestBackups(t, s); len(got) != 2 {
		t.Fatalf("backups %v, want both", got)
	}
}
