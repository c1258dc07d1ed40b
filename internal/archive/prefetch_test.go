package archive

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestNextNamesFollowTimelineSwitchesAsPostgreSQLAsks(t *testing.T) {
	for _, c := range []struct {
		name    string
		req     string
		target  uint32 // timeline of the history; 0: none (only req's timeline)
		history string
		k       int
		want    [][]string
	}{
		{name: "no history", req: "000000010000000000000003", k: 3, want: [][]string{
			{"000000010000000000000004"}, {"000000010000000000000005"}, {"000000010000000000000006"}}},
		{name: "log rollover", req: "0000000100000000000000FE", k: 3, want: [][]string{
			{"0000000100000000000000FF"}, {"000000010000000100000000"}, {"000000010000000100000001"}}},
		{name: "switch in the middle of a segment: both timelines hold it, the new one first",
			req: "000000010000000000000003", target: 2, history: "1\t0/5000100\tno recovery target specified\n", k: 4,
			want: [][]string{{"000000010000000000000004"}, {"000000020000000000000005", "000000010000000000000005"},
				{"000000020000000000000006"}, {"000000020000000000000007"}}},
		{name: "switch on a segment boundary", req: "000000010000000000000003", target: 2, history: "1\t0/5000000\tx\n", k: 2,
			want: [][]string{{"000000010000000000000004"}, {"000000020000000000000005", "000000010000000000000005"}}},
		{name: "already on the new timeline: never back to an older one",
			req: "000000020000000000000006", target: 2, history: "1\t0/5000100\tx\n", k: 2,
			want: [][]string{{"000000020000000000000006"[:16] + "00000007"}, {"000000020000000000000008"}}},
		{name: "two switches", req: "000000010000000000000006", target: 3, history: "1\t0/5000100\tx\n2\t0/8000028\ty\n", k: 3,
			want: [][]string{{"000000020000000000000007", "000000010000000000000007"},
				{"000000030000000000000008", "000000020000000000000008"}, {"000000030000000000000009"}}},
		{name: "a history of another branch is not followed",
			req: "000000040000000000000006", target: 3, history: "1\t0/5000100\tx\n2\t0/8000028\ty\n", k: 1,
			want: [][]string{{"000000040000000000000007"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := wal.Parse(c.req)
			if err != nil {
				t.Fatal(err)
			}
			var spans []wal.TimelineSpan
			if c.target != 0 {
				if spans, err = wal.ParseHistory(c.target, []byte(c.history)); err != nil {
					t.Fatal(err)
				}
			}
			if got := NextNames(req, segSize, spans, c.k); !reflect.DeepEqual(got, c.want) {
				t.Errorf("NextNames = %v, want %v", got, c.want)
			}
		})
	}
}

// pushed is a repository holding segments 1..n of timeline 1 of cluster 42.
func pushed(t *testing.T, st storage.Store, n int) (*Archive, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	a := newArchive(t, st, "lz4")
	dir := dataDir(t, 42)
	segs := map[string][]byte{}
	for i := 1; i <= n; i++ {
		name := wal.SegmentFileName(1, uint64(i), segSize)
		segs[name] = segment(42, int64(i))
		if _, err := a.Push(ctx, writeWAL(t, dir, name, segs[name]), cluster(t, dir)); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(filepath.Join(dir, "pg_wal", name))
	}
	return a, segs
}

func spoolFor(t *testing.T, a *Archive, dir, name string) {
	t.Helper()
	p := &Prefetcher{Archive: a, Dir: dir, Timeout: time.Minute}
	id, err := a.RepoID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if found, err := p.spoolOne(context.Background(), name, id); err != nil || !found {
		t.Fatalf("spool %s: found %v, %v", name, found, err)
	}
}

func TestASpooledCopyIsServedOnlyWhenItIsThisRepositorysVerifiedFile(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, segs := pushed(t, st, 2)
	name := wal.SegmentFileName(1, 1, segSize)
	other := wal.SegmentFileName(1, 2, segSize)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, dir string) *Archive // returns the archive that serves
		served bool
	}{
		{name: "this repository's verified copy", served: true, damage: func(*testing.T, string) *Archive { return a }},
		{name: "another repository at another place", damage: func(t *testing.T, dir string) *Archive {
			b, _ := pushed(t, mem.New(), 1)
			return b // same cluster and name, but another store
		}},
		{name: "a repository re-created at the same place", damage: func(t *testing.T, dir string) *Archive {
			st2 := mem.New()
			b, _ := pushed(t, st2, 1)
			b.Repo = repo.New(renamed{st2, st.String()}, repo.Options{})
			return b
		}},
		{name: "a repository whose identity cannot be read", damage: func(t *testing.T, dir string) *Archive {
			st2 := mem.New()
			b, _ := pushed(t, st2, 1)
			spoolFor(t, b, dir, name) // this very repository's copy, until its identity goes
			if err := st2.Delete(ctx, repo.IdentityKey); err != nil {
				t.Fatal(err)
			}
			b.Repo = repo.New(st2, repo.Options{}) // nothing cached
			return b
		}},
		{name: "a copy of the wrong size", damage: func(t *testing.T, dir string) *Archive {
			rewrite(t, filepath.Join(dir, name), func(b []byte) []byte { return append(b[:100], b[len(b)-400:]...) })
			return a
		}},
		{name: "a copy whose bytes changed", damage: func(t *testing.T, dir string) *Archive {
			rewrite(t, filepath.Join(dir, name), func(b []byte) []byte { b[5000] ^= 1; return b })
			return a
		}},
		{name: "another segment's copy under this name", damage: func(t *testing.T, dir string) *Archive {
			spoolFor(t, a, dir, other)
			if err := os.Rename(filepath.Join(dir, other), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			return a
		}},
		{name: "a file without a record", damage: func(t *testing.T, dir string) *Archive {
			if err := os.WriteFile(filepath.Join(dir, name), segs[name], 0o600); err != nil {
				t.Fatal(err)
			}
			return a
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			spoolFor(t, a, dir, name)
			serving := c.damage(t, dir)
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			sum, ok := serving.TakeSpooled(ctx, dir, name, dest)
			if ok != c.served {
				t.Fatalf("served = %v, want %v", ok, c.served)
			}
			left, _ := os.ReadDir(dir)
			if len(left) != 0 {
				t.Errorf("the spool still holds %v", left)
			}
			got, err := os.ReadFile(dest)
			if !c.served {
				if err == nil {
					t.Error("DEST was written")
				}
				return
			}
			if !bytes.Equal(got, segs[name]) || sum.Size != segSize {
				t.Errorf("DEST holds %d bytes, not the segment (sum %v)", len(got), sum)
			}
		})
	}
}

