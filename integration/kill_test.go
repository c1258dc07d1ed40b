package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

// killScale multiplies the kills of TestKillingPgbAtRandomInstantsLosesNothing:
// PGB_KILLTEST_SCALE (make killtest sets it), 1 by default.
func killScale(t *testing.T) int {
	t.Helper()
	v := os.Getenv("PGB_KILLTEST_SCALE")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("PGB_KILLTEST_SCALE=%q: want a positive integer", v)
	}
	return n
}

// killSeed is the seed of the kill instants: PGB_KILLTEST_SEED replays a run, whose
// seed the test logs.
func killSeed(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv("PGB_KILLTEST_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("PGB_KILLTEST_SEED=%q: %v", v, err)
		}
		return n
	}
	return rand.Uint64()
}

// killer runs pgb commands and SIGKILLs them at random instants.
type killer struct {
	t      *testing.T
	rnd    *rand.Rand
	landed map[string]int // kills that hit a running command, by command
	missed map[string]int // runs that ended before their kill
	of     map[string]int // kills counted in landed, by what they hit (encrypted writes, a restore past pg_control)
}

// runKilled runs pgb with args and sends it SIGKILL after a random delay up to
// within: the test's input, not a synchronisation (the command may end first, which
// is fine). It reports whether the kill landed and, when it did not, what the run did.
func (k *killer) runKilled(name string, env []string, within time.Duration, args ...string) (bool, result) {
	k.t.Helper()
	cmd := exec.Command(pgtest.BuildPGB(k.t), args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	delay := time.Duration(k.rnd.Int64N(int64(within) + 1))
	timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	_ = cmd.Wait()
	timer.Stop()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	if ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		k.landed[name]++
		return true, r
	}
	k.missed[name]++
	return false, r
}

// timed runs pgb once to the end and returns how long it took: the window the kills
// of that command are spread over.
func timed(t *testing.T, env []string, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	mustPGB(t, "", env, args...)
	return time.Since(start)
}

