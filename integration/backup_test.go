package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

func listBackups(t *testing.T, repo string) []string {
	t.Helper()
	var rows []struct{ Name string }
	r := mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, r.stdout)
	}
	var names []string
	for _, row := range rows {
		names = append(names, row.Name)
	}
	return names
}

// The cluster has data checksums, so backup-push checks every page it reads while
// pgbench rewrites them: none may be reported damaged (pages written since the start
// and torn first reads are not).
func TestBackupWhilePgbenchWritesRestoresConsistently(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := checksumCluster(t, repo)
	if out, err := src.Command(t, "pgbench", "-i", "-q", "-s", "5").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	bench := src.Command(t, "pgbench", "-n", "-c", "2", "-T", "8")
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	// Back up while pgbench commits: wait for its first transactions.
	src.WaitFor(t, "pgbench to commit", 30*time.Second, func() (bool, string, error) {
		n, err := src.TryQueryInt("SELECT count(*) FROM pgbench_history")
		return n > 0, "pgbench_history has " + strconv.FormatInt(n, 10) + " rows", err
	})
	// Small parts and two workers, so that several parts are written while pgbench runs.
	r := mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--part-size", "8MiB", "--concurrency", "2", "--fast", "--fail-on-corrupt-page")
	if strings.Contains(r.stdout+r.stderr, "data checksum") {
		t.Fatalf("pages reported damaged in a healthy cluster: %s", r)
	}
	if err := bench.Wait(); err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	want := src.QueryString(t, "SELECT count(*) || '/' || sum(abalance) || '/' || (SELECT count(*) FROM pgbench_history) FROM pgbench_accounts")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	got := c.QueryString(t, "SELECT count(*) || '/' || sum(abalance) || '/' || (SELECT count(*) FROM pgbench_history) FROM pgbench_accounts")
	if got != want {
		t.Fatalf("restored accounts/balance/history = %s, source has %s", got, want)
	}
	if out, err := c.Command(t, "psql", "-XAtc", "CREATE EXTENSION amcheck; SELECT bt_index_check('pgbench_accounts_pkey', true)").CombinedOutput(); err != nil {
		t.Fatalf("amcheck on the restored index: %v\n%s", err, out)
	}
}

// tablespaceCluster is an archiving cluster with a tablespace "fast" (at the returned
// location) holding an empty table on_fast (v int).
func tablespaceCluster(t *testing.T, repo string) (*pgtest.Cluster, string) {
	t.Helper()
	src := archivingCluster(t, repo)
	spc := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "spc"))
	src.Exec(t, "CREATE TABLESPACE fast LOCATION '"+spc+"'")
	src.Exec(t, "CREATE TABLE on_fast (v int) TABLESPACE fast")
	return src, spc
}

