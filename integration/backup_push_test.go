package integration

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// withoutPGDATA is env without its PGDATA entry.
func withoutPGDATA(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PGDATA=") {
			out = append(out, kv)
		}
	}
	return out
}

// errorLines are the "pgb: error:" lines of stderr.
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "pgb: error:") {
			out = append(out, l)
		}
	}
	return out
}

func TestBackupPushOfAnOldCopyOfTheDataDirectoryIsRefused(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE before_copy AS SELECT generate_series(1, 100) AS v")
	src.Stop(t)
	stale := filepath.Join(pgtest.TempDir(t), "stale")
	if out, err := exec.Command("cp", "-a", src.DataDir(), stale).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v\n%s", err, out)
	}
	src.Start(t)
	src.Exec(t, "CREATE TABLE after_copy AS SELECT generate_series(1, 1000) AS v")
	src.Exec(t, "CHECKPOINT")

	r := pgb(t, "", src.Env(), "backup-push", "--repo", repo, "--pgdata", stale, "--fast")
	if lines := errorLines(r.stderr); r.code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "old copy") ||
		!strings.Contains(lines[0], stale) {
		t.Fatalf("backup-push --pgdata of an old copy: %s", r)
	}
	if names := listBackups(t, repo); len(names) != 0 {
		t.Fatalf("backups after a refused run: %v", names)
	}
}

// A copy of the cluster that has run on its own and checkpointed later than the
// server (like a second standby on the pgb host while PGHOST points at the first)
// looks newer than the server's own data directory; it is not the server's either.
func TestBackupPushOfANewerLookingCopyOfTheDataDirectoryIsRefused(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Stop(t)
	clone := filepath.Join(pgtest.TempDir(t), "clone")
	if out, err := exec.Command("cp", "-a", src.DataDir(), clone).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v\n%s", err, out)
	}
	src.Start(t)
	// The clone runs as a server of its own, writes WAL well past the source and
	// checkpoints: its pg_control is ahead of the source's.
	c := pgtest.OpenDataDir(t, clone, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.Exec(t, "CREATE TABLE clone_only AS SELECT generate_series(1, 1000) AS v")
	for i := 0; i < 4; i++ {
		c.SwitchWAL(t)
	}
	c.Exec(t, "CHECKPOINT")
	c.Stop(t)

	r := pgb(t, "", src.Env(), "backup-push", "--repo", repo, "--pgdata", clone, "--fast")
	if lines := errorLines(r.stderr); r.code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "is not the data directory the server runs on") ||
		!strings.Contains(lines[0], clone) {
		t.Fatalf("backup-push --pgdata of a newer-looking copy: %s", r)
	}
	if names := listBackups(t, repo); len(names) != 0 {
		t.Fatalf("backups after a refused run: %v", names)
	}
}

func TestBackupPushWithoutPGDATAReadsTheServersDataDirectory(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS v")
	// As from cron: no --pgdata, no PGDATA, and a working directory that is not the
	// data directory.
	mustPGB(t, "/", withoutPGDATA(src.Env()), "backup-push", "--repo", repo, "--fast")
	if names := listBackups(t, repo); len(names) != 1 {
		t.Fatalf("backups = %v, want one", names)
	}
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM t"); got != 1000 {
		t.Fatalf("restored rows = %d, want 1000", got)
	}
}

func TestInPlaceTablespaceIsBackedUpAndRestored(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "ALTER SYSTEM SET allow_in_place_tablespaces = on")
	src.Exec(t, "SELECT pg_reload_conf()")
	src.Exec(t, "CREATE TABLESPACE inplace LOCATION ''")
	src.Exec(t, "CREATE TABLE in_place (v int) TABLESPACE inplace")
	src.Exec(t, "INSERT INTO in_place SELECT generate_series(1, 5000)")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.Exec(t, "INSERT INTO in_place SELECT generate_series(5001, 6000)")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM in_place"); got != 6000 {
		t.Fatalf("rows in the in-place tablespace = %d, want 6000", got)
	}
}