// Every pgb command that writes or restores is killed with SIGKILL at random
// instants, at least 200 times in all (PGB_KILLTEST_SCALE times more with make
// killtest): wal-push (a call's own upload, and the look-ahead archiver PostgreSQL's
// calls hand their segments to), backup-push (full, incremental, encrypted), delete,
// restore (of a full backup and of an incremental one) and restore --delta. After every
// kill the invariants hold: a WAL object is either absent or whole and verified; only
// complete backups are listed, and pgb verify passes on them; the next run of the
// command succeeds; a killed restore never leaves global/pg_control in place, and a
// killed delta restore only the one it started from. At the
// end, pgb delete --garbage removes what the kills left, pgb verify --wal passes, and
// a restore to the end of the archive recovers every committed row.
func TestKillingPgbAtRandomInstantsLosesNothing(t *testing.T) {
	pgtest.RequireParallel(t)
	scale := killScale(t)
	seed := killSeed(t)
	t.Logf("kill instants: PGB_KILLTEST_SEED=%d, scale %d", seed, scale)
	k := &killer{t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), landed: map[string]int{}, missed: map[string]int{}, of: map[string]int{}}
	defer func() {
		total := 0
		for _, n := range k.landed {
			total += n
		}
		t.Logf("kills that landed: %d in all %v, of them %v; runs that ended first: %v", total, k.landed, k.of, k.missed)
	}()

	repo := newRepo(t)
	src := archivingCluster(t, repo)
	env := src.Env()
	// Every other backup and every other wal-push repository is encrypted (age): the
	// kills hit encrypted writes too. Readers always hold the identity (harmless for
	// what is not encrypted); the MAC key goes through the environment.
	keys := keygen(t)
	rd := []string{"--encryption-identity-file", keys.identity}
	encFlags := []string{"--encryption", "age", "--encryption-recipients", keys.recipient}
	encEnv := append(append([]string(nil), env...), "PGB_ENCRYPTION_MAC_KEY="+keys.macKey)
	encNoPG := []string{"PGB_ENCRYPTION_MAC_KEY=" + keys.macKey}
	src.Exec(t, "CREATE TABLE k (id bigserial PRIMARY KEY, pad text)")
	commit := func(n int) {
		src.Exec(t, "INSERT INTO k (pad) SELECT repeat('x', 200) FROM generate_series(1, $1)", n)
	}
	commit(20000)
	mustPGB(t, "", env, "backup-push", "--repo", repo, "--fast")

	// The look-ahead archiver, killed while PostgreSQL's calls hand it bursts of
	// segments: archiving goes on (a call whose archiver is gone ships its segment
	// itself), and every segment ends up archived whole (checked by verify below).
	archiver := "_wal-push-archiver.*--repo " + repo
	for i := 0; i < 10*scale; i++ {
		hit := make(chan bool, 1)
		// A random instant of the burst: the test's input, not a synchronisation.
		timer := time.AfterFunc(time.Duration(k.rnd.Int64N(int64(300*time.Millisecond))), func() {
			hit <- exec.Command("pkill", "-KILL", "-f", archiver).Run() == nil
		})
		src.GenerateWAL(t, 3)
		if !timer.Stop() && <-hit {
			k.landed["wal-push archiver"]++
		} else {
			k.missed["wal-push archiver"]++
		}
	}
	src.WaitArchived(t, src.SwitchWAL(t), 2*time.Minute)

	// wal-push calls killed during their own upload (a file outside a data directory
	// is shipped by the call itself), into repositories of their own: after each kill
	// the segment is either not archived or archived whole, and pushing it again
	// succeeds and archives exactly its bytes.
	segDir := pgtest.TempDir(t)
	var segs []string
	for _, name := range doneSegments(t, src) {
		if len(segs) == 8 {
			break
		}
		p := filepath.Join(segDir, name)
		if r := pgb(t, "", nil, "wal-fetch", "--repo", repo, name, p); r.code != 0 {
			continue // recycled, or before the first backup: not needed here
		}
		segs = append(segs, p)
	}
	if len(segs) < 4 {
		t.Fatalf("only %d archived segments to push", len(segs))
	}
	wr := newRepo(t)
	fetched := filepath.Join(pgtest.TempDir(t), "fetched")
	push := timed(t, nil, "wal-push", "--repo", wr, segs[0])
	check := func(wr, seg string) {
		t.Helper()
		out := fetched
		r := pgb(t, "", nil, append(append([]string{"wal-fetch", "--repo", wr}, rd...), filepath.Base(seg), out)...)
		switch r.code {
		case 1: // not archived: the kill came before the object was in place
		case 255: // a kill before the repository's identity was written: nothing else may be there
			var objects []string // temp files of interrupted writes are no objects
			for _, f := range repoFiles(t, wr) {
				if !strings.HasPrefix(filepath.Base(f), ".tmp-") {
					objects = append(objects, f)
				}
			}
			if !strings.Contains(r.stderr, "not initialised") || len(objects) != 0 {
				t.Fatalf("wal-fetch after a killed wal-push: %s\nrepository: %v", r, objects)
			}
		case 0:
			if !sameFile(t, out, seg) {
				t.Fatalf("a killed wal-push left %s archived with other bytes", filepath.Base(seg))
			}
		default:
			t.Fatalf("wal-fetch after a killed wal-push (a damaged object?): %s", r)
		}
		_ = os.Remove(out)
	}
	encrypted := false
	for i := 0; k.landed["wal-push"] < 80*scale; i++ {
		if i == len(segs) { // every segment archived: kill uploads into a new repository
			i = 0
			wr = newRepo(t)
			encrypted = !encrypted
		}
		seg := segs[i]
		args, wenv := []string{"wal-push", "--repo", wr, seg}, []string(nil)
		if encrypted {
			args, wenv = append(append([]string{"wal-push", "--repo", wr}, encFlags...), seg), encNoPG
		}
		landed, r := k.runKilled("wal-push", wenv, push, args...)
		if !landed && r.code != 0 {
			t.Fatalf("wal-push that was not killed: %s", r)
		}
		check(wr, seg)
		mustPGB(t, "", wenv, args...)
		check(wr, seg)
		if encrypted && landed {
			k.of["wal-push, encrypted"]++
		}
	}

	// backup-push killed at any point from connecting to writing its manifest: only
	// complete backups are listed, and verify passes on them.
	// verify checks the backup named, or every backup when name is "": verifying all of
	// them after every tenth kill would grow with the square of the kills.
	verify := func(what, name string) {
		t.Helper()
		args := append([]string{"verify", "--repo", repo}, rd...)
		if name != "" {
			args = append(args, "--backup", name)
		}
		if r := pgb(t, "", nil, args...); r.code != 0 {
			t.Fatalf("verify after %s: %s", what, r)
		}
	}
	backups := func() []string {
		t.Helper()
		var rows []struct {
			Name string `json:"name"`
		}
		out := mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json")
		if err := json.Unmarshal([]byte(out.stdout), &rows); err != nil {
			t.Fatalf("backup-list --json: %v\n%s", err, out.stdout)
		}
		var names []string
		for _, r := range rows {
			names = append(names, r.Name)
		}
		return names
	}
	bp := timed(t, env, "backup-push", "--repo", repo, "--fast")
	for n := 0; k.landed["backup-push"] < 60*scale; n++ {
		commit(100)
		before := len(backups())
		args, benv := []string{"backup-push", "--repo", repo, "--fast"}, env
		switch {
		case n%2 == 1:
			args, benv = append(args, encFlags...), encEnv
		case n%4 == 2: // on the newest backup, or a full one when that is encrypted
			args = append(args, "--incremental")
		}
		landed, r := k.runKilled("backup-push", benv, bp, args...)
		if landed && n%2 == 1 {
			k.of["backup-push, encrypted"]++
		}
		if landed && n%4 == 2 {
			k.of["backup-push, incremental"]++
		}
		after := len(backups())
		switch {
		case !landed && r.code != 0:
			t.Fatalf("backup-push that was not killed: %s", r)
		case !landed && after != before+1:
			t.Fatalf("backup-push succeeded, but %d backups are listed, %d before", after, before)
		case landed && after > before+1:
			t.Fatalf("a killed backup-push left %d backups listed, %d before", after, before)
		}
		if n%20 == 19 {
			// What the killed runs left (parts without a manifest) goes now and then:
			// every listing reads it, and make killtest's thousands of kills would make
			// the run grow with the square of them.
			mustPGB(t, "", nil, "delete", "--repo", repo, "--garbage", "--grace", "1ms", "--confirm")
		}
		if names := backups(); n%10 == 9 && len(names) > 0 {
			verify("killed backup-pushes", names[len(names)-1])
		}
	}
	verify("killed backup-pushes", "")
	mustPGB(t, "", env, "backup-push", "--repo", repo, "--fast") // the next run succeeds

	// delete killed while it removes backups and WAL: what stays listed verifies, and
	// the delete run again finishes the work. The backups from here on are full ones:
	// the incremental ones above (and the full ones they build on) go first, so that
	// --retain-full 2 keeps two backups and every delete below has some to remove.
	mustPGB(t, "", nil, "delete", "--repo", repo, "--retain-full", "1", "--confirm")
	del := []string{"delete", "--repo", repo, "--retain-full", "2", "--confirm"}
	for len(backups()) < 4 {
		commit(100)
		mustPGB(t, "", env, "backup-push", "--repo", repo, "--fast")
	}
	// Timed on a run that deletes two backups and their WAL; the kills come within the
	// first three quarters of that, so that most land on a running delete.
	dt := timed(t, nil, del...) * 3 / 4
	for n := 0; k.landed["delete"] < 30*scale; n++ {
		for len(backups()) < 4 {
			commit(100)
			mustPGB(t, "", env, "backup-push", "--repo", repo, "--fast")
		}
		landed, r := k.runKilled("delete", nil, dt, del...)
		if !landed && r.code != 0 {
			t.Fatalf("delete that was not killed: %s", r)
		}
		if n%5 == 4 {
			verify("killed deletes", "") // two to four backups
		}
	}
	mustPGB(t, "", nil, del...)
	if got := backups(); len(got) != 2 {
		t.Fatalf("after the delete ran to its end: backups %v, want 2", got)
	}
	verify("killed deletes", "")

	// restore killed while it writes the data directory: pg_control appears only once
	// every file is whole and synced, so a killed restore either has no pg_control
	// (PostgreSQL will not start on it) or is the whole restore (killed during its last
	// steps: removing its incomplete-markers, printing its summary). Every other
	// restore is of an incremental backup, written from its chain.
	full := backups()[len(backups())-1]
	commit(100)
	mustPGB(t, "", env, "backup-push", "--repo", repo, "--fast", "--incremental")
	incr := backups()[len(backups())-1]
	whole := map[string]string{}
	var rt time.Duration
	for _, b := range []string{full, incr} {
		whole[b] = filepath.Join(pgtest.TempDir(t), "whole-"+b)
		rt = max(rt, timed(t, nil, append([]string{"restore", "--repo", repo, "--pgdata", whole[b], "--backup", b}, rd...)...))
	}
	for n := 0; k.landed["restore"] < 30*scale; n++ {
		b := []string{full, incr}[n%2]
		dir := filepath.Join(pgtest.TempDir(t), "killed")
		landed, r := k.runKilled("restore", nil, rt, append([]string{"restore", "--repo", repo, "--pgdata", dir, "--backup", b}, rd...)...)
		switch {
		case !landed && r.code != 0:
			t.Fatalf("restore that was not killed: %s", r)
		case landed && fileExists(filepath.Join(dir, "global", "pg_control")):
			if diff := treeDiff(t, whole[b], dir); diff != "" {
				t.Fatalf("a killed restore of %s left global/pg_control in %s, which is not the whole restore: %s", b, dir, diff)
			}
			k.of["restore, after pg_control"]++
		}
		if landed && b == incr {
			k.of["restore, of an incremental backup"]++
		}
		_ = os.RemoveAll(dir)
	}

	// restore --delta killed while it brings a copy of one backup to the other (full to
	// incremental and back): pg_control is removed first and put back last, so a killed
	// delta restore leaves either the copy it started from (killed before it removed
	// anything) or no pg_control; the same command run again finishes it, and the
	// directory is then exactly what a restore into an empty one makes.
	dir := filepath.Join(pgtest.TempDir(t), "delta")
	mustPGB(t, "", nil, append([]string{"restore", "--repo", repo, "--pgdata", dir, "--backup", full}, rd...)...)
	deltaTo := func(b string) []string {
		return append([]string{"restore", "--delta", "--repo", repo, "--pgdata", dir, "--backup", b}, rd...)
	}
	deltaTime := timed(t, nil, deltaTo(incr)...)
	if diff := treeDiff(t, whole[incr], dir); diff != "" {
		t.Fatalf("restore --delta from a copy of %s to %s is not what a restore into an empty directory makes: %s", full, incr, diff)
	}
	for n := 0; k.landed["restore --delta"] < 20*scale; n++ {
		b, from := []string{full, incr}[n%2], []string{incr, full}[n%2]
		landed, r := k.runKilled("restore --delta", nil, deltaTime, deltaTo(b)...)
		switch {
		case !landed && r.code != 0:
			t.Fatalf("restore --delta that was not killed: %s", r)
		case landed && fileExists(filepath.Join(dir, "global", "pg_control")):
			// Killed before it removed anything, it may have left the temporary file
			// of its incomplete-marker (.pgb-tmp-…), which the next run removes.
			if killedTreeDiff(t, whole[b], dir) != "" && killedTreeDiff(t, whole[from], dir) != "" {
				t.Fatalf("a killed restore --delta to %s left global/pg_control in %s, which is neither the copy of %s it started from (%s) nor the whole restore (%s)",
					b, dir, from, killedTreeDiff(t, whole[from], dir), killedTreeDiff(t, whole[b], dir))
			}
			k.of["restore --delta, with pg_control"]++
		}
		if landed {
			mustPGB(t, "", nil, deltaTo(b)...)
		}
		if diff := treeDiff(t, whole[b], dir); diff != "" {
			t.Fatalf("restore --delta to %s, run again after a kill, is not what a restore into an empty directory makes: %s", b, diff)
		}
	}

	// What the kills left behind goes; the archive is whole; every committed row is
	// recovered from the newest backup and the WAL after it.
	commit(1000)
	src.GenerateWAL(t, 16) // WAL for the final recovery to fetch, while its prefetcher is killed
	commit(1000)
	want := src.QueryInt(t, "SELECT count(*) FROM k")
	src.WaitArchived(t, src.SwitchWAL(t), 2*time.Minute)
	mustPGB(t, "", nil, "delete", "--repo", repo, "--garbage", "--grace", "1ms", "--confirm")
	if r := pgb(t, "", nil, append([]string{"verify", "--repo", repo, "--wal"}, rd...)...); r.code != 0 {
		t.Fatalf("verify --wal at the end: %s", r)
	}
	dir = filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, append([]string{"restore", "--repo", repo, "--pgdata", dir}, rd...)...)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	// The wal-fetch prefetcher is killed at random instants while recovery runs:
	// recovery takes only verified segments from its spool, and fetches the rest itself.
	prefetcher := "_prefetch.*--repo[= ]" + repo // restore_command passes --repo=DIR on
	stop, killed := make(chan struct{}), make(chan [2]int, 1)
	go func() {
		var landed, missed int
		defer func() { killed <- [2]int{landed, missed} }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(k.rnd.Int64N(int64(200 * time.Millisecond)))): // a random instant: the input
			}
			if exec.Command("pkill", "-KILL", "-f", prefetcher).Run() == nil {
				landed++
			} else {
				missed++
			}
		}
	}()
	c.Start(t)
	c.WaitRecoveryDone(t, 2*time.Minute)
	close(stop)
	pk := <-killed
	k.landed["wal-fetch prefetcher"] += pk[0]
	k.missed["wal-fetch prefetcher"] += pk[1]
	if got := c.QueryInt(t, "SELECT count(*) FROM k"); got != want {
		t.Fatalf("restore to the end after %s: %d rows, want %d", fmt.Sprint(k.landed), got, want)
	}
	total := 0
	for _, n := range k.landed {
		total += n
	}
	if total < 200*scale {
		t.Fatalf("%d kills landed, want at least %d", total, 200*scale)
	}
}

