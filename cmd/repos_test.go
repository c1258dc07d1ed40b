package cmd

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/waltest"
)

// With two repositories, wal-push stores a segment in both and exits 0 only when both
// hold it: one that cannot be written fails the push, which PostgreSQL retries; the
// retry fills it in. wal-fetch falls through to the next repository when one lacks the
// segment or cannot be read, and says "not in the archive" (exit 1) only when every
// one answered that it is not there.
func TestTwoRepositoriesEachGetEveryWALFileAndFetchFallsThrough(t *testing.T) {
	isolate(t)
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	t.Setenv("PGB_REPOS", "a="+a+",b="+b)
	dir := waltest.DataDir(t, 42)
	const seg1, seg2, seg3 = "000000010000000000000001", "000000010000000000000002", "000000010000000000000003"
	body := map[string][]byte{seg1: waltest.Stamped(seg1, waltest.Segment(42, 1)), seg2: waltest.Stamped(seg2, waltest.Segment(42, 2))}
	stored := func(repo, name string) bool {
		_, err := os.Stat(filepath.Join(repo, "wal", "0000000100000000", name))
		return err == nil
	}
	if r := pgb(t, "wal-push", "--pgdata", dir, waltest.WriteWAL(t, dir, seg1, body[seg1])); r.code != 0 {
		t.Fatalf("wal-push: %+v", r)
	}
	if !stored(a, seg1) || !stored(b, seg1) {
		t.Fatal("the segment is not in both repositories")
	}

	// b cannot be written (its path is a file): the push fails and names b; a has it.
	must(t, os.Rename(b, b+".away"))
	must(t, os.WriteFile(b, nil, 0o600))
	p2 := waltest.WriteWAL(t, dir, seg2, body[seg2])
	r := pgb(t, "wal-push", "--pgdata", dir, p2)
	if r.code == 0 || !strings.Contains(r.stderr, "repository b:") || strings.Contains(r.stderr, "repository a:") {
		t.Fatalf("push with b down: %+v, want a failure naming b alone", r)
	}
	if !stored(a, seg2) {
		t.Fatal("a does not have the segment b failed")
	}
	must(t, os.Remove(b))
	must(t, os.Rename(b+".away", b))
	if r := pgb(t, "wal-push", "--pgdata", dir, p2); r.code != 0 || !stored(b, seg2) {
		t.Fatalf("retry: %+v, stored in b: %v", r, stored(b, seg2))
	}
	// --repo restricts a push to one repository.
	p3 := waltest.WriteWAL(t, dir, seg3, waltest.Stamped(seg3, waltest.Segment(42, 3)))
	if r := pgb(t, "wal-push", "--pgdata", dir, "--repo", "b", p3); r.code != 0 || stored(a, seg3) || !stored(b, seg3) {
		t.Fatalf("--repo b: %+v; in a %v, in b %v", r, stored(a, seg3), stored(b, seg3))
	}

	t.Chdir(dir) // restore_command runs in the data directory
	dest := filepath.Join(base, "fetched")
	fetch := func(name string, args ...string) outcome {
		_ = os.Remove(dest)
		return pgb(t, append(append([]string{"wal-fetch", "--wal-fetch-prefetch", "0"}, args...), name, dest)...)
	}
	must(t, os.Remove(filepath.Join(a, "wal", "0000000100000000", seg1)))
	if r := fetch(seg1); r.code != 0 {
		t.Fatalf("fetch of a segment only b has: %+v", r)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, body[seg1]) {
		t.Fatal("fetched bytes differ")
	}
	if r := fetch(seg1, "--repo", "a"); r.code != exitError {
		t.Fatalf("--repo a, which lacks it: %+v, want exit 1", r)
	}
	if r := fetch("000000010000000000000009"); r.code != exitError {
		t.Fatalf("in neither: %+v, want exit 1 (the end of the archive)", r)
	}
	// a cannot be read: a segment in b is fetched; one in neither is not the end of
	// the archive (a may hold it), and recovery stops.
	must(t, os.Rename(a, a+".away"))
	must(t, os.WriteFile(a, nil, 0o600))
	if r := fetch(seg2); r.code != 0 {
		t.Fatalf("fetch from b with a unreadable: %+v", r)
	}
	if r := fetch("000000010000000000000009"); r.code != exitRecoveryMustStop || !strings.Contains(r.stderr, "repository a:") {
		t.Fatalf("in b not, a unreadable: %+v, want exit %d naming a", r, exitRecoveryMustStop)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("a failed fetch wrote its destination")
	}
	// a failed lately: it is asked after b, so a fetch b can serve does not wait on it.
	mark := filepath.Join(dir, "pg_wal", "pgb", "fetch-failing", "a")
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the failure of a is not remembered: %v", err)
	}
	if r := fetch(seg2); r.code != 0 || strings.Contains(r.stderr, "this repository failed") {
		t.Fatalf("fetch with a failing lately: %+v, want b asked first", r)
	}
	// a is back and answers: it is forgotten, and still asked for what only it has.
	must(t, os.Remove(a))
	must(t, os.Rename(a+".away", a))
	must(t, os.Remove(filepath.Join(b, "wal", "0000000100000000", seg2)))
	if r := fetch(seg2); r.code != 0 {
		t.Fatalf("fetch of a segment only a has, a demoted: %+v", r)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a answered, but its failure is still remembered")
	}
}