// renamed is a store that says it is another one (a repository re-created at the
// same place).
type renamed struct {
	storage.Store
	name string
}

func (r renamed) String() string { return r.name }

func rewrite(t *testing.T, p string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, fn(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func spooled(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if f, err := wal.Parse(e.Name()); err == nil && f.Kind == wal.Segment {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// waitFor waits until cond holds; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute) // generous: fsyncs on a loaded shared machine
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func names(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, wal.SegmentFileName(1, uint64(i), segSize))
	}
	return out
}

func TestThePrefetcherFillsTheSpoolAheadOfEachRequestWithinItsDepthAndCleansTheRest(t *testing.T) {
	a, segs := pushed(t, mem.New(), 10)
	a.Log = slog.New(slog.NewTextHandler(testLog{t}, nil)) // a failure shows what the prefetcher met
	dir := t.TempDir()
	// A stale file of another request and a temp file of a prefetcher that died.
	stale := wal.SegmentFileName(1, 1, segSize)
	spoolFor(t, a, dir, stale)
	if err := os.WriteFile(filepath.Join(dir, tmpPrefix+"x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want := func(i int) {
		t.Helper()
		if err := SignalWant(dir, Want{Name: wal.SegmentFileName(1, uint64(i), segSize), SegSize: segSize, Repo: a.Repo.String()}); err != nil {
			t.Fatal(err)
		}
	}
	want(2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &Prefetcher{Archive: a, Dir: dir, Depth: 3, Workers: 2, Idle: time.Hour, Poll: time.Millisecond, Timeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "segments 3..5", func() bool { return reflect.DeepEqual(spooled(t, dir), names(3, 5)) })
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"x")); err == nil {
		t.Error("a dead prefetcher's temp file is left")
	}
	if running, err := PrefetcherRunning(dir); err != nil || !running {
		t.Errorf("PrefetcherRunning = %v, %v while it runs", running, err)
	}
	// Served from the spool: then the next request moves the window.
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, ok := a.TakeSpooled(ctx, dir, names(3, 3)[0], dest); !ok {
		t.Fatal("segment 3 not served from the spool")
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[names(3, 3)[0]]) {
		t.Fatal("served bytes differ")
	}
	want(3)
	waitFor(t, "segments 4..6", func() bool { return reflect.DeepEqual(spooled(t, dir), names(4, 6)) })
	// A jump ahead: what the new request does not want goes; the archive ends at 10.
	want(8)
	waitFor(t, "segments 9..10 only", func() bool { return reflect.DeepEqual(spooled(t, dir), names(9, 10)) })
	// Another prefetcher for the same spool refuses to run.
	if err := (&Prefetcher{Archive: a, Dir: dir}).Run(ctx); !errors.Is(err, ErrPrefetcherRunning) {
		t.Errorf("a second prefetcher: %v, want ErrPrefetcherRunning", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
}

func TestAnIdlePrefetcherKeepsOnlyTheSegmentsAheadOfTheLastRequestAndExits(t *testing.T) {
	a, _ := pushed(t, mem.New(), 6)
	dir := t.TempDir()
	spoolFor(t, a, dir, names(1, 1)[0]) // behind the request
	if err := SignalWant(dir, Want{Name: names(2, 2)[0], SegSize: segSize, Repo: a.Repo.String()}); err != nil {
		t.Fatal(err)
	}
	p := &Prefetcher{Archive: a, Dir: dir, Depth: 3, Workers: 2, Idle: 50 * time.Millisecond, Poll: time.Millisecond, Timeout: time.Minute}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := spooled(t, dir); !reflect.DeepEqual(left, names(3, 5)) {
		t.Errorf("an idle prefetcher left %v, want the %v ahead of the last request", left, names(3, 5))
	}
	if running, err := PrefetcherRunning(dir); err != nil || running {
		t.Errorf("PrefetcherRunning = %v, %v after it exited", running, err)
	}
	if pid, _ := os.ReadFile(filepath.Join(dir, lockFile)); len(pid) != 0 {
		t.Errorf("the lock file still names %q after the prefetcher exited", pid)
	}
}

func TestAPrefetcherRemovesRequestsAKilledWALFetchLeftHalfWritten(t *testing.T) {
	a, _ := pushed(t, mem.New(), 2)
	dir := t.TempDir()
	stale, fresh := filepath.Join(dir, tmpPrefix+wantFile+"-1"), filepath.Join(dir, tmpPrefix+wantFile+"-2")
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	p := &Prefetcher{Archive: a, Dir: dir, Depth: 1, Workers: 1, Idle: time.Millisecond, Poll: time.Millisecond, Timeout: time.Minute}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); err == nil {
		t.Error("a request a killed wal-fetch left two minutes ago is still there")
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Errorf("a request a wal-fetch is writing now was removed: %v", err)
	}
}

func TestASegmentMissingFromTheRepositoryIsNotArchivedEvenWhenTheSpoolHoldsOthers(t *testing.T) {
	ctx := context.Background()
	a, _ := pushed(t, mem.New(), 2)
	dir := t.TempDir()
	spoolFor(t, a, dir, names(2, 2)[0])
	// A spooled copy under the missing name, from another repository of the cluster.
	b, _ := pushed(t, mem.New(), 3)
	spoolFor(t, b, dir, names(3, 3)[0])
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, ok := a.TakeSpooled(ctx, dir, names(3, 3)[0], dest); ok {
		t.Fatal("served a copy of another repository")
	}
	if _, err := a.Fetch(ctx, names(3, 3)[0], dest); !errors.Is(err, ErrNotArchived) {
		t.Fatalf("Fetch = %v, want ErrNotArchived", err)
	}
}

func TestAStorageErrorStillFailsTheFetchWhenTheSpoolHoldsOtherSegments(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, _ := pushed(t, st, 3)
	dir := t.TempDir()
	spoolFor(t, a, dir, names(2, 2)[0])
	boom := errors.New("storage unreachable")
	a.Repo = repo.New(faulty.New(st, faulty.Rule{Op: faulty.Get, Key: "wal/", Err: boom}), repo.Options{})
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, ok := a.TakeSpooled(ctx, dir, names(3, 3)[0], dest); ok {
		t.Fatal("served a segment the spool does not hold")
	}
	_, err := a.Fetch(ctx, names(3, 3)[0], dest)
	if err == nil || errors.Is(err, ErrNotArchived) || !errors.Is(err, boom) {
		t.Fatalf("Fetch = %v, want the storage error, never ErrNotArchived", err)
	}
	if !strings.Contains(err.Error(), "storage unreachable") {
		t.Errorf("error %q does not say why", err)
	}
}

func TestAFetchThatCaughtUpWithThePrefetcherWaitsForItsCopyOnlyWhileItIsBeingWritten(t *testing.T) {
	ctx := context.Background()
	name := names(1, 1)[0]
	dir := t.TempDir()
	if AwaitInFlight(ctx, dir, name, time.Minute) {
		t.Fatal("waited for a segment nobody writes")
	}
	tmp := filepath.Join(dir, tmpPrefix+name+"-1")
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if AwaitInFlight(ctx, dir, name, time.Minute) {
		t.Fatal("a temp file left by a dead prefetcher (no lock held) was waited for")
	}
	lock, held, err := lockPrefetcher(dir)
	if err != nil || !held {
		t.Fatalf("lock: %v %v", held, err)
	}
	defer func() { _ = lock.Close() }()
	for _, c := range []struct {
		name   string
		finish func() error
		want   bool
	}{
		{"the write completes", func() error { return os.Rename(tmp, filepath.Join(dir, name)) }, true},
		{"the write fails", func() error { return os.Remove(tmp) }, false},
	} {
		if err := os.WriteFile(tmp, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(filepath.Join(dir, name))
		got := make(chan bool, 1)
		go func() { got <- AwaitInFlight(ctx, dir, name, time.Minute) }()
		if err := c.finish(); err != nil {
			t.Fatal(err)
		}
		if g := <-got; g != c.want {
			t.Errorf("%s: AwaitInFlight = %v, want %v", c.name, g, c.want)
		}
	}
}

// testLog writes log lines into the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
