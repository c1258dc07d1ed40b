package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// archivingCluster starts a cluster whose archive_command is pgb wal-push into repo.
func archivingCluster(t *testing.T, repo string, extra ...string) *pgtest.Cluster {
	t.Helper()
	return archivingClusterWith(t, append([]string{"--repo", repo}, extra...))
}

// archivingClusterWith starts a cluster whose archive_command is pgb wal-push with
// the given flags (which select the repository).
func archivingClusterWith(t *testing.T, flags []string) *pgtest.Cluster {
	t.Helper()
	bin := pgtest.BuildPGB(t)
	c := pgtest.NewCluster(t, pgtest.Options{
		ArchiveCommand: bin + " wal-push " + strings.Join(flags, " ") + " %p",
	})
	c.Start(t)
	return c
}

// checksumCluster starts a cluster initialised with data checksums whose
// archive_command is pgb wal-push into repo ("": no archiving), with extra settings.
func checksumCluster(t *testing.T, repo string, conf ...string) *pgtest.Cluster {
	t.Helper()
	opts := pgtest.Options{InitDBArgs: []string{"--data-checksums"}, Conf: conf}
	if repo != "" {
		opts.ArchiveCommand = pgtest.BuildPGB(t) + " wal-push --repo " + repo + " %p"
	}
	c := pgtest.NewCluster(t, opts)
	c.Start(t)
	return c
}

func newRepo(t *testing.T) string {
	t.Helper()
	return pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "repo"))
}

// doneSegments lists the segments pg_wal/archive_status marks as archived.
func doneSegments(t *testing.T, c *pgtest.Cluster) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.DataDir(), "pg_wal", "archive_status"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".done"); ok && len(name) == 24 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestArchiveCommandShipsEverySegmentByteForByte(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo, "--compression", "zstd")
	last := c.GenerateWAL(t, 12)
	c.WaitArchived(t, last, 60*time.Second)
	c.WaitArchiverIdle(t, 60*time.Second)

	stats := c.ArchiverStats(t)
	if stats.FailedCount != 0 {
		t.Fatalf("archiver failures: %+v\n%s", stats, c.LogTail(30))
	}
	done := doneSegments(t, c)
	if len(done) < 12 {
		t.Fatalf("only %d segments marked archived: %v", len(done), done)
	}
	var walObjects int
	for _, f := range repoFiles(t, repo) {
		if strings.HasPrefix(f, "wal/") {
			walObjects++
		}
	}
	if int64(walObjects) != stats.ArchivedCount {
		t.Fatalf("repository holds %d WAL objects, PostgreSQL archived %d", walObjects, stats.ArchivedCount)
	}

	fetchDir := pgtest.TempDir(t)
	for _, seg := range done {
		dest := filepath.Join(fetchDir, seg)
		mustPGB(t, "", nil, "wal-fetch", "--repo", repo, seg, dest)
		if !sameFile(t, c.WALFile(seg), dest) {
			t.Fatalf("fetched %s differs from pg_wal/%s", seg, seg)
		}
	}
	// Objects are compressed: a repository of zstd segments is far smaller than pg_wal.
	var stored int64
	for _, f := range repoFiles(t, repo) {
		fi, _ := os.Stat(filepath.Join(repo, f))
		stored += fi.Size()
	}
	if stored >= int64(walObjects)*16<<20/2 {
		t.Errorf("repository holds %d bytes for %d segments: not compressed?", stored, walObjects)
	}
}

func TestWalPushIsIdempotentAndRefusesDifferentContent(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	seg := c.SwitchWAL(t)
	c.WaitArchived(t, seg, 30*time.Second)
	key := filepath.Join(repo, "wal", seg[:16], seg)
	before, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}

	// PostgreSQL retries a segment after a crash: the same content again succeeds.
	r := mustPGB(t, c.DataDir(), nil, "wal-push", "--repo", repo, filepath.Join("pg_wal", seg))
	if !strings.Contains(r.stderr, "already archived with identical content") {
		t.Errorf("duplicate push did not say so:\n%s", r)
	}

	// Different content under the same name: refused, the stored object untouched.
	forged := filepath.Join(pgtest.TempDir(t), seg)
	data, err := os.ReadFile(c.WALFile(seg))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xFF
	if err := os.WriteFile(forged, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, "", nil, "wal-push", "--repo", repo, "--pgdata", c.DataDir(), forged)
	if r.code == 0 || !strings.Contains(r.stderr, "different content") {
		t.Fatalf("conflicting push: %s", r)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("error is not one line:\n%s", r.stderr)
	}
	after, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("stored object changed after a refused push")
	}
}

func TestWalPushRefusesBadInput(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)
	dir := pgtest.TempDir(t)
	stray := filepath.Join(dir, "postmaster.opts")
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "000000010000000000000099")
	if err := os.WriteFile(short, []byte("not a segment"), 0o600); err != nil {
		t.Fatal(err)
	}

	for name, args := range map[string][]string{
		"missing file":      {"wal-push", "--repo", repo, "--pgdata", c.DataDir(), filepath.Join(dir, "000000010000000000000042")},
		"not a WAL name":    {"wal-push", "--repo", repo, "--pgdata", c.DataDir(), stray},
		"not a WAL segment": {"wal-push", "--repo", repo, "--pgdata", c.DataDir(), short},
		"no argument":       {"wal-push", "--repo", repo},
		"no repository":     {"wal-push", "--pgdata", c.DataDir(), short},
		"relative repo":     {"wal-push", "--repo", "relative/dir", "--pgdata", c.DataDir(), short},
		"unknown scheme":    {"wal-push", "--repo", "ftp://bucket/prefix", "--pgdata", c.DataDir(), short},
		"bad compression":   {"wal-push", "--repo", repo, "--compression", "gzip", "--pgdata", c.DataDir(), short},
	} {
		r := pgb(t, "", nil, args...)
		if r.code == 0 || !strings.HasPrefix(r.stderr, "pgb: error: ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: want a one-line error and a non-zero exit, got %s", name, r)
		}
	}
	if files := repoFiles(t, repo); slices.ContainsFunc(files, func(f string) bool {
		return strings.Contains(f, "0000000100000000000000") && strings.HasSuffix(f, "99")
	}) {
		t.Errorf("refused file reached the repository: %v", files)
	}
}

func TestRepositoryOfAnotherClusterIsRefused(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	a := archivingCluster(t, repo)
	a.WaitArchived(t, a.SwitchWAL(t), 30*time.Second)

	// A second cluster wired to the same repository: every push fails, nothing lands.
	b := archivingCluster(t, repo)
	seg := b.SwitchWAL(t)
	b.WaitFor(t, "the foreign cluster's archive_command to fail", 30*time.Second, func() (bool, string, error) {
		st := b.ArchiverStats(t)
		return st.FailedCount > 0, fmt.Sprintf("%+v", st), nil
	})
	if st := b.ArchiverStats(t); st.ArchivedCount != 0 {
		t.Fatalf("foreign cluster archived into the repository: %+v", st)
	}
	r := pgb(t, b.DataDir(), nil, "wal-push", "--repo", repo, filepath.Join("pg_wal", seg))
	if r.code == 0 || !strings.Contains(r.stderr, "belongs to another cluster") {
		t.Fatalf("foreign push: %s", r)
	}
	if !strings.Contains(b.LogTail(200), "belongs to another cluster") {
		t.Errorf("PostgreSQL's log does not show why archiving failed:\n%s", b.LogTail(30))
	}
}