// treeDiff compares the restored directory got with want, file by file (content, and
// link targets), leaving out restore's incomplete-marker and its record (which holds
// the directory's own inodes and times): "" when they are the same.
func treeDiff(t *testing.T, want, got string) string {
	t.Helper()
	return diffTrees(t, want, got, false)
}

// killedTreeDiff is treeDiff for a directory a killed restore left: the temporary
// files of its interrupted atomic writes (.pgb-tmp-…) are left out too.
func killedTreeDiff(t *testing.T, want, got string) string {
	t.Helper()
	return diffTrees(t, want, got, true)
}

func diffTrees(t *testing.T, want, got string, skipTemp bool) string {
	t.Helper()
	const marker = ".pgb-restore-incomplete"
	list := func(root string) map[string]string {
		out := map[string]string{}
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			switch {
			case rel == "." || d.Name() == marker || rel == ".pgb-restored":
			case skipTemp && strings.HasPrefix(d.Name(), ".pgb-tmp-"):
			case d.Type()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				out[rel] = "link " + target
			case d.IsDir():
				out[rel] = "dir"
			default:
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				out[rel] = string(b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	w, g := list(want), list(got)
	for p, v := range w {
		if gv, ok := g[p]; !ok {
			return p + " is missing"
		} else if gv != v {
			return p + " differs"
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			return p + " should not be there"
		}
	}
	return ""
}
