package integration

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// startPGB starts pgb in the background: done is closed when it exits, and wait
// returns its result then.
func startPGB(t *testing.T, env []string, args ...string) (done <-chan struct{}, wait func() result) {
	t.Helper()
	cmd := exec.Command(pgtest.BuildPGB(t), args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return exited, func() result {
		<-exited
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
	exited, wait := startPGB(t, s.src.Env(), s.cmd("backup-push", "--fast", "--permanent")...)
	select {
	case <-held.arrived:
	case <-exited:
		t.Fatalf("backup-push ended without writing its permanent mark: %s", wait())
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

// killDeleteWhenItHangs runs pgb delete with the test hook that makes it hang after
// n deletions of keys under prefix, waits for the line that says it hangs, and kills
// it with SIGKILL: the delete cannot finish before the kill, nor be killed elsewhere.
func killDeleteWhenItHangs(t *testing.T, s *scenario, prefix string, n int, policy ...string) {
	t.Helper()
	cmd := exec.Command(pgtest.BuildPGB(t), s.cmd("delete", append(policy, "--confirm")...)...)
	cmd.Env = append(cleanEnv(), "PGB_TEST_DELETE_HANG_AFTER="+strconv.Itoa(n), "PGB_TEST_DELETE_HANG_PREFIX="+prefix)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	hanging := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), "PGB_TEST_DELETE_HANG_AFTER: hanging before deleting "+prefix) {
			hanging = true
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, stderr)
	_ = cmd.Wait()
	if !hanging {
		t.Fatalf("pgb delete ended before it hung after %d deletions under %q (exit %v):\n%s\n%s", n, prefix, cmd.ProcessState, stdout.String(), strings.Join(seen, "\n"))
	}
	if cmd.ProcessState.Success() {
		t.Fatal("pgb delete finished although it was killed")
	}
	t.Logf("killed pgb delete: %s", seen[len(seen)-1])
}

// TestKilledDeleteLeavesARepositoryThatWorksAndARerunFinishes: a user's cron job runs
// pgb delete --retain-full 1 --confirm and the machine kills it (SIGKILL), once in the
// middle of deleting the oldest backup and once in the middle of deleting WAL. Each
// time backup-list offers only complete backups, verify passes and a restore works;
// running the same delete again finishes the job: exactly the newest backup and the
// WAL from its start on remain.
func TestKilledDeleteLeavesARepositoryThatWorksAndARerunFinishes(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	killedDeleteOn(t, repo, []string{"--repo", repo})
}

// The same on S3 (versitygw), where parts and WAL go in DeleteObjects batches.
func TestKilledDeleteOnS3LeavesARepositoryThatWorksAndARerunFinishes(t *testing.T) {
	pgtest.Require(t)
	sel, _ := s3Repo(t, 0, "")
	killedDeleteOn(t, "", sel)
}

func killedDeleteOn(t *testing.T, repo string, sel []string) {
	t.Helper()
	s := &scenario{repo: repo, sel: sel}
	s.src = archivingClusterWith(t, s.sel)
	s.src.Exec(t, "CREATE TABLE ticks (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)")
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ { // WAL between the backups: several segments to delete
			s.tick(t, 5)
			s.src.WaitArchived(t, s.src.SwitchWAL(t), 30*time.Second)
		}
		s.backup(t)
	}
	s.tick(t, 5)
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 30*time.Second)
	want := s.src.QueryInt(t, "SELECT count(*) FROM ticks")
	before := deleteTestBackups(t, s)
	if len(before) != 3 {
		t.Fatalf("backups %v, want 3", before)
	}
	var files []string
	if repo != "" {
		files = repoFiles(t, repo)
	}
	policy := []string{"--retain-full", "1"}

	// Killed after the oldest backup's manifest and one more of its objects.
	killDeleteWhenItHangs(t, s, "backups/", 2, policy...)
	if got := deleteTestBackups(t, s); !reflect.DeepEqual(got, before[1:]) {
		t.Fatalf("backups after a delete killed in the oldest backup: %v, want %v", got, before[1:])
	}
	if r := pgb(t, "", nil, s.cmd("verify", "--wal")...); r.code != 0 {
		t.Fatalf("verify after a killed delete: %s", r)
	}
	dry := mustPGB(t, "", nil, s.cmd("delete", policy...)...)
	if !strings.Contains(dry.stdout, "would delete what is left of backup "+before[0].Name) {
		t.Fatalf("the dry run does not offer to finish the killed delete: %s", dry)
	}
	c := s.restore(t, "--target-action", "promote")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != want {
		t.Fatalf("rows restored after a killed delete = %d, want %d", got, want)
	}
	c.Stop(t)

	// Killed again, after two WAL files: the backups are gone, WAL half deleted.
	killDeleteWhenItHangs(t, s, "wal/", 2, policy...)
	if got := deleteTestBackups(t, s); !reflect.DeepEqual(got, before[2:]) {
		t.Fatalf("backups after a delete killed in the WAL: %v, want %v", got, before[2:])
	}
	if r := pgb(t, "", nil, s.cmd("verify", "--wal")...); r.code != 0 {
		t.Fatalf("verify after a delete killed in the WAL: %s", r)
	}

	// The rerun finishes the job, and nothing is left to delete.
	mustPGB(t, "", nil, s.cmd("delete", append(policy, "--confirm")...)...)
	if got := deleteTestBackups(t, s); !reflect.DeepEqual(got, before[2:]) {
		t.Fatalf("backups after the rerun: %v, want %v", got, before[2:])
	}
	again := mustPGB(t, "", nil, s.cmd("delete", append(policy, "--json")...)...)
	var plan struct {
		DryRun     bool                `json:"dry_run"`
		Backups    []json.RawMessage   `json:"backups"`
		Unfinished []json.RawMessage   `json:"unfinished"`
		WAL        struct{ Count int } `json:"wal"`
		Window     struct {
			FromBackup string `json:"from_backup"`
		} `json:"window"`
	}
	if err := json.Unmarshal([]byte(again.stdout), &plan); err != nil {
		t.Fatalf("delete --json: %v\n%s", err, again.stdout)
	}
	if !plan.DryRun || len(plan.Backups) != 0 || len(plan.Unfinished) != 0 || plan.WAL.Count != 0 || plan.Window.FromBackup != before[2].Name {
		t.Fatalf("left to delete after the rerun: %s", again.stdout)
	}
	// With the plan's empty WAL list (nothing older than the kept backup's start is
	// left), a passing verify --wal (the WAL is continuous from that start on) means
	// exactly the WAL the kept backup needs remains, on S3 as on the filesystem.
	if r := pgb(t, "", nil, s.cmd("verify", "--wal")...); r.code != 0 {
		t.Fatalf("verify after the rerun: %s", r)
	}
	if repo != "" {
		for _, b := range before[:2] {
			checkRepoAfterDelete(t, repo, files, b.Name, before[2].StartWAL)
		}
	}
	c = s.restore(t, "--target-action", "promote")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != want {
		t.Fatalf("rows restored after the rerun = %d, want %d", got, want)
	}
}

// On GCS, whose deletes go 16 at a time.
func TestDeleteKeepingTwoBackupsOnGCSThenRestoreInsideTheWindow(t *testing.T) {
	pgtest.Require(t)
	deleteKeepingTwoOn(t, "", gcsRepo(t, 0), []string{"--retain-full", "2"})
}
