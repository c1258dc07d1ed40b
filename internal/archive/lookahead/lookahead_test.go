package lookahead

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/spool"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/waltest"
)

const sysid = 7

// cluster is a data directory with ready segments in pg_wal.
type cluster struct {
	dir, walDir string
	spool       Spool
	cl          *archive.Cluster
}

func newCluster(t *testing.T, ready int) *cluster {
	t.Helper()
	dir := waltest.DataDir(t, sysid)
	walDir := filepath.Join(dir, "pg_wal")
	if err := os.Mkdir(filepath.Join(walDir, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(dir, "push")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := archive.ClusterFromDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: dir, walDir: walDir, spool: Spool(sp), cl: &cl}
	for i := 1; i <= ready; i++ {
		c.ready(t, i)
	}
	return c
}

func segName(i int) string { return fmt.Sprintf("0000000100000000%08X", i) }

// ready writes segment i and marks it ready, as PostgreSQL does when it completes one.
func (c *cluster) ready(t *testing.T, i int) string {
	t.Helper()
	p := waltest.WriteWAL(t, c.dir, segName(i), waltest.Segment(sysid, int64(i)))
	if err := os.WriteFile(filepath.Join(c.walDir, "archive_status", segName(i)+".ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *cluster) path(i int) string { return filepath.Join(c.walDir, segName(i)) }

// named is a store under another name: another repository as far as records go.
type named struct {
	storage.Store
	name string
}

func (n named) String() string { return n.name }

func newRepo(st storage.Store) *repo.Repo {
	codec, _ := compress.New("lz4", 0)
	return repo.New(st, repo.Options{Codec: compress.WithConcurrency(codec, 1)})
}

func (c *cluster) archiver(st storage.Store, conc int) *Archiver {
	return &Archiver{Spool: c.spool, WALDir: c.walDir, Cluster: c.cl, Concurrency: conc,
		NewRepo: func() *repo.Repo { return newRepo(st) },
		// Run returns once idle: a short idle period keeps the tests quick; nothing
		// waits on it for correctness.
		Idle: 20 * time.Millisecond, Poll: time.Millisecond}
}

func (c *cluster) foreground(st storage.Store, start func() (<-chan struct{}, error)) *Foreground {
	return &Foreground{Spool: c.spool, WALDir: c.walDir, Repo: newRepo(st), Start: start, Poll: time.Millisecond, Liveness: time.Millisecond}
}

// inProcessWaiting starts the archiver in a goroutine, as wal-push starts a process,
// and returns a function that waits until it ended.
func inProcessWaiting(a *Archiver) (start func() (<-chan struct{}, error), ended func()) {
	done := make(chan struct{})
	return func() (<-chan struct{}, error) {
			go func() {
				defer close(done)
				_ = a.Run(context.Background())
			}()
			return done, nil
		}, func() {
			<-done
		}
}

func run(t *testing.T, a *Archiver) {
	t.Helper()
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRecordRoundTripsAndDamagedRecordsAreNotRead(t *testing.T) {
	c := newCluster(t, 1)
	src, err := StatSource(c.path(1))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Version: recordVersion, Segment: segName(1), Source: src, Stored: 123, Sum: "x",
		Repo: RepoID{Location: "mem:", SystemID: sysid, PGVersion: 15, Created: time.Now().UTC().Round(0)}, Written: time.Now().UTC().Round(0)}
	if err := c.spool.WriteRecord(want); err != nil {
		t.Fatal(err)
	}
	got, err := c.spool.ReadRecord(segName(1))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("read %+v, wrote %+v", got, want)
	}
	if err := c.spool.WriteRecord(Record{Segment: "../../evil"}); err == nil {
		t.Fatal("a record under a name that is not a segment's was written")
	}

	recPath := filepath.Join(string(c.spool), segName(1)+recordSuffix)
	for name, damage := range map[string]func() error{
		"garbage": func() error { return os.WriteFile(recPath, []byte("{not json"), 0o600) },
		"oversized": func() error {
			return os.WriteFile(recPath, []byte(`{"x":"`+strings.Repeat("a", maxRecord)+`"}`), 0o600)
		},
		"for another": func() error { return os.WriteFile(recPath, []byte(`{"version":1,"segment":"`+segName(2)+`"}`), 0o600) },
		"a link": func() error {
			other := filepath.Join(t.TempDir(), "r")
			if err := c.spool.WriteRecord(want); err != nil {
				return err
			}
			if err := os.Rename(recPath, other); err != nil {
				return err
			}
			return os.Symlink(other, recPath)
		},
	} {
		_ = os.Remove(recPath)
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.spool.ReadRecord(segName(1)); !errors.Is(err, ErrNoRecord) {
			t.Errorf("%s: read %v, want ErrNoRecord", name, err)
		}
	}
}

func TestArchiverShipsEveryReadySegmentAndTheCallsFindThemRecorded(t *testing.T) {
	c := newCluster(t, 5)
	st := mem.New()
	run(t, c.archiver(st, 2))
	fg := c.foreground(st, nil)
	for i := 1; i <= 5; i++ {
		ok, err := fg.Recorded(context.Background(), c.path(i))
		if err != nil || !ok {
			t.Fatalf("%s: recorded %v, %v", segName(i), ok, err)
		}
		if _, err := st.Stat(context.Background(), repo.WALKey(mustParse(t, segName(i)))); err != nil {
			t.Fatalf("%s recorded but not stored: %v", segName(i), err)
		}
		if got := c.spool.LastCalled(); got != segName(i) {
			t.Fatalf("after the call for %s the archiver would see the calls at %q", segName(i), got)
		}
	}
}

func mustParse(t *testing.T, name string) wal.File {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestArchiverShipsOldestFirstWithinItsBounds(t *testing.T) {
	c := newCluster(t, 5)
	a := c.archiver(mem.New(), 1)
	a.defaults()
	a.known = map[string]Record{}
	a.MaxAhead = 3
	got, _, err := a.candidates(map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{segName(1), segName(2), segName(3)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("count bound 3: candidates %v, want %v", got, want)
	}
	a.MaxAheadBytes = 2 * waltest.SegSize
	if got, _, _ = a.candidates(map[string]bool{segName(1): true}); fmt.Sprint(got) != fmt.Sprint([]string{segName(2)}) {
		t.Errorf("byte bound 2 segments, one in flight: candidates %v", got)
	}

	// With one at a time, the puts reach the store in WAL order.
	rec := &recording{Store: mem.New()}
	run(t, c.archiver(rec, 1))
	for i, k := range rec.keys {
		if want := repo.WALKey(mustParse(t, segName(i+1))); k != want {
			t.Fatalf("put %d was %s, want %s (all: %v)", i, k, want, rec.keys)
		}
	}
	if len(rec.keys) != 5 {
		t.Fatalf("%d puts, want 5: %v", len(rec.keys), rec.keys)
	}
}

// recording remembers the keys of WAL puts, in order.
type recording struct {
	storage.Store
	mu   sync.Mutex
	keys []string
}

func (r *recording) Put(ctx context.Context, key string, body io.Reader, opts storage.PutOptions) error {
	if strings.HasPrefix(key, "wal/") {
		r.mu.Lock()
		r.keys = append(r.keys, key)
		r.mu.Unlock()
	}
	return r.Store.Put(ctx, key, body, opts)
}

func TestArchiverRecordsNothingForAFailedPutAndDoesNotShipPastIt(t *testing.T) {
	c := newCluster(t, 4)
	inner := mem.New()
	st := faulty.New(inner, faulty.Rule{Op: faulty.Put, Key: repo.WALKey(mustParse(t, segName(2))), Count: 1})
	run(t, c.archiver(st, 1))
	for i, want := range []bool{true, false, false, false} {
		_, err := c.spool.ReadRecord(segName(i + 1))
		if got := err == nil; got != want {
			t.Errorf("%s recorded: %v, want %v (%v)", segName(i+1), got, want, err)
		}
	}
	msg, ok := c.spool.ReadError(segName(2))
	if !ok || !strings.Contains(msg, faulty.ErrInjected.Error()) {
		t.Fatalf("error record of the failed segment: %q, %v", msg, ok)
	}
	if _, err := inner.Stat(context.Background(), repo.WALKey(mustParse(t, segName(3)))); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("shipped past the failed segment while failing: %v", err)
	}

	// PostgreSQL's retry of the failed segment: its call finds the error, reports it
	// once; the next call has it shipped, and the look-ahead resumes.
	start, ended := inProcessWaiting(c.archiver(st, 1))
	fg := c.foreground(st, start)
	_ = c.spool.WriteError(segName(2), errors.New("simulated: the repository is unreachable"))
	if !c.spool.HasError(segName(2)) {
		t.Fatal("no error record")
	}
	if err := fg.Await(context.Background(), c.path(2)); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	ended()
	run(t, c.archiver(st, 1)) // the rest, as the next calls would have it
	for i := 1; i <= 4; i++ {
		if ok, err := fg.Recorded(context.Background(), c.path(i)); !ok || err != nil {
			t.Errorf("%s: recorded %v, %v", segName(i), ok, err)
		}
	}
}

func TestWalPushReportsTheArchiversErrorAndTheNextCallRetries(t *testing.T) {
	c := newCluster(t, 2)
	st := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: "wal/", Err: errors.New("bucket is gone")})
	start, ended := inProcessWaiting(c.archiver(st, 2))
	fg := c.foreground(st, start)
	err := fg.Await(context.Background(), c.path(1))
	ended()
	if !errors.Is(err, ErrArchiverFailed) || !strings.Contains(err.Error(), "bucket is gone") {
		t.Fatalf("await: %v, want the archiver's error", err)
	}
	if _, err := c.spool.ReadRecord(segName(1)); err == nil {
		t.Error("a failed segment was recorded")
	}
	if !c.spool.HasError(segName(1)) {
		t.Fatal("the error record, which holds the archiver back until the next call, is gone")
	}
	// The next call clears it and has the segment shipped (the repository is back).
	st2 := mem.New()
	start, ended = inProcessWaiting(c.archiver(st2, 2))
	if err := c.foreground(st2, start).Await(context.Background(), c.path(1)); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	ended()
}

func TestWalPushShipsItselfWhenTheArchiverEndsWithoutARecord(t *testing.T) {
	c := newCluster(t, 1)
	st := mem.New()
	fg := c.foreground(st, func() (<-chan struct{}, error) {
		done := make(chan struct{})
		close(done) // started and gone at once, as a killed archiver
		return done, nil
	})
	if err := fg.Await(context.Background(), c.path(1)); !errors.Is(err, ErrArchiverGone) {
		t.Fatalf("await: %v, want ErrArchiverGone", err)
	}
}

func TestAPutDurableButNotAcknowledgedIsRecordedByTheRetry(t *testing.T) {
	c := newCluster(t, 1)
	inner := mem.New()
	// The object is stored, then the archiver is told the put failed (as when it is
	// killed between its put and its record): no record.
	st := faulty.New(inner, faulty.Rule{Op: faulty.Put, Key: "wal/", Fault: faulty.FailAfter, Count: 1})
	run(t, c.archiver(st, 1))
	if _, err := c.spool.ReadRecord(segName(1)); err == nil {
		t.Fatal("recorded although the put was not acknowledged")
	}
	if _, err := inner.Stat(context.Background(), repo.WALKey(mustParse(t, segName(1)))); err != nil {
		t.Fatalf("the put did not store the object: %v", err)
	}
	// The retry finds an identical object: durable, recorded.
	start, ended := inProcessWaiting(c.archiver(st, 1))
	fg := c.foreground(st, start)
	err := fg.Await(context.Background(), c.path(1))
	ended()
	if err != nil {
		t.Fatal(err)
	}
}

func TestARecordIsTrustedOnlyForItsFileRepositoryAndObject(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		change func(t *testing.T, c *cluster, st *mem.Store) storage.Store // returns the store wal-push uses
	}{
		{"nothing changed", func(_ *testing.T, _ *cluster, st *mem.Store) storage.Store { return st }},
		{"another repository", func(_ *testing.T, _ *cluster, st *mem.Store) storage.Store {
			return named{Store: st, name: "mem:other"}
		}},
		{"the repository created anew", func(t *testing.T, c *cluster, _ *mem.Store) storage.Store {
			fresh := mem.New()
			a := &archive.Archive{Repo: newRepo(fresh), Log: slog.New(slog.DiscardHandler)}
			if _, err := a.Push(ctx, c.path(2), c.cl); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Push(ctx, c.path(1), c.cl); err != nil {
				t.Fatal(err)
			}
			return fresh
		}},
		{"the object gone", func(t *testing.T, _ *cluster, st *mem.Store) storage.Store {
			if err := st.Delete(ctx, repo.WALKey(mustParse(t, segName(1)))); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"the file recycled (another inode)", func(t *testing.T, c *cluster, st *mem.Store) storage.Store {
			b, err := os.ReadFile(c.path(1))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(c.path(1), c.path(1)+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(c.path(1), b, 0o600); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"the file rewritten (another mtime)", func(t *testing.T, c *cluster, st *mem.Store) storage.Store {
			if err := os.Chtimes(c.path(1), time.Time{}, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			st := mem.New()
			run(t, c.archiver(st, 2))
			use := tc.change(t, c, st)
			fg := c.foreground(use, nil)
			ok, err := fg.Recorded(ctx, c.path(1))
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.name == "nothing changed"; ok != want {
				t.Fatalf("recorded: %v, want %v", ok, want)
			}
			if _, err := c.spool.ReadRecord(segName(1)); !ok && err == nil {
				t.Error("a record that does not hold was left")
			}
		})
	}
}

// waitRecord waits until segment i has a record; the deadline only guards against a
// hang.
func (c *cluster) waitRecord(t *testing.T, i int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.spool.ReadRecord(segName(i)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %d never recorded", i)
		}
		time.Sleep(time.Millisecond) //nolint:forbidigo // pacing of a condition wait, not synchronisation
	}
}

// A segment PostgreSQL marks ready while the archiver waits is shipped when it is
// marked, not at the next poll: the archiver watches archive_status. (Its poll here is
// an hour.)
func TestArchiverShipsASegmentMarkedReadyWhileItWaits(t *testing.T) {
	c := newCluster(t, 1)
	st := mem.New()
	a := c.archiver(st, 2)
	a.Poll, a.Idle = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	c.waitRecord(t, 1)
	c.ready(t, 2)
	c.waitRecord(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.Shipped != 2 || a.Failed != 0 {
		t.Fatalf("shipped %d, failed %d; want 2 and 0", a.Shipped, a.Failed)
	}
}

// Once it is Concurrency segments ahead of PostgreSQL's calls, the archiver ships one
// segment at a time, leaving the other cores to the calls; when the calls catch up,
// it ships Concurrency at once again. Without a mark of the calls, every recorded
// ready segment counts as ahead.
func TestArchiverShipsOneAtATimeOnceAheadOfTheCalls(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 2)
	st := mem.New()
	run(t, c.archiver(st, 2))
	for i := 3; i <= 7; i++ {
		c.ready(t, i)
	}
	a := c.archiver(st, 2)
	a.defaults()
	a.known = map[string]Record{}
	id, err := newRepo(st).Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur := MakeRepoID(newRepo(st).String(), id)
	a.current = &cur
	results := make(chan shipped, 8)
	ship := func(what string, want int) {
		t.Helper()
		inflight := map[string]bool{}
		if n := a.dispatch(ctx, inflight, results); n != want {
			t.Fatalf("%s: shipping %d at once, want %d", what, n, want)
		}
		for range want {
			r := <-results
			if r.err != nil {
				t.Fatal(r.err)
			}
			a.done(ctx, r)
		}
	}
	ship("2 recorded, no call noted", 1) // ships 3
	if err := c.spool.MarkCalled(segName(3)); err != nil {
		t.Fatal(err)
	}
	ship("caught up: every recorded segment called", 2) // ships 4 and 5
	if err := c.spool.MarkCalled(segName(2)); err != nil {
		t.Fatal(err)
	}
	ship("3 ahead of the call for 2", 1) // ships 6
	if err := c.spool.MarkCalled(segName(5)); err != nil {
		t.Fatal(err)
	}
	ship("1 ahead of the call for 5", 1) // only 7 is left
	if got := c.spool.LastCalled(); got != segName(5) {
		t.Fatalf("LastCalled = %q, want %s", got, segName(5))
	}
}

// The mark of the calls is untrusted input: anything but a segment name is no mark.
func TestADamagedCallMarkIsNoMark(t *testing.T) {
	c := newCluster(t, 0)
	for _, b := range []string{"", "garbage", segName(1) + "\n", "../../etc/passwd0000000000", segName(1)[:23]} {
		if err := os.WriteFile(filepath.Join(string(c.spool), calledName), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := c.spool.LastCalled(); got != "" {
			t.Errorf("mark %q read as %q", b, got)
		}
	}
	if err := c.spool.MarkCalled("00000001.history"); err == nil {
		t.Error("a history file marked as a called segment")
	}
	link := filepath.Join(string(c.spool), calledName)
	_ = os.Remove(link)
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := c.spool.MarkCalled(segName(1)); err == nil {
		t.Error("the mark was written through a symbolic link")
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was made at the link's target: %v", err)
	}
}
