package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// dumpAll is pg_dumpall of c: every database, role and object, as SQL, without the
// random keys of its \restrict lines, and without unlogged tables' rows (a restore,
// like a crash, empties them).
func dumpAll(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	out, err := c.Command(t, "pg_dumpall", "--no-sync", "--no-unlogged-table-data").Output()
	if err != nil {
		t.Fatalf("pg_dumpall: %v", err)
	}
	return restrictKey.ReplaceAllString(string(out), `\${1}restrict KEY`)
}

var restrictKey = regexp.MustCompile(`(?m)^\\(un)?restrict \S+$`)

// incrementalBackup runs backup-push --incremental and returns the backup's name and
// its summary line, failing unless it is an incremental backup on parent.
func incrementalBackup(t *testing.T, src *pgtest.Cluster, repo, parent string) (string, int64) {
	t.Helper()
	r := mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--incremental")
	m := regexp.MustCompile(`backup (\S+) complete \(incremental backup on ([^:]+): \d+ files unchanged, ([1-9]\d*) as changed pages`).FindStringSubmatch(r.stdout)
	if m == nil || m[2] != parent {
		t.Fatalf("backup-push --incremental on %s must store changed pages of the tables: %s", parent, r)
	}
	return m[1], storedSize(t, repo, m[1])
}

// storedSize is the bytes a backup's own parts take in the repository.
func storedSize(t *testing.T, repo, name string) int64 {
	t.Helper()
	var rows []struct {
		Name       string `json:"name"`
		StoredSize int64  `json:"stored_size"`
		Parent     string `json:"parent"`
	}
	out := mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json")
	if err := json.Unmarshal([]byte(out.stdout), &rows); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out.stdout)
	}
	for _, r := range rows {
		if r.Name == name {
			return r.StoredSize
		}
	}
	t.Fatalf("backup %s is not listed: %s", name, out.stdout)
	return 0
}