// TestBackupPushSaysPlainlyWhenPostgreSQLStopsDuringTheCopy: the repository (S3 behind
// the fault proxy) holds the backup's first part upload unanswered, so the copy cannot
// end; the test stops PostgreSQL meanwhile. backup-push must give the upload up and
// fail, saying that PostgreSQL stopped, while the upload is still held: noticing only
// at pg_backup_stop would never get there.
func TestBackupPushSaysPlainlyWhenPostgreSQLStopsDuringTheCopy(t *testing.T) {
	pgtest.RequireParallel(t)
	endpoint, access, secret, bucket := s3test.StartVersityGW(t)
	proxy := startFaultProxy(t, endpoint, 0, 7)
	held := proxy.holdRequests(func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/backups/") && strings.Contains(r.URL.Path, "/part-")
	})
	defer held.release()
	// Request and attempt timeouts longer than the test: a held upload waits for as long
	// as the backup waits for it.
	sel := configFile(t, "repo: s3://"+bucket+"/cluster1\ns3-endpoint: "+proxy.URL+"\ns3-region: us-east-1\n"+
		"s3-force-path-style: true\ns3-access-key-id: "+access+"\ns3-secret-access-key: "+secret+"\n"+
		"s3-request-timeout: 24h\nstorage-timeout: 24h\n")
	src := archivingClusterWith(t, sel)
	src.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 10000) AS v")

	cmd := exec.Command(pgtest.BuildPGB(t), append(append([]string{"backup-push"}, sel...), "--fast")...)
	cmd.Env = append(cleanEnv(), src.Env()...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-held.arrived: // the copy is under way and cannot end
	case err := <-exited:
		t.Fatalf("backup-push ended (%v) before uploading a part:\n%s", err, stderr.String())
	}
	src.Stop(t)
	var err error
	select {
	case err = <-exited:
	case <-time.After(5 * time.Minute): // a safety net against a hang, not a measure
		_ = cmd.Process.Kill()
		<-exited //nolint:errcheck // killed: its exit status says nothing
		t.Fatalf("backup-push did not notice PostgreSQL stopping during the copy (its part upload is still held):\n%s", stderr.String())
	}
	// backup-push exited while its part upload was held: it gave the copy up.
	held.release()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	lines := errorLines(r.stderr)
	if r.code == 0 || len(lines) != 1 || !strings.Contains(lines[0],
		"PostgreSQL stopped (or the connection was lost) during the backup: the backup is incomplete and was not recorded") {
		t.Fatalf("backup-push while PostgreSQL stops: %s", r)
	}
	r = mustPGB(t, "", nil, append(append([]string{"backup-list"}, sel...), "--json")...)
	if s := strings.TrimSpace(r.stdout); s != "[]" && s != "null" {
		t.Fatalf("backups after PostgreSQL stopped during the backup: %s", s)
	}
}

