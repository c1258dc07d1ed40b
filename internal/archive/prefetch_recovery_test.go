package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// The spool is untrusted: a request file pgb did not make (a symbolic link, a FIFO)
// must be ignored, never followed or read without a bound: a FIFO would block the
// prefetcher forever (holding the lock, so no other prefetcher ever starts and it never
// exits), a link to /dev/zero would read until memory runs out.
func TestAPrefetcherIgnoresARequestFileThatIsALinkAFIFOOrTooLargeAndExitsIdle(t *testing.T) {
	a, _ := pushed(t, mem.New(), 3)
	dir := t.TempDir()
	// A symbolic link to a valid request elsewhere is not pgb's request.
	elsewhere := t.TempDir()
	if err := SignalWant(elsewhere, Want{Name: names(1, 1)[0], SegSize: segSize, Repo: a.Repo.String()}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, wantFile), filepath.Join(dir, wantFile)); err != nil {
		t.Fatal(err)
	}
	if _, ok := readWant(dir); ok {
		t.Error("readWant followed a symbolic link pgb did not create")
	}
	_ = os.Remove(filepath.Join(dir, wantFile))
	// A valid request padded past the bound.
	b, err := os.ReadFile(filepath.Join(elsewhere, wantFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, wantFile), append(b, bytes.Repeat([]byte(" "), maxWant)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := readWant(dir); ok {
		t.Error("readWant read a request file past its bound")
	}
	_ = os.Remove(filepath.Join(dir, wantFile))
	if err := syscall.Mkfifo(filepath.Join(dir, wantFile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Prefetcher{Archive: a, Dir: dir, Depth: 2, Workers: 1, Idle: 50 * time.Millisecond, Poll: time.Millisecond, Timeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(time.Minute): // a hang guard only
		// Unblock the stuck open so that the test process can end.
		if f, err := os.OpenFile(filepath.Join(dir, wantFile), os.O_WRONLY, 0); err == nil {
			_ = f.Close()
		}
		t.Fatal("the prefetcher hangs on a FIFO in place of its request file (it never exits idle, holding the lock)")
	}
}

// restore_command's %p on another filesystem than pg_wal (the EXDEV branch of
// serveClaimed), which no test exercised: DEST must hold exactly the segment.
func TestASpooledSegmentIsServedToARestoreCommandPathOnAnotherFilesystem(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	ctx := context.Background()
	a, segs := pushed(t, mem.New(), 1)
	name := names(1, 1)[0]
	dir := t.TempDir()
	spoolFor(t, a, dir, name)
	destDir, err := os.MkdirTemp("/dev/shm", "pgb-review-")
	if err != nil {
		t.Skip(err)
	}
	defer func() { _ = os.RemoveAll(destDir) }()
	var a1, a2 syscall.Stat_t
	if syscall.Stat(dir, &a1) != nil || syscall.Stat(destDir, &a2) != nil || a1.Dev == a2.Dev {
		t.Skip("not two filesystems")
	}
	dest := filepath.Join(destDir, "RECOVERYXLOG")
	if _, ok := a.TakeSpooled(ctx, dir, name, dest); !ok {
		t.Fatal("not served")
	}
	got, err := os.ReadFile(dest)
	if err != nil || string(got) != string(segs[name]) {
		t.Fatalf("DEST holds %d bytes, not the %d of the segment: %v", len(got), len(segs[name]), err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the spool still holds %v", left)
	}
	if left, _ := os.ReadDir(destDir); len(left) != 1 {
		t.Errorf("DEST's directory holds %v", left)
	}
}

// slowIdentity is a store whose identity document (pgb.json) answers only once
// release is closed: a slow or retrying repository.
type slowIdentity struct {
	storage.Store
	release chan struct{}
}

func (s slowIdentity) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == repo.IdentityKey {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Get(ctx, key, off, n)
}

// A prefetcher killed mid-write leaves .tmp-NAME-*. The next prefetcher takes the lock,
// then reads the repository's identity (a network round trip, retried). Every wal-fetch
// of NAME meanwhile finds "a temp file and a live prefetcher": the temp file must be gone
// before that round trip, or the wal-fetch waits for a write that nobody does.
func TestAFetchDoesNotWaitForATempFileAKilledPrefetcherLeftWhileTheNextOneStarts(t *testing.T) {
	st := mem.New()
	_, _ = pushed(t, st, 2)
	release := make(chan struct{})
	a := newArchive(t, slowIdentity{st, release}, "lz4")
	name := names(1, 1)[0]
	dir := t.TempDir()
	tmp := filepath.Join(dir, tmpPrefix+name+"-killed")
	if err := os.WriteFile(tmp, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Prefetcher{Archive: a, Dir: dir, Depth: 2, Workers: 1, Idle: time.Hour, Poll: time.Millisecond, Timeout: time.Hour}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		close(release)
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}()
	// The identity does not answer until the end of the test: all that happens here
	// happens before the prefetcher's first network call.
	waitFor(t, "the dead prefetcher's temp file to go", func() bool {
		_, err := os.Lstat(tmp)
		return os.IsNotExist(err)
	})
	if running, err := PrefetcherRunning(dir); err != nil || !running {
		t.Fatalf("PrefetcherRunning = %v, %v: the new prefetcher must hold the lock while it starts", running, err)
	}
	got := make(chan bool, 1)
	go func() { got <- AwaitInFlight(context.Background(), dir, name, time.Hour) }()
	select {
	case ok := <-got:
		if ok {
			t.Error("AwaitInFlight reported a segment nobody wrote")
		}
	case <-time.After(time.Minute): // a hang guard only
		t.Fatal("wal-fetch waits for a temp file nobody writes")
	}
}

// countingGets counts the reads of each key.
type countingGets struct {
	storage.Store
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.gets[key]++
	c.mu.Unlock()
	return c.Store.Get(ctx, key, off, n)
}

// A recovery whose replay takes longer than the prefetcher's Idle per segment (a
// delayed standby with recovery_min_apply_delay, replay paused by a query conflict, a
// heavy segment on a loaded host): the prefetcher fetches its window, goes idle and
// exits; the next wal-fetch starts one again. What is ahead of the last request must
// survive that, or each segment is read from the repository up to Depth+1 times and
// prefetch never serves anything.
func TestASlowReplayReadsEachSegmentFromTheRepositoryOnceAndIsServedFromTheSpool(t *testing.T) {
	st := mem.New()
	_, segs := pushed(t, st, 12)
	cg := &countingGets{Store: st, gets: map[string]int{}}
	a := newArchive(t, cg, "lz4")
	dir := t.TempDir()
	const idle = 100 * time.Millisecond
	for i := 1; i <= 4; i++ { // PostgreSQL asks for 1, 2, 3, 4, each replay slower than idle
		name := names(i, i)[0]
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		_, ok := a.TakeSpooled(context.Background(), dir, name, dest)
		if !ok {
			if i > 1 {
				t.Errorf("segment %d not served from the spool after the prefetcher went idle", i)
			}
			if _, err := a.Fetch(context.Background(), name, dest); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[name]) {
			t.Fatalf("segment %d: DEST does not hold it", i)
		}
		if err := SignalWant(dir, Want{Name: name, SegSize: segSize, Repo: a.Repo.String()}); err != nil {
			t.Fatal(err)
		}
		p := &Prefetcher{Archive: a, Dir: dir, Depth: 8, Workers: 2, Idle: idle, Poll: time.Millisecond, Timeout: time.Minute}
		if err := p.Run(context.Background()); err != nil { // runs until idle, as the detached one does
			t.Fatal(err)
		}
		if got := spooled(t, dir); !reflect.DeepEqual(got, names(i+1, min(i+8, 12))) {
			t.Errorf("after an idle exit at request %d the spool holds %v, want the %d segments ahead of it", i, got, min(8, 12-i))
		}
	}
	cg.mu.Lock()
	defer cg.mu.Unlock()
	for key, n := range cg.gets {
		if strings.HasPrefix(key, "wal/") && !strings.HasSuffix(key, ".history") && n > 1 {
			t.Errorf("%s read from the repository %d times", key, n)
		}
	}
}

// A prefetcher killed with its spool full (segments of this repository, one damaged, one
// of another repository, a temp file, its pid in the lock file) is followed by a recovery
// that is served only verified segments, and by a new prefetcher that starts, writes its
// own pid first, and fetches again only what it could not keep.
func TestARecoveryAfterAKilledPrefetcherIsServedOnlyVerifiedSegments(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, segs := pushed(t, st, 6)
	dir := t.TempDir()
	for _, n := range names(2, 4) {
		spoolFor(t, a, dir, n)
	}
	rewrite(t, filepath.Join(dir, names(3, 3)[0]), func(b []byte) []byte { b[100] ^= 0xff; return b }) // damaged bytes, intact record
	b, _ := pushed(t, mem.New(), 5)
	spoolFor(t, b, dir, names(5, 5)[0]) // another repository's
	if err := os.WriteFile(filepath.Join(dir, tmpPrefix+names(6, 6)[0]+"-killed"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, lockFile), []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SignalWant(dir, Want{Name: names(1, 1)[0], SegSize: segSize, Repo: a.Repo.String()}); err != nil {
		t.Fatal(err)
	}
	cg := &countingGets{Store: st, gets: map[string]int{}}
	a2 := newArchive(t, cg, "lz4")
	p := &Prefetcher{Archive: a2, Dir: dir, Depth: 5, Workers: 2, Idle: time.Hour, Poll: time.Millisecond, Timeout: time.Minute}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	waitFor(t, "the new prefetcher's pid in its lock file", func() bool {
		got, _ := os.ReadFile(filepath.Join(dir, lockFile))
		return string(got) == strconv.Itoa(os.Getpid())+"\n"
	})
	waitFor(t, "segments 2..6 spooled, the temp file gone", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"0*"))
		return len(m) == 0 && reflect.DeepEqual(spooled(t, dir), names(2, 6))
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, lockFile)); len(got) != 0 {
		t.Errorf("the lock file still names %q after the prefetcher exited", got)
	}
	for i, n := range names(2, 6) {
		if c := cg.gets["wal/0000000100000000/"+n]; i <= 2 && c != 0 {
			t.Errorf("%s, kept from the killed prefetcher, was read again", n)
		}
	}
	for _, n := range names(2, 6) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		_, ok := a.TakeSpooled(ctx, dir, n, dest)
		if n == names(3, 3)[0] {
			if ok {
				t.Errorf("%s: the damaged copy was served", n)
			}
			continue
		}
		if !ok {
			t.Errorf("%s not served from the spool", n)
			continue
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[n]) {
			t.Errorf("%s: served bytes differ", n)
		}
	}
}