func TestTablespaceIsBackedUpAndRestoredThroughTheMap(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src, spc := tablespaceCluster(t, repo)
	src.Exec(t, "INSERT INTO on_fast SELECT generate_series(1, 5000)")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.Exec(t, "INSERT INTO on_fast SELECT generate_series(5001, 6000)")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	base := pgtest.TempDir(t)
	dir, newSpc := filepath.Join(base, "restored"), filepath.Join(base, "spc2")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--tablespace-map", spc+"="+newSpc)
	link, err := os.Readlink(filepath.Join(dir, "pg_tblspc", src.QueryString(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'fast'")))
	if err != nil || link != newSpc {
		t.Fatalf("tablespace link = %q, %v; want %s", link, err, newSpc)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM on_fast"); got != 6000 {
		t.Fatalf("rows in the tablespace = %d, want 6000", got)
	}
	if got := c.QueryString(t, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'fast'"); got != newSpc {
		t.Fatalf("tablespace location = %q, want %s", got, newSpc)
	}
}

func TestSecondConcurrentBackupIsRefused(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)
	// Hold the lock the way a running backup does: a live process on this host.
	holder := exec.Command("sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	host, _ := os.Hostname()
	lock := `{"host":"` + host + `","pid":` + strconv.Itoa(holder.Process.Pid) + `,"started":"` + time.Now().UTC().Format(time.RFC3339) + `","what":"backup-push X"}` // recent: older than --lock-max-age is taken over
	if err := os.MkdirAll(filepath.Join(repo, "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "locks", "backup.json"), []byte(lock), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.ChownToPG(t, repo)

	start := time.Now()
	r := pgb(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	if r.code == 0 || !strings.Contains(r.stderr, "another backup is running") {
		t.Fatalf("second backup: %s", r)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("refusal took %s; it should fail fast", d)
	}
	if names := listBackups(t, repo); len(names) != 0 {
		t.Fatalf("backups after a refused run: %v", names)
	}
}

// heldPart is a backup part replaced by a FIFO that nobody writes: a restore that
// opens it blocks there for good, so it cannot finish before the test kills it.
type heldPart struct{ path, saved string }

// holdLargestPart swaps the largest part of the backup for a FIFO. Restore reads the
// largest parts first, so one worker blocks there at once and the others restore
// every other part.
func holdLargestPart(t *testing.T, repo, backup string) *heldPart {
	t.Helper()
	parts, err := filepath.Glob(filepath.Join(repo, "backups", backup, "part-*"))
	if err != nil || len(parts) < 2 {
		t.Fatalf("want a backup of several parts, got %v (%v)", parts, err)
	}
	largest, size := "", int64(-1)
	for _, p := range parts {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > size {
			largest, size = p, fi.Size()
		}
	}
	h := &heldPart{path: largest, saved: largest + ".held"}
	if err := os.Rename(largest, h.saved); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(largest, 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// release puts the real part back.
func (h *heldPart) release(t *testing.T) {
	t.Helper()
	if err := os.Rename(h.saved, h.path); err != nil {
		t.Fatal(err)
	}
}

func TestKilledBackupLeavesNothingListedAndTheNextOneWorks(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	if out, err := src.Command(t, "pgbench", "-i", "-q", "-s", "10").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	// Kill the backup while its first part is being written.
	cmd := exec.Command(pgtest.BuildPGB(t), "backup-push", "--repo", repo, "--concurrency", "1", "--compression", "zstd", "--compression-level", "9", "--fast")
	cmd.Env = append(cleanEnv(), src.Env()...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	pgtest.WaitUntil(t, "backup-push to write into its first part", 60*time.Second, func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("backup-push ended before it could be killed:\n%s", out.String())
		default:
		}
		writing, _ := filepath.Glob(filepath.Join(repo, "backups", "*", ".tmp-*"))
		for _, p := range writing {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("part files being written: %v", writing)
	})
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	if cmd.ProcessState.Success() {
		t.Fatalf("backup-push finished before it was killed:\n%s", out.String())
	}
	if names := listBackups(t, repo); len(names) != 0 {
		t.Fatalf("a killed backup is listed: %v", names)
	}
	r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", filepath.Join(pgtest.TempDir(t), "x"))
	if r.code == 0 || !strings.Contains(r.stderr, "no backups") {
		t.Fatalf("restore from only a killed backup: %s", r)
	}

	// No wait for the clock: a backup started in the killed one's second takes the
	// next free name. Small parts, so that the restore below is killed between two.
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--part-size", "16MiB")
	names := listBackups(t, repo)
	if len(names) != 1 {
		t.Fatalf("backups after a good run: %v", names)
	}
	// A restore killed mid-way leaves a directory PostgreSQL refuses to start. The
	// restore cannot finish before the kill: its largest part is a FIFO that nobody
	// writes, so one worker blocks there until the kill while the other restores the
	// rest, pg_control included (which must wait under another name until the end).
	killed := filepath.Join(pgtest.TempDir(t), "killed")
	hold := holdLargestPart(t, repo, names[0])
	rcmd := exec.Command(pgtest.BuildPGB(t), "restore", "--repo", repo, "--pgdata", killed, "--concurrency", "2")
	rcmd.Env = cleanEnv()
	var rout strings.Builder
	rcmd.Stdout, rcmd.Stderr = &rout, &rout
	if err := rcmd.Start(); err != nil {
		t.Fatal(err)
	}
	rexited := make(chan struct{})
	go func() { rcmd.Wait(); close(rexited) }()
	pgtest.WaitUntil(t, "restore to write pg_control", 60*time.Second, func() (bool, string) {
		select {
		case <-rexited:
			t.Fatalf("the restore ended before it was killed:\n%s", rout.String())
		default:
		}
		written, _ := filepath.Glob(filepath.Join(killed, "global", "pg_control*"))
		return len(written) > 0, "no global/pg_control* in " + killed + " yet"
	})
	rcmd.Process.Signal(syscall.SIGKILL)
	<-rexited
	if rcmd.ProcessState.Success() {
		t.Fatalf("the restore finished although a part was held:\n%s", rout.String())
	}
	hold.release(t)
	if fileExists(filepath.Join(killed, "global", "pg_control")) {
		t.Fatal("a killed restore left global/pg_control in place")
	}
	if out, err := exec.Command(filepath.Join(pgtest.Require(t), "pg_controldata"), killed).CombinedOutput(); err == nil {
		t.Fatalf("pg_controldata reads the directory of a killed restore:\n%s", out)
	}

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--target-immediate", "--target-action", "promote")
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM pgbench_accounts"); got != 1_000_000 {
		t.Fatalf("accounts = %d", got)
	}
}

func TestCorruptByteInAPartIsCaughtOnRestore(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--compression", "none")
	parts, _ := filepath.Glob(filepath.Join(repo, "backups", "*", "part-*"))
	if len(parts) == 0 {
		t.Fatal("no parts")
	}
	// Flip one byte in the middle of the largest part: inside some file's data.
	largest := parts[0]
	for _, p := range parts {
		a, _ := os.Stat(p)
		b, _ := os.Stat(largest)
		if a.Size() > b.Size() {
			largest = p
		}
	}
	data, _ := os.ReadFile(largest)
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(largest, data, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "file base/") || !strings.Contains(r.stderr, "checksum mismatch") ||
		!strings.Contains(r.stderr, "--force") {
		t.Fatalf("restore of a damaged backup: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err == nil {
		t.Fatal("a failed restore left global/pg_control: PostgreSQL could start it")
	}

	// Once the part is repaired, --force clears the incomplete directory and restores;
	// without it the directory is refused.
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(largest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("retry without --force: %s", r)
	}
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--force")
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM big"); got != 200000 {
		t.Fatalf("rows after restore --force = %d, want 200000", got)
	}
}

func TestBackupFetchRestoresFilesOnly(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	dir := filepath.Join(pgtest.TempDir(t), "fetched")
	mustPGB(t, "", nil, "backup-fetch", "--repo", repo, "LATEST", dir)
	for _, f := range []string{"backup_label", "global/pg_control", "PG_VERSION", "pg_wal/archive_status"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s missing: %v", f, err)
		}
	}
	for _, f := range []string{"recovery.signal", "postmaster.pid"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s should not be there", f)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf")); strings.Contains(string(b), "restore_command") {
		t.Errorf("backup-fetch wrote recovery settings:\n%s", b)
	}
}

func TestRestoreSkipsABackupWhoseManifestIsDamaged(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE kept AS SELECT generate_series(1, 1000) AS v")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	names := listBackups(t, repo)
	if len(names) != 2 {
		t.Fatalf("backups %v, want two", names)
	}
	older, newer := names[0], names[1]
	src.Exec(t, "INSERT INTO kept SELECT generate_series(1001, 1500)")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	// One byte of the newer backup's manifest goes bad.
	manifest := filepath.Join(repo, "backups", newer, "manifest")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(manifest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Listing reads only the backups' small summaries, so the damaged manifest is found
	// when the backup is chosen: it is skipped, saying why, and the older one used.
	early := filepath.Join(pgtest.TempDir(t), "early")
	if r := mustPGB(t, "", nil, "backup-fetch", "--repo", repo, "LATEST", early); !strings.Contains(r.stdout, older) ||
		!strings.Contains(r.stderr, newer) || !strings.Contains(r.stderr, "damaged") {
		t.Fatalf("backup-fetch LATEST with the newest manifest damaged: %s", r)
	}
	// Its summary goes bad too: now listing sees the damage.
	summary := filepath.Join(repo, "backups", newer, "summary")
	if data, err = os.ReadFile(summary); err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(summary, data, 0o600); err != nil {
		t.Fatal(err)
	}

	// backup-list shows both, the damaged one marked, and says why.
	r := mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json")
	var rows []struct{ Name, Status, Error string }
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, r.stdout)
	}
	if len(rows) != 2 || rows[0].Name != older || rows[0].Status != "ok" || rows[1].Name != newer ||
		rows[1].Status != "damaged" || !strings.Contains(rows[1].Error, "corrupt") {
		t.Fatalf("backup-list --json with a damaged manifest: %+v", rows)
	}
	if !strings.Contains(r.stderr, newer) {
		t.Errorf("backup-list does not warn about %s: %s", newer, r)
	}
	if r := mustPGB(t, "", nil, "backup-list", "--repo", repo); !strings.Contains(r.stdout, "damaged") {
		t.Errorf("backup-list table does not mark the damaged backup: %s", r)
	}

	// Naming the damaged backup is refused, saying why.
	r = pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", filepath.Join(pgtest.TempDir(t), "x"), "--backup", newer)
	if r.code == 0 || !strings.Contains(r.stderr, newer) || !strings.Contains(r.stderr, "damaged") {
		t.Fatalf("restore --backup of the damaged backup: %s", r)
	}

	// The older backup still restores, with a warning naming the skipped one, and
	// recovery replays every committed row.
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r = mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	if !strings.Contains(r.stdout, "restored backup "+older) || !strings.Contains(r.stderr, newer) {
		t.Fatalf("restore with a damaged newest backup: %s", r)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM kept"); got != 1500 {
		t.Fatalf("restored rows = %d, want 1500", got)
	}
	fetched := filepath.Join(pgtest.TempDir(t), "fetched")
	if r := mustPGB(t, "", nil, "backup-fetch", "--repo", repo, "LATEST", fetched); !strings.Contains(r.stdout, older) {
		t.Fatalf("backup-fetch LATEST with a damaged newest backup: %s", r)
	}
}

func TestRestoreAsRootIntoARootOwnedDirectoryGivesTheFilesToPostgres(t *testing.T) {
	pgtest.RequireParallel(t)
	if os.Geteuid() != 0 {
		t.Skip("restoring as root needs root")
	}
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE owned AS SELECT generate_series(1, 100) AS v")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	// /tmp/…/restore-root belongs to root, as /var/lib/postgresql/15 might after a
	// careless mkdir: the restored files must still belong to the data directory's
	// owner, not to root.
	parent := filepath.Join(pgtest.TempDir(t), "restore-root")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(parent, 0, 0); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pgdata")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	srcInfo, err := os.Stat(src.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	want := srcInfo.Sys().(*syscall.Stat_t).Uid
	for _, p := range []string{dir, filepath.Join(dir, "PG_VERSION"), filepath.Join(dir, "global", "pg_control"), filepath.Join(dir, "base")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
			t.Errorf("%s belongs to uid %d, want %d (the source data directory's owner)", p, got, want)
		}
	}
	// PostgreSQL, as the postgres user, reads it as it is (the harness below chowns
	// the tree itself, so this is the check that the files are usable unchanged).
	pgbin, err := pgtest.PGBin()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := pgtest.RunAsPG(t, filepath.Join(pgbin, "postgres"), "-D", dir, "-C", "data_directory").CombinedOutput(); err != nil ||
		strings.TrimSpace(string(out)) != dir {
		t.Fatalf("postgres -D %s -C data_directory as the postgres user: %v\n%s", dir, err, out)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM owned"); got != 100 {
		t.Fatalf("rows = %d, want 100", got)
	}
}