// Read commands go through every repository: backup-list --json is one document with
// each repository's result; a command made for one repository asks which.
func TestReadCommandsCoverEachRepository(t *testing.T) {
	isolate(t)
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	t.Setenv("PGB_REPOS", "a="+a+",b="+b)
	dir := waltest.DataDir(t, 42)
	seg1 := "000000010000000000000001"
	if r := pgb(t, "wal-push", "--pgdata", dir, waltest.WriteWAL(t, dir, seg1, waltest.Stamped(seg1, waltest.Segment(42, 1)))); r.code != 0 {
		t.Fatalf("wal-push: %+v", r)
	}
	r := pgb(t, "backup-list", "--json")
	var doc struct {
		Repositories []struct {
			Name     string          `json:"name"`
			Repo     string          `json:"repo"`
			Result   json.RawMessage `json:"result"`
			ExitCode int             `json:"exit_code"`
		} `json:"repositories"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
		t.Fatalf("backup-list --json: %+v (%v)", r, err)
	}
	if len(doc.Repositories) != 2 || doc.Repositories[0].Name != "a" || doc.Repositories[1].Repo != b || string(doc.Repositories[0].Result) != "[]" {
		t.Errorf("document = %+v", doc)
	}
	r = pgb(t, "backup-list")
	if r.code != 0 || !strings.Contains(r.stdout, "== repository a ("+a+")") || !strings.Contains(r.stdout, "== repository b ("+b+")") {
		t.Errorf("backup-list: %+v", r)
	}
	if r := pgb(t, "backup-mark", "--permanent", "x"); r.code != exitUsage || !strings.Contains(r.stderr, "give --repo with one of a, b") {
		t.Errorf("backup-mark without --repo: %+v", r)
	}
	if r := pgb(t, "backup-list", "--repo", "c"); r.code != exitUsage || !strings.Contains(r.stderr, `--repo / PGB_REPO "c"`) {
		t.Errorf("unknown repository: %+v", r)
	}
}

// A restore whose every repository fails says why in one line: never a crash.
func TestRestoreWithNoUsableRepositorySaysWhy(t *testing.T) {
	isolate(t)
	base := t.TempDir()
	t.Setenv("PGB_REPOS", "a="+filepath.Join(base, "a")+",b="+filepath.Join(base, "b"))
	for _, args := range [][]string{
		{"restore", "--pgdata", filepath.Join(base, "new")},
		{"restore", "--dry-run"},
		{"restore", "--pgdata", filepath.Join(base, "new"), "--repo", "b"},
	} {
		r := pgb(t, args...)
		if r.code == 0 || strings.Contains(r.stderr, "internal error") || !strings.Contains(r.stderr, "repository b") {
			t.Errorf("%v: %+v, want one line naming the repository that failed", args, r)
		}
	}
}

// With repos, a file a command writes for each repository gets the repository's name.
func TestPerRepositoryFilesDoNotOverwriteEachOther(t *testing.T) {
	e := &env{}
	if got := e.perRepoFile("/var/lib/prom/pgb.prom"); got != "/var/lib/prom/pgb.prom" {
		t.Errorf("one repository: %s", got)
	}
	e.cfg.RepoName = "offsite"
	for in, want := range map[string]string{"/var/lib/prom/pgb.prom": "/var/lib/prom/pgb.offsite.prom", "report": "report.offsite", "": ""} {
		if got := e.perRepoFile(in); got != want {
			t.Errorf("perRepoFile(%q) = %q, want %q", in, got, want)
		}
	}
}

// Another cluster's repository never ends recovery early: a segment of that name there
// is never served (its header names the other cluster); among several it hides no
// file another repository has; a file in none stops recovery (exit 255), on a standby
// too, rather than be called not archived.
func TestAForeignRepositoryAmongSeveralNeitherHidesNorEndsTheArchive(t *testing.T) {
	isolate(t)
	base := t.TempDir()
	foreign, own := filepath.Join(base, "foreign"), filepath.Join(base, "own")
	other := waltest.DataDir(t, 43)
	const seg1 = "000000010000000000000001"
	if r := pgb(t, "wal-push", "--pgdata", other, "--repo", foreign, waltest.WriteWAL(t, other, seg1, waltest.Stamped(seg1, waltest.Segment(43, 1)))); r.code != 0 {
		t.Fatalf("wal-push into the foreign repository: %+v", r)
	}
	dir := waltest.DataDir(t, 42)
	body := waltest.Stamped(seg1, waltest.Segment(42, 1))
	if r := pgb(t, "wal-push", "--pgdata", dir, "--repo", own, waltest.WriteWAL(t, dir, seg1, body)); r.code != 0 {
		t.Fatalf("wal-push: %+v", r)
	}
	t.Setenv("PGB_REPOS", "foreign="+foreign+",own="+own)
	t.Chdir(dir)
	dest := filepath.Join(base, "fetched")
	if r := pgb(t, "wal-fetch", "--wal-fetch-prefetch", "0", seg1, dest); r.code != 0 {
		t.Fatalf("fetch with another cluster's repository first: %+v", r)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, body) {
		t.Fatal("fetched bytes differ")
	}
	// One repository, another cluster's, that holds a segment of that name: its bytes
	// are never served (PostgreSQL would take them for the end of its WAL).
	t.Setenv("PGB_REPOS", "")
	_ = os.Remove(dest)
	if r := pgb(t, "wal-fetch", "--wal-fetch-prefetch", "0", "--repo", foreign, seg1, dest); r.code != exitRecoveryMustStop || !strings.Contains(r.stderr, "wrong repository") {
		t.Fatalf("fetch of another cluster's segment: %+v, want exit %d", r, exitRecoveryMustStop)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("another cluster's segment was written to its destination")
	}
	t.Setenv("PGB_REPOS", "foreign="+foreign+",own="+own)
	must(t, os.WriteFile("standby.signal", nil, 0o600))
	if r := pgb(t, "wal-fetch", "--wal-fetch-prefetch", "0", "000000010000000000000009", dest); r.code != exitRecoveryMustStop || !strings.Contains(r.stderr, "repository foreign") {
		t.Fatalf("a file in neither, one repository another cluster's: %+v, want exit %d naming it", r, exitRecoveryMustStop)
	}
}

// pgb delete --retain-full on the command line is what the run keeps in every
// repository, over the entries; without it each entry's own retention applies.
func TestRetentionOnTheCommandLineBeatsTheEntries(t *testing.T) {
	set := flag.NewFlagSet("delete", flag.ContinueOnError)
	set.String("retain-full", "", "")
	set.String("retain-days", "", "")
	if err := set.Parse([]string{"--retain-full", "8"}); err != nil {
		t.Fatal(err)
	}
	app := &cli.App{Metadata: map[string]any{"args": []string{"pgb", "delete", "--retain-full", "8"}}}
	c := cli.NewContext(app, set, nil)
	e := &env{}
	e.cfg.RepoName, e.cfg.RetainFull, e.cfg.RetainDays = "offsite", 2, 30
	e.retentionFlags(c)
	if e.cfg.RetainFull != 8 || e.cfg.RetainDays != 30 {
		t.Errorf("retain-full %d, retain-days %d; want the command line's 8 and the entry's 30", e.cfg.RetainFull, e.cfg.RetainDays)
	}
	app.Metadata["args"] = []string{"pgb", "delete"}
	e.cfg.RetainFull = 2
	e.retentionFlags(c)
	if e.cfg.RetainFull != 2 {
		t.Errorf("without the flag on the command line: retain-full %d, want the entry's 2", e.cfg.RetainFull)
	}
}