// ageDatabases makes c's databases look created an hour ago (their PG_VERSION files'
// modification time), as a production cluster's are: an incremental backup stores every
// file of a database whose PG_VERSION was written after its parent started (less one
// second), and a test runs initdb, CREATE DATABASE and the full backup within a second.
func ageDatabases(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.DataDir(), "base", "*", "PG_VERSION"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no PG_VERSION under base/: %v", err)
	}
	old := time.Now().Add(-time.Hour)
	for _, f := range files {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func pgbench(t *testing.T, c *pgtest.Cluster, args ...string) {
	t.Helper()
	if out, err := c.Command(t, "pgbench", args...).CombinedOutput(); err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// full → pgbench → incremental → pgbench and the hard cases → incremental → drop: a
// restore of the second incremental backup to just before the drop is the source as
// it was then, database for database (pg_dumpall), with the relations that were
// truncated, shrunk by VACUUM, re-created or copied from a template since the full
// backup, and an unlogged table comes back empty. Then a byte flipped in the full
// backup's part fails restore and verify of the newest backup, naming the object.
func TestIncrementalChainRestoresEveryCommittedRow(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	// No autovacuum: what the backups store is what the test changes.
	src := checksumCluster(t, repo, "autovacuum = off")
	pgbench(t, src, "-i", "-q", "-s", "3")
	src.Exec(t, "CREATE TABLE shrinks AS SELECT g, repeat('s', 200) AS pad FROM generate_series(1, 60000) g")
	src.Exec(t, "CREATE TABLE truncated AS SELECT g FROM generate_series(1, 50000) g")
	src.Exec(t, "CREATE TABLE recreated AS SELECT g FROM generate_series(1, 50000) g")
	src.Exec(t, "CREATE DATABASE copied")
	src.Exec(t, "CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 20000) g")
	ageDatabases(t, src)
	// Not compressed, so that a byte flipped in a part is a byte flipped in a file (in
	// a compressed stream it can decode to the same bytes, which are then intact).
	r := mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--incremental", "--compression", "none")
	full := regexp.MustCompile(`backup (\S+) complete \(full backup\)`).FindStringSubmatch(r.stdout)
	if full == nil {
		t.Fatalf("the first backup-push --incremental must take a full backup (no base): %s", r)
	}
	fullStored := storedSize(t, repo, full[1])

	pgbench(t, src, "-n", "-c", "2", "-t", "300")
	incr1, stored1 := incrementalBackup(t, src, repo, full[1])

	pgbench(t, src, "-n", "-c", "2", "-t", "300")
	// VACUUM cuts the end of shrinks; TRUNCATE and DROP/CREATE give new files that
	// must not show the old rows; a database dropped and created again by copying its
	// template keeps the template's page LSNs.
	src.Exec(t, "DELETE FROM shrinks WHERE g > 1000")
	src.Exec(t, "VACUUM shrinks")
	src.Exec(t, "TRUNCATE truncated")
	src.Exec(t, "INSERT INTO truncated SELECT g FROM generate_series(1, 10) g")
	src.Exec(t, "DROP TABLE recreated")
	src.Exec(t, "CREATE TABLE recreated AS SELECT g * 2 AS g FROM generate_series(1, 20000) g")
	src.Exec(t, "INSERT INTO scratch SELECT g FROM generate_series(1, 20000) g")
	src.Exec(t, "DROP DATABASE copied")
	src.Exec(t, "CREATE DATABASE copied STRATEGY FILE_COPY")
	incr2, stored2 := incrementalBackup(t, src, repo, incr1)

	if stored1 >= fullStored || stored2 >= fullStored {
		t.Errorf("incremental backups stored %d and %d bytes, the full one %d: they should store less", stored1, stored2, fullStored)
	}
	src.Exec(t, "INSERT INTO truncated VALUES (-1)") // committed after the backup, before the drop
	want := dumpAll(t, src)
	lsnBefore := src.QueryString(t, "SELECT pg_current_wal_lsn()")
	src.Exec(t, "DROP TABLE pgbench_accounts")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r = mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--target-lsn", lsnBefore, "--target-action", "promote")
	if !strings.Contains(r.stdout, incr2) {
		t.Fatalf("restore to %s should use backup %s, the newest before it: %s", lsnBefore, incr2, r)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := dumpAll(t, c); got != want {
		t.Fatalf("pg_dumpall of the restored cluster differs from the source's before the drop (%d and %d bytes)", len(got), len(want))
	}
	if out, err := c.Command(t, "psql", "-XAtc", "CREATE EXTENSION amcheck; SELECT bt_index_check('pgbench_accounts_pkey', true)").CombinedOutput(); err != nil {
		t.Fatalf("amcheck on the restored index: %v\n%s", err, out)
	}
	if n := c.QueryInt(t, "SELECT count(*) FROM scratch"); n != 0 {
		t.Fatalf("the unlogged table holds %d rows after the restore: it must come back empty", n)
	}
	c.Stop(t)
	mustPGB(t, "", nil, "verify", "--repo", repo, "--backup", incr2)
	list := mustPGB(t, "", nil, "backup-list", "--repo", repo)
	if !strings.Contains(list.stdout, "incr on "+incr1+" (chain of 3)") {
		t.Fatalf("backup-list must show %s's chain: %s", incr2, list)
	}

	// A byte flipped in the full backup's largest part: the newest backup cannot be
	// restored, and verify says which object is damaged.
	parts, _ := filepath.Glob(filepath.Join(repo, "backups", full[1], "part-*"))
	if len(parts) == 0 {
		t.Fatal("the full backup has no parts")
	}
	largest := parts[0]
	for _, p := range parts {
		if fileSize(t, p) > fileSize(t, largest) {
			largest = p
		}
	}
	data, err := os.ReadFile(largest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(largest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	object := "backups/" + full[1] + "/" + filepath.Base(largest)
	dir2 := filepath.Join(pgtest.TempDir(t), "restored2")
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir2, "--backup", incr2); r.code == 0 || !strings.Contains(r.stderr, object) {
		t.Fatalf("restore of %s with a damaged base must fail naming %s: %s", incr2, object, r)
	}
	if _, err := os.Stat(filepath.Join(dir2, "global", "pg_control")); err == nil {
		t.Fatal("a failed restore left global/pg_control: PostgreSQL could start it")
	}
	if r := pgb(t, "", nil, "verify", "--repo", repo, "--backup", incr2); r.code == 0 || !strings.Contains(r.stdout+r.stderr, object) {
		t.Fatalf("verify of %s with a damaged base must fail naming %s: %s", incr2, object, r)
	}

	// A backup of the chain deleted by hand: the newest is listed as a broken chain, is
	// not chosen by restore, and the next incremental backup-push takes a full backup.
	if err := os.RemoveAll(filepath.Join(repo, "backups", incr1)); err != nil {
		t.Fatal(err)
	}
	if list := mustPGB(t, "", nil, "backup-list", "--repo", repo); !strings.Contains(list.stdout, "broken-chain") {
		t.Fatalf("backup-list after %s was deleted: %s", incr1, list)
	}
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", filepath.Join(pgtest.TempDir(t), "r3"), "--backup", incr2); r.code == 0 || !strings.Contains(r.stderr, "chain of backups is broken") {
		t.Fatalf("restore of %s without %s: %s", incr2, incr1, r)
	}
	r = mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--incremental")
	if !strings.Contains(r.stdout, "(full backup)") || !strings.Contains(r.stderr, "chain is incomplete") {
		t.Fatalf("backup-push --incremental on a broken chain must take a full backup and say why: %s", r)
	}
}

// A drill copy restored yesterday and then written to (promoted, a table added) is
// brought to today's backup with restore --delta: only what differs is written, what
// the backup lacks is removed, and the result dumps exactly like a restore into an
// empty directory. A running server, and another cluster's directory, are refused
// with nothing written.
func TestDeltaRestoreBringsAStaleCopyToTheBackup(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := checksumCluster(t, repo, "autovacuum = off")
	pgbench(t, src, "-i", "-q", "-s", "2")
	// A configuration file kept outside the data directory, through a link: the backup
	// lists the link, and every restore makes it again.
	confDir := pgtest.TempDir(t)
	ident := filepath.Join(confDir, "pg_ident.conf")
	if err := os.Rename(filepath.Join(src.DataDir(), "pg_ident.conf"), ident); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ident, filepath.Join(src.DataDir(), "pg_ident.conf")); err != nil {
		t.Fatal(err)
	}
	identBefore, err := os.ReadFile(ident)
	if err != nil {
		t.Fatal(err)
	}
	// template1's files, which nothing here writes, last written an hour ago: restore
	// --delta --trust-time may keep them unread whenever the backups run; but its
	// pg_filenode.map, an hour ahead, only by the record of the restore that wrote it.
	template1 := setTimesBack(t, filepath.Join(src.DataDir(), "base", "1"), time.Hour)
	ahead := filepath.Join("base", "1", "pg_filenode.map")
	if err := os.Chtimes(filepath.Join(src.DataDir(), ahead), time.Now().Add(time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	stale := filepath.Join(pgtest.TempDir(t), "stale")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", stale)
	old := pgtest.OpenDataDir(t, stale, pgtest.Options{Conf: []string{"archive_mode = off"}})
	old.Start(t)
	old.WaitRecoveryDone(t, 120*time.Second)
	old.Exec(t, "CREATE TABLE only_in_the_stale_copy AS SELECT g FROM generate_series(1, 10000) g")
	old.Exec(t, "UPDATE pgbench_branches SET bbalance = -1")
	old.Exec(t, "CHECKPOINT")

	pgbench(t, src, "-n", "-c", "2", "-t", "200")
	src.Exec(t, "CREATE TABLE after_the_copy AS SELECT g FROM generate_series(1, 5000) g")
	src.Exec(t, "CREATE DATABASE made_later")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--incremental")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)
	want := dumpAll(t, src)

	// The stale copy's server still runs: refused, nothing written.
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta"); r.code == 0 || !strings.Contains(r.stderr, "server is running") {
		t.Fatalf("restore --delta onto a running server: %s", r)
	}
	if n := old.QueryInt(t, "SELECT count(*) FROM only_in_the_stale_copy"); n != 10000 {
		t.Fatalf("the refused restore changed the running copy: %d rows", n)
	}
	old.Stop(t)

	// Another cluster's directory: refused, nothing written.
	other := pgtest.NewCluster(t, pgtest.Options{})
	before := repoFiles(t, other.DataDir())
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", other.DataDir(), "--delta", "--force"); r.code == 0 || !strings.Contains(r.stderr, "another cluster") {
		t.Fatalf("restore --delta into another cluster: %s", r)
	}
	if after := repoFiles(t, other.DataDir()); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatal("the refused restore --delta changed another cluster's directory")
	}

	// Links planted in the copy are removed, never followed: a file and a directory
	// outside it stay as they were.
	outside := pgtest.TempDir(t)
	sentinel := filepath.Join(outside, "sentinel")
	if err := os.WriteFile(sentinel, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(stale, "postgresql.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sentinel, filepath.Join(stale, "postgresql.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(stale, "pg_logical")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(stale, "pg_logical")); err != nil {
		t.Fatal(err)
	}
	// The backup's link replaced by a file of the copy's own: made a link again.
	if err := os.Remove(filepath.Join(stale, "pg_ident.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "pg_ident.conf"), []byte("# the copy's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Interrupted: the newest backup's parts are missing when it gets to them. The copy
	// is left marked incomplete, without pg_control; the same command, once the parts
	// are back, finishes it.
	newest := listBackups(t, repo)
	parts, _ := filepath.Glob(filepath.Join(repo, "backups", newest[len(newest)-1], "part-*"))
	for _, p := range parts {
		if err := os.Rename(p, p+".away"); err != nil {
			t.Fatal(err)
		}
	}
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta"); r.code == 0 {
		t.Fatalf("restore --delta without the backup's parts: %s", r)
	}
	if _, err := os.Stat(filepath.Join(stale, "global", "pg_control")); err == nil {
		t.Fatal("an interrupted restore --delta left global/pg_control: PostgreSQL could start the copy")
	}
	for _, p := range parts {
		if err := os.Rename(p+".away", p); err != nil {
			t.Fatal(err)
		}
	}
	r := mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta")
	if b, err := os.ReadFile(sentinel); err != nil || string(b) != "untouched" {
		t.Fatalf("restore --delta wrote through a link it found: %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(stale, "pg_logical")); err != nil || !fi.IsDir() {
		t.Fatalf("pg_logical after restore --delta: %v, %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(stale, "pg_ident.conf")); err != nil || target != ident {
		t.Fatalf("pg_ident.conf after restore --delta: link to %q (%v), want the backup's link to %s", target, err, ident)
	}
	if b, err := os.ReadFile(ident); err != nil || string(b) != string(identBefore) {
		t.Fatalf("restore --delta wrote through the backup's link: %q, %v", b, err)
	}
	kept := regexp.MustCompile(`--delta: (\d+) of them already there and kept`).FindStringSubmatch(r.stdout)
	if kept == nil || kept[1] == "0" {
		t.Fatalf("restore --delta kept nothing of the stale copy: %s", r)
	}
	if _, err := os.Stat(filepath.Join(stale, ".pgb-restore-incomplete")); err == nil {
		t.Fatal("restore --delta left its directory marked incomplete")
	}
	fresh := filepath.Join(pgtest.TempDir(t), "fresh")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", fresh)

	got := map[string]string{}
	for _, dir := range []string{stale, fresh} {
		c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
		c.Start(t)
		c.WaitRecoveryDone(t, 120*time.Second)
		got[dir] = dumpAll(t, c)
		c.Stop(t)
	}
	if got[stale] != want || got[fresh] != want {
		t.Fatalf("dumps differ from the source's: delta restore %v, full restore %v", got[stale] == want, got[fresh] == want)
	}

	// Trusting times, the copy (its server started and stopped since, for the dump) is
	// brought to the backup again. Without the record of the restore that wrote it,
	// the files last written over a second before their backup began are kept unread:
	// template1's. With it, every file unchanged since that restore, pg_filenode.map
	// too. A file changed since, and set back to its time, is read and written again.
	stray := filepath.Join(stale, "base", "1", "pgb_stray")
	if err := os.WriteFile(stray, []byte("not the backup's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(stale, ".pgb-restored")); err != nil {
		t.Fatalf("the delta restore left no record: %v", err)
	}
	byRule := keptUnread(t, mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta", "--trust-time"))
	if byRule < template1/2 {
		t.Fatalf("restore --delta --trust-time kept %d files unread, fewer than half of template1's %d", byRule, template1)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Fatal("restore --delta --trust-time left a file the backup does not hold")
	}
	if byRecord := keptUnread(t, mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta", "--trust-time")); byRecord <= byRule {
		t.Fatalf("with the record of the restore before, restore --delta --trust-time kept %d files unread, without it %d", byRecord, byRule)
	}
	fi, err := os.Stat(filepath.Join(stale, ahead))
	if err != nil {
		t.Fatal(err)
	}
	want1, err := os.ReadFile(filepath.Join(fresh, ahead))
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), want1...)
	tampered[len(tampered)-1] ^= 0xff
	if err := os.WriteFile(filepath.Join(stale, ahead), tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(stale, ahead), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta", "--trust-time")
	if b, err := os.ReadFile(filepath.Join(stale, ahead)); err != nil || string(b) != string(want1) {
		t.Fatalf("%s changed since the restore, its time set back: kept by restore --delta --trust-time (%v)", ahead, err)
	}
	// A server that crashed on the copy (its postmaster.pid left behind, which --force
	// accepts) may have had bytes reach the disk without their times: nothing is kept
	// unread then.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "postmaster.pid"), []byte(strconv.Itoa(gone.Process.Pid)+"\n"+stale+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", stale, "--delta", "--trust-time", "--force"); keptUnread(t, r) != 0 || !strings.Contains(r.stderr, "--trust-time is ignored") {
		t.Fatalf("restore --delta --trust-time after a crash kept files unread: %s", r)
	}
	c := pgtest.OpenDataDir(t, stale, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if d := dumpAll(t, c); d != want {
		t.Fatal("after restore --delta --trust-time the copy dumps unlike the source")
	}
	c.Stop(t)
}

// keptUnread is how many files restore --delta --trust-time says it kept unread.
func keptUnread(t *testing.T, r result) int {
	t.Helper()
	m := regexp.MustCompile(`but the (\d+) kept by size and time \(--trust-time\)`).FindStringSubmatch(r.stdout)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// setTimesBack sets the modification time of every regular file of dir back by d, and
// says how many there are.
func setTimesBack(t *testing.T, dir string, d time.Duration) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, at := 0, time.Now().Add(-d)
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.Chtimes(filepath.Join(dir, e.Name()), at, at); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no files in %s", dir)
	}
	return n
}

// An incremental backup of a cluster with a tablespace restores through the tablespace
// map: the tablespace's relation files come out of the chain like the data directory's.
func TestIncrementalBackupWithATablespaceRestoresThroughTheMap(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src, spc := tablespaceCluster(t, repo)
	src.Exec(t, "CREATE TABLE on_base (v int)")
	src.Exec(t, "INSERT INTO on_fast SELECT generate_series(1, 50000)")
	src.Exec(t, "INSERT INTO on_base SELECT generate_series(1, 50000)")
	ageDatabases(t, src)
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.Exec(t, "UPDATE on_fast SET v = -v WHERE v % 5000 = 0")
	src.Exec(t, "UPDATE on_base SET v = -v WHERE v % 5000 = 0")
	src.Exec(t, "INSERT INTO on_fast SELECT generate_series(50001, 60000)")
	incrementalBackup(t, src, repo, listBackups(t, repo)[0])
	want := src.QueryString(t, "SELECT (SELECT sum(v) FROM on_fast) || '/' || (SELECT sum(v) FROM on_base)")
	src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)

	base := pgtest.TempDir(t)
	dir, newSpc := filepath.Join(base, "restored"), filepath.Join(base, "spc2")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--tablespace-map", spc+"="+newSpc)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	sums := "SELECT (SELECT sum(v) FROM on_fast) || '/' || (SELECT sum(v) FROM on_base)"
	if got := c.QueryString(t, sums); got != want {
		t.Fatalf("sums on the tablespace / the data directory = %s, source %s", got, want)
	}

	// That copy, written to, then brought back to the backup by restore --delta: the
	// tablespace's files are judged like the data directory's, and a stray file in its
	// location goes.
	c.Exec(t, "INSERT INTO on_fast SELECT generate_series(1, 1000)")
	c.Exec(t, "CREATE TABLE stray (v int) TABLESPACE fast")
	c.Exec(t, "INSERT INTO stray VALUES (1)")
	c.Stop(t)
	stray, _ := filepath.Glob(filepath.Join(newSpc, "PG_*", "*", "*"))
	r := mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--tablespace-map", spc+"="+newSpc, "--delta")
	if !regexp.MustCompile(`--delta: [1-9]\d* of them already there and kept`).MatchString(r.stdout) {
		t.Fatalf("restore --delta kept nothing: %s", r)
	}
	gone := 0
	for _, f := range stray {
		if _, err := os.Lstat(f); err != nil {
			gone++
		}
	}
	if gone == 0 {
		t.Fatalf("restore --delta left every file of %s, the stray table's included", newSpc)
	}
	c = pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryString(t, sums); got != want {
		t.Fatalf("after restore --delta: sums = %s, source %s", got, want)
	}
	if n := c.QueryInt(t, "SELECT count(*) FROM pg_class WHERE relname = 'stray'"); n != 0 {
		t.Fatal("the stray table survived restore --delta")
	}

	// A --tablespace-map to a directory that is no tablespace's is refused, untouched.
	c.Stop(t)
	other := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "not-a-tablespace"))
	if err := os.WriteFile(filepath.Join(other, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := pgb(t, "", nil, "restore", "--repo", repo, "--pgdata", dir, "--tablespace-map", spc+"="+other, "--delta"); r.code == 0 || !strings.Contains(r.stderr, "keep.txt") {
		t.Fatalf("restore --delta into a directory that is no tablespace's: %s", r)
	}
	if b, err := os.ReadFile(filepath.Join(other, "keep.txt")); err != nil || string(b) != "mine" {
		t.Fatalf("the refused restore --delta touched %s: %q, %v", other, b, err)
	}
}