func TestBackupPushAsRootReadsOnlyWhatThePostgresUserCanRead(t *testing.T) {
	pgtest.RequireParallel(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	// Root's secret: a world-readable file in a directory only root may enter.
	secretDir := filepath.Join(pgtest.TempDir(t), "root-only")
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const secret = "root's secret: never in a backup"
	if err := os.WriteFile(filepath.Join(secretDir, "shadow"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	// The postgres user plants a tablespace link to it.
	if err := os.Symlink(secretDir, filepath.Join(src.DataDir(), "pg_tblspc", "99999")); err != nil {
		t.Fatal(err)
	}
	r := mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--compression", "none")
	if !strings.Contains(r.stderr, "pg_tblspc/99999") {
		t.Errorf("no warning about the planted link:\n%s", r.stderr)
	}
	parts, _ := filepath.Glob(filepath.Join(repo, "backups", "*", "part-*"))
	for _, p := range parts {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
			t.Fatalf("%s holds root's secret", p)
		}
	}

	// A file the postgres user cannot read fails the backup, which names it.
	rootFile := filepath.Join(src.DataDir(), "root_only.conf")
	if err := os.WriteFile(rootFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--compression", "none")
	if lines := errorLines(r.stderr); r.code == 0 || len(lines) != 1 || !strings.Contains(lines[0], rootFile) {
		t.Fatalf("backup-push with a file postgres cannot read: %s", r)
	}
	if names := listBackups(t, repo); len(names) != 1 {
		t.Fatalf("backups = %v, want only the first", names)
	}
}

// A page damaged on disk (dd into a table's file while the cluster is stopped) is
// found by backup-push on a cluster with data checksums: the backup is stored all the
// same (it is still the best copy there is), its summary line and pgb verify name the
// file and the block, and with --fail-on-corrupt-page backup-push exits 1 once the
// backup is stored.
func TestBackupPushFindsAPageDamagedOnDisk(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := checksumCluster(t, repo, "autovacuum = off") // nothing reads the damaged page before the backup
	c.Exec(t, "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS v FROM generate_series(1, 5000) g")
	c.Exec(t, "CHECKPOINT")
	rel := c.QueryString(t, "SELECT pg_relation_filepath('t')")
	c.Stop(t)
	dd := exec.Command("dd", "of="+filepath.Join(c.DataDir(), rel), "bs=1", "seek="+strconv.Itoa(3*8192+4000), "count=1", "conv=notrunc")
	dd.Stdin = strings.NewReader("\x55")
	if out, err := dd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, out)
	}
	// Last written an hour ago, as far as its time (and its database's PG_VERSION's)
	// says: an incremental backup keeps the full one's copy without reading it (below).
	hourAgo := time.Now().Add(-time.Hour)
	for _, f := range []string{rel, filepath.Join(filepath.Dir(rel), "PG_VERSION")} {
		if err := os.Chtimes(filepath.Join(c.DataDir(), f), hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
	}
	c.Start(t)

	named := rel + " block 3"
	r := mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	if !strings.Contains(r.stdout, "1 page(s) failed their data checksum") || !strings.Contains(r.stdout, named) {
		t.Fatalf("backup-push did not report the damaged page %s: %s", named, r)
	}
	if names := listBackups(t, repo); len(names) != 1 {
		t.Fatalf("backups = %v, want the one just taken", names)
	}
	if l := mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json"); !strings.Contains(l.stdout, `"corrupt_pages": 1`) {
		t.Fatalf("backup-list --json does not count the damaged page: %s", l.stdout)
	}
	if l := mustPGB(t, "", nil, "backup-list", "--repo", repo); !strings.Contains(l.stdout, "1 damaged page(s)") {
		t.Fatalf("backup-list does not show the damaged page: %s", l.stdout)
	}
	if s := mustPGB(t, "", nil, "status", "--repo", repo); !strings.Contains(s.stdout, "holds 1 damaged page(s)") {
		t.Fatalf("status does not show the damaged page: %s", s.stdout)
	}
	v := pgb(t, "", nil, "verify", "--repo", repo)
	if v.code == 0 || !strings.Contains(v.stdout+v.stderr, rel) || !strings.Contains(v.stdout+v.stderr, "blocks 3)") {
		t.Fatalf("verify of a backup holding a damaged page: %s", v)
	}
	r = pgb(t, "", c.Env(), "backup-push", "--repo", repo, "--fast", "--fail-on-corrupt-page")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, named) {
		t.Fatalf("backup-push --fail-on-corrupt-page: %s, want exit 1 naming %s", r, named)
	}
	if names := listBackups(t, repo); len(names) != 2 {
		t.Fatalf("backups = %v: the second is stored too", names)
	}
	// An incremental backup that keeps the file unread still holds the damaged page (a
	// restore takes it from the full backup), and says so.
	r = mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast", "--incremental")
	if !strings.Contains(r.stdout, "incremental backup on") || !strings.Contains(r.stdout, "1 page(s) failed their data checksum") || !strings.Contains(r.stdout, named) {
		t.Fatalf("an incremental backup keeping the damaged file unread does not report its page %s: %s", named, r)
	}
}
