package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

const base = 10 * time.Millisecond

// fakeClock records the waits instead of sleeping.
type fakeClock struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) got() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// setup returns a retrying store over a fault-injecting one over memory, holding
// object "k" = "value".
func setup(t *testing.T, cfg retry.Config, rules ...faulty.Rule) (storage.Store, *faulty.Store, *fakeClock) {
	t.Helper()
	inner := mem.New()
	if err := inner.Put(t.Context(), "k", strings.NewReader("value"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	f := faulty.New(inner, rules...)
	clock := &fakeClock{}
	if cfg.Sleep == nil {
		cfg.Sleep = clock.sleep
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration { return d } // the cap itself
	}
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = base
	}
	return retry.New(f, cfg), f, clock
}

func readAll(s storage.Store, ctx context.Context, key string) (string, error) {
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return retry.New(mem.New(), retry.Config{Timeout: time.Minute, Sleep: (&fakeClock{}).sleep})
	})
}

// batchMem is a mem store that deletes in batches of 3 keys.
func batchMem() *mem.Store {
	s := mem.New()
	s.Batch = 3
	return s
}

// TestConformanceUnderFaults runs the suite with one call in five failing at random:
// the retries must hide every failure. Puts are faulted only where the suite's readers
// can seek, since other Puts are not retried.
func TestConformanceUnderFaults(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		rules := []faulty.Rule{
			{Op: faulty.Get, Prob: 0.2, Seed: 1},
			{Op: faulty.Stat, Prob: 0.2, Seed: 2},
			{Op: faulty.List, Prob: 0.2, Seed: 3},
			{Op: faulty.List, Prob: 0.2, Seed: 4, Fault: faulty.Truncate, Offset: 7},
			{Op: faulty.Delete, Prob: 0.2, Seed: 5},
		}
		for i, prefix := range []string{"race/", "many/", "atomic", "once", "a/b/c", "size/", "r"} {
			rules = append(rules, faulty.Rule{Op: faulty.Put, Key: prefix, Prob: 0.2, Seed: uint64(10 + i)})
		}
		return retry.New(faulty.New(mem.New(), rules...), retry.Config{MaxAttempts: 30, Timeout: time.Minute, Sleep: (&fakeClock{}).sleep})
	})
}

// The same faults under batch deletes: a batch that fails part-way is retried for
// the keys it did not delete, and DeleteAll still deletes every key.
func TestConformanceUnderFaultsBatchDelete(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		rules := []faulty.Rule{
			{Op: faulty.Delete, Prob: 0.2, Seed: 5},
			{Op: faulty.Delete, Prob: 0.1, Seed: 6, Fault: faulty.FailAfter},
		}
		return retry.New(faulty.New(batchMem(), rules...), retry.Config{MaxAttempts: 30, Timeout: time.Minute, Sleep: (&fakeClock{}).sleep})
	})
}

func TestTransientErrorsRetried(t *testing.T) {
	ctx := t.Context()
	s, f, clock := setup(t, retry.Config{},
		faulty.Rule{Op: faulty.Get, Count: 2},
		faulty.Rule{Op: faulty.Stat, Count: 2},
		faulty.Rule{Op: faulty.Delete, Count: 2},
		faulty.Rule{Op: faulty.List, Count: 2},
		// Put attempts that consume part of the data before failing: the retry must
		// rewind the reader.
		faulty.Rule{Op: faulty.Put, Count: 2, Fault: faulty.Truncate, Offset: 3},
	)
	if got, err := readAll(s, ctx, "k"); err != nil || got != "value" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if info, err := s.Stat(ctx, "k"); err != nil || info.Size != 5 {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	var keys []string
	if err := s.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil || !slices.Equal(keys, []string{"k"}) {
		t.Fatalf("List = %q, %v", keys, err)
	}
	r := strings.NewReader("xxnew content")
	if _, err := r.Seek(2, io.SeekStart); err != nil { // Put starts where the reader stands
		t.Fatal(err)
	}
	if err := s.Put(ctx, "n", r, storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got, err := readAll(f.Inner(), ctx, "n"); err != nil || got != "new content" {
		t.Fatalf("after retried Put: %q, %v; want new content", got, err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, op := range []faulty.Op{faulty.Get, faulty.Stat, faulty.List, faulty.Put, faulty.Delete} {
		if n := f.Calls(op); n != 3 {
			t.Errorf("%s: %d calls, want 3", op, n)
		}
	}
	want := slices.Repeat([]time.Duration{base, 2 * base}, 5)
	if got := clock.got(); !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
}

type tempErr bool

func (e tempErr) Error() string   { return fmt.Sprintf("temporary=%v", bool(e)) }
func (e tempErr) Temporary() bool { return bool(e) }

type retryErr bool

func (e retryErr) Error() string   { return fmt.Sprintf("retryable=%v", bool(e)) }
func (e retryErr) Retryable() bool { return bool(e) }

func TestFinalErrorsNotRetried(t *testing.T) {
	ctx := t.Context()
	denied := errors.New("access denied")
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"permanent", storage.Permanent(denied)},
		{"permanent wrapped", fmt.Errorf("s3: %w", storage.Permanent(denied))},
		{"not exist", fmt.Errorf("x: %w", storage.ErrNotExist)},
		{"invalid range", storage.ErrInvalidRange},
		{"unsupported", storage.ErrUnsupported},
		{"not temporary", tempErr(false)},
		{"not retryable", retryErr(false)},
		{"EACCES", &os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}},
		{"canceled", context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f, clock := setup(t, retry.Config{}, faulty.Rule{Op: faulty.Stat, Err: tc.err})
			_, err := s.Stat(ctx, "k")
			if !errors.Is(err, tc.err) {
				t.Errorf("error = %v, want it to wrap %v", err, tc.err)
			}
			if f.Calls(faulty.Stat) != 1 || len(clock.got()) != 0 {
				t.Errorf("%d attempts, %d waits; want 1, 0", f.Calls(faulty.Stat), len(clock.got()))
			}
		})
	}

	// Answers from the inner store itself.
	s, f, _ := setup(t, retry.Config{})
	if _, err := s.Get(ctx, "missing", 0, -1); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Get(missing) error = %v", err)
	}
	if err := s.Put(ctx, "k", strings.NewReader("other"), storage.PutOptions{IfAbsent: true, Size: -1}); !errors.Is(err, storage.ErrExist) {
		t.Errorf("IfAbsent Put error = %v", err)
	}
	if err := s.Put(ctx, "/bad", strings.NewReader("x"), storage.PutOptions{Size: -1}); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("Put(/bad) error = %v", err)
	}
	if f.Calls(faulty.Get) != 1 || f.Calls(faulty.Put) != 2 {
		t.Errorf("calls: get %d, put %d; want 1, 2", f.Calls(faulty.Get), f.Calls(faulty.Put))
	}
}

func TestAttemptsBounded(t *testing.T) {
	s, f, clock := setup(t, retry.Config{MaxAttempts: 6, MaxDelay: 50 * time.Millisecond},
		faulty.Rule{Op: faulty.Stat, Err: tempErr(true)})
	_, err := s.Stat(t.Context(), "k")
	if !errors.Is(err, tempErr(true)) || !strings.Contains(err.Error(), "6 attempts") {
		t.Errorf("error = %v, want it to wrap the last error and count 6 attempts", err)
	}
	if n := f.Calls(faulty.Stat); n != 6 {
		t.Errorf("%d attempts, want 6", n)
	}
	want := []time.Duration{base, 2 * base, 4 * base, 50 * time.Millisecond, 50 * time.Millisecond}
	if got := clock.got(); !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}

	// The defaults: 5 attempts, and full jitter draws each wait from [0, cap].
	var caps []time.Duration
	s, f, _ = setup(t, retry.Config{BaseDelay: time.Millisecond, Sleep: func(context.Context, time.Duration) error { return nil },
		Jitter: func(d time.Duration) time.Duration { caps = append(caps, d); return 0 }},
		faulty.Rule{Op: faulty.Delete})
	if err := s.Delete(t.Context(), "k"); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("Delete error = %v", err)
	}
	if n := f.Calls(faulty.Delete); n != retry.DefaultMaxAttempts {
		t.Errorf("%d attempts, want %d", n, retry.DefaultMaxAttempts)
	}
	if want := []time.Duration{1, 2, 4, 8}; !slices.Equal(caps, scale(want, time.Millisecond)) {
		t.Errorf("jitter caps = %v", caps)
	}
}

func scale(ds []time.Duration, unit time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d * unit
	}
	return out
}

func TestDefaultJitterInRange(t *testing.T) {
	var waits []time.Duration
	f := faulty.New(mem.New(), faulty.Rule{Op: faulty.Stat})
	s := retry.New(f, retry.Config{MaxAttempts: 50, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }})
	if _, err := s.Stat(t.Context(), "k"); err == nil {
		t.Fatal("Stat succeeded through a fault on every attempt")
	}
	if len(waits) != 49 {
		t.Fatalf("%d waits, want 49", len(waits))
	}
	distinct := map[time.Duration]bool{}
	for i, w := range waits {
		limit := min(time.Millisecond<<min(i, 10), 4*time.Millisecond)
		if w < 0 || w > limit {
			t.Errorf("wait %d = %v, want within [0, %v]", i, w, limit)
		}
		distinct[w] = true
	}
	if len(distinct) < 10 {
		t.Errorf("only %d distinct waits in 49: not random", len(distinct))
	}
}

func TestNonSeekablePutOnce(t *testing.T) {
	s, f, clock := setup(t, retry.Config{}, faulty.Rule{Op: faulty.Put, Count: 1})
	err := s.Put(t.Context(), "n", io.MultiReader(strings.NewReader("data")), storage.PutOptions{Size: -1})
	if !errors.Is(err, faulty.ErrInjected) || !strings.Contains(err.Error(), "cannot be rewound") {
		t.Errorf("error = %v, want ErrInjected, saying the data cannot be rewound", err)
	}
	if f.Calls(faulty.Put) != 1 || len(clock.got()) != 0 {
		t.Errorf("%d attempts, %d waits; want 1, 0", f.Calls(faulty.Put), len(clock.got()))
	}
	// The same with a seekable reader is retried.
	if err := s.Put(t.Context(), "n", bytes.NewReader([]byte("data")), storage.PutOptions{Size: -1}); err != nil {
		t.Errorf("seekable Put: %v", err)
	}
}

func TestCancelStopsRetrying(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The context is cancelled during the first backoff.
	s, f, _ := setup(t, retry.Config{Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}}, faulty.Rule{Op: faulty.Stat})
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if f.Calls(faulty.Stat) != 1 {
		t.Errorf("%d attempts, want 1", f.Calls(faulty.Stat))
	}

	// Already cancelled: no attempt at all.
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if f.Calls(faulty.Stat) != 1 {
		t.Errorf("%d attempts in all, want 1", f.Calls(faulty.Stat))
	}

	// Cancelled while an attempt hangs: that attempt's error is final.
	ctx2, cancel2 := context.WithCancel(t.Context())
	s, f, clock := setup(t, retry.Config{}, faulty.Rule{Op: faulty.Get, Fault: faulty.Hang})
	go func() { // cancel once the attempt is hanging, not after a guessed delay
		for f.Calls(faulty.Get) == 0 {
			runtime.Gosched()
		}
		cancel2()
	}()
	if _, err := s.Get(ctx2, "k", 0, -1); !errors.Is(err, context.Canceled) {
		t.Errorf("hung Get: error = %v, want context.Canceled", err)
	}
	if f.Calls(faulty.Get) != 1 || len(clock.got()) != 0 {
		t.Errorf("hung Get: %d attempts, %d waits; want 1, 0", f.Calls(faulty.Get), len(clock.got()))
	}
}

// fakeTimers is a retry.Clock whose timers fire only when the test fires them.
type fakeTimers struct {
	mu     sync.Mutex
	timers []*fakeTimer
	armed  chan *fakeTimer // every timer made, in order
}

type fakeTimer struct {
	c      *fakeTimers
	f      func()
	active bool
}

func newFakeTimers() *fakeTimers { return &fakeTimers{armed: make(chan *fakeTimer, 100)} }

func (c *fakeTimers) AfterFunc(_ time.Duration, f func()) retry.Timer {
	t := &fakeTimer{c: c, f: f, active: true}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.armed <- t
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = true
	return was
}

// fire runs t's function if t is active, as its deadline passing would.
func (t *fakeTimer) fire() bool {
	t.c.mu.Lock()
	if !t.active {
		t.c.mu.Unlock()
		return false
	}
	t.active = false
	t.c.mu.Unlock()
	t.f()
	return true
}

// expireNext waits for the next attempt's deadline timer and lets it pass.
func (c *fakeTimers) expireNext() {
	for !(<-c.armed).fire() {
	}
}

// drain forgets the timers made so far.
func (c *fakeTimers) drain() {
	for {
		select {
		case <-c.armed:
		default:
			return
		}
	}
}

// passAll lets every active deadline pass: time goes by.
func (c *fakeTimers) passAll() {
	c.mu.Lock()
	timers := slices.Clone(c.timers)
	c.mu.Unlock()
	for _, t := range timers {
		t.fire()
	}
}

// deadlineCtx is a context whose deadline passes when the test closes done.
type deadlineCtx struct {
	context.Context
	done chan struct{}
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }
func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// background runs f in a goroutine; the result comes on the returned channel.
func background[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

func TestAttemptTimeout(t *testing.T) {
	ctx := t.Context()
	var retried []error
	onRetry := func(op, key string, attempt int, err error, wait time.Duration) {
		if !errors.Is(err, context.DeadlineExceeded) || !retry.Retryable(err) || !strings.Contains(err.Error(), "timed out after 20ms") {
			t.Errorf("%s attempt %d error %v: want a retryable attempt timeout", op, attempt, err)
		}
		retried = append(retried, err)
	}
	clock := newFakeTimers()
	s, f, _ := setup(t, retry.Config{Timeout: 20 * time.Millisecond, OnRetry: onRetry, Clock: clock},
		faulty.Rule{Op: faulty.Stat, Fault: faulty.Hang, Count: 2},
		faulty.Rule{Op: faulty.Get, Fault: faulty.Hang, Count: 1},
		faulty.Rule{Op: faulty.List, Fault: faulty.Hang, Count: 1},
	)
	type statResult struct {
		info storage.ObjectInfo
		err  error
	}
	stat := background(func() statResult { info, err := s.Stat(ctx, "k"); return statResult{info, err} })
	clock.expireNext()
	clock.expireNext()
	if r := <-stat; r.err != nil || r.info.Size != 5 {
		t.Fatalf("Stat = %+v, %v", r.info, r.err)
	}
	if f.Calls(faulty.Stat) != 3 || len(retried) != 2 {
		t.Fatalf("%d attempts, %d retries; want 3, 2", f.Calls(faulty.Stat), len(retried))
	}

	// Get: the deadline covers opening, not reading.
	type getResult struct {
		rc  io.ReadCloser
		err error
	}
	get := background(func() getResult { rc, err := s.Get(ctx, "k", 0, -1); return getResult{rc, err} })
	clock.expireNext()
	g := <-get
	if g.err != nil {
		t.Fatal(g.err)
	}
	clock.passAll() // every deadline passes before the body is read
	b, err := io.ReadAll(g.rc)
	g.rc.Close()
	if err != nil || string(b) != "value" {
		t.Errorf("reading after the attempt deadline: %q, %v", b, err)
	}
	if f.Calls(faulty.Get) != 2 {
		t.Errorf("Get: %d attempts, want 2", f.Calls(faulty.Get))
	}

	// List: the deadline does not count the time spent in fn.
	var keys []string
	list := background(func() error {
		return s.List(ctx, "", func(oi storage.ObjectInfo) error {
			clock.passAll() // fn takes longer than the deadline
			keys = append(keys, oi.Key)
			return nil
		})
	})
	clock.expireNext()
	if err := <-list; err != nil || !slices.Equal(keys, []string{"k"}) || f.Calls(faulty.List) != 2 {
		t.Errorf("List = %q, %v after %d attempts; want k after 2", keys, err, f.Calls(faulty.List))
	}

	// Put: the deadline bounds the store's inactivity, not the time waiting for data.
	f.Add(faulty.Rule{Op: faulty.Put, Fault: faulty.Hang, Count: 1})
	slow := &slowReader{r: strings.NewReader("slow data"), wait: clock.passAll}
	put := background(func() error { return s.Put(ctx, "slow", slow, storage.PutOptions{Size: -1}) })
	clock.expireNext()
	if err := <-put; err != nil {
		t.Errorf("Put from a slow reader: %v", err)
	}
	if got, err := readAll(f.Inner(), ctx, "slow"); got != "slow data" || err != nil || f.Calls(faulty.Put) != 2 {
		t.Errorf("after Put: %q, %v, %d attempts; want slow data after 2 attempts", got, err, f.Calls(faulty.Put))
	}

	// The caller's deadline is final.
	f.Add(faulty.Rule{Op: faulty.Delete, Fault: faulty.Hang})
	dctx := &deadlineCtx{Context: ctx, done: make(chan struct{})}
	clock.drain()
	del := background(func() error { return s.Delete(dctx, "k") })
	<-clock.armed // the attempt has started
	close(dctx.done)
	if err := <-del; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Delete past the caller's deadline: error = %v, want DeadlineExceeded", err)
	}
	if f.Calls(faulty.Delete) != 1 {
		t.Errorf("Delete: %d attempts, want 1", f.Calls(faulty.Delete))
	}
}

func TestListResumes(t *testing.T) {
	inner := mem.New()
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("o/%02d", i)
		want = append(want, k)
		if err := inner.Put(t.Context(), k, strings.NewReader(k), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	// Each attempt breaks further on; with MaxAttempts 2, only the progress made by
	// each attempt keeps the listing going.
	f := faulty.New(inner,
		faulty.Rule{Op: faulty.List, Fault: faulty.Truncate, Offset: 3, Count: 1},
		faulty.Rule{Op: faulty.List, Fault: faulty.Truncate, Offset: 6, Count: 1},
		faulty.Rule{Op: faulty.List, Fault: faulty.Truncate, Offset: 6, Count: 1},
		faulty.Rule{Op: faulty.List, Fault: faulty.Truncate, Offset: 8, Count: 1},
	)
	s := retry.New(f, retry.Config{MaxAttempts: 2, Sleep: (&fakeClock{}).sleep})
	var got []string
	err := s.List(t.Context(), "o/", func(oi storage.ObjectInfo) error { got = append(got, oi.Key); return nil })
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %q, %v; want %q", got, err, want)
	}
	if f.Calls(faulty.List) != 5 {
		t.Errorf("%d attempts, want 5", f.Calls(faulty.List))
	}

	// Two attempts in a row without progress exhaust MaxAttempts 2.
	f = faulty.New(inner, faulty.Rule{Op: faulty.List, Fault: faulty.Truncate, Offset: 3})
	s = retry.New(f, retry.Config{MaxAttempts: 2, Sleep: (&fakeClock{}).sleep})
	got = nil
	err = s.List(t.Context(), "o/", func(oi storage.ObjectInfo) error { got = append(got, oi.Key); return nil })
	if !errors.Is(err, faulty.ErrInjected) || !slices.Equal(got, want[:3]) || f.Calls(faulty.List) != 3 {
		t.Errorf("List = %q, %v after %d attempts; want the first 3 keys, ErrInjected after 3", got, err, f.Calls(faulty.List))
	}

	// fn's error ends the listing at once, as it is.
	f = faulty.New(inner)
	s = retry.New(f, retry.Config{Sleep: (&fakeClock{}).sleep})
	stop := errors.New("stop")
	err = s.List(t.Context(), "o/", func(storage.ObjectInfo) error { return stop })
	if !errors.Is(err, stop) || f.Calls(faulty.List) != 1 {
		t.Errorf("List error = %v after %d attempts, want stop after 1", err, f.Calls(faulty.List))
	}
}

// TestIfAbsentAmbiguity shows the documented ambiguity: when an attempt's
// acknowledgement is lost, the retry reports ErrExist for the caller's own write.
func TestIfAbsentAmbiguity(t *testing.T) {
	s, f, _ := setup(t, retry.Config{}, faulty.Rule{Op: faulty.Put, Fault: faulty.FailAfter, Count: 1})
	err := s.Put(t.Context(), "new", strings.NewReader("mine"), storage.PutOptions{IfAbsent: true, Size: -1})
	if !errors.Is(err, storage.ErrExist) || !strings.Contains(err.Error(), "2 attempts") {
		t.Errorf("error = %v, want ErrExist after 2 attempts", err)
	}
	if got, err := readAll(f.Inner(), t.Context(), "new"); got != "mine" || err != nil {
		t.Errorf("stored %q, %v; want mine", got, err)
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("connection reset"), true},
		{fmt.Errorf("get: %w", storage.ErrNotExist), false},
		{storage.ErrExist, false},
		{storage.ErrInvalidKey, false},
		{storage.ErrInvalidRange, false},
		{storage.ErrUnsupported, false},
		{storage.Permanent(errors.New("bad credentials")), false},
		{storage.Permanent(tempErr(true)), false},
		{fmt.Errorf("x: %w", storage.Permanent(retryErr(true))), false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.Canceled), false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), true}, // the loop checks the caller's ctx itself
		{os.ErrDeadlineExceeded, true},
		{tempErr(true), true},
		{tempErr(false), false},
		{retryErr(true), true},
		{retryErr(false), false},
		{syscall.ECONNRESET, true},
		{&os.SyscallError{Syscall: "read", Err: syscall.ECONNREFUSED}, true},
		{syscall.EINTR, true},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, false},
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, false},
		{fmt.Errorf("x: %w", faulty.ErrInjected), true},
	} {
		if got := retry.Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// slowReader calls wait (time passes) before each Read and yields 2 bytes at a time:
// a slow producer.
type slowReader struct {
	r    *strings.Reader
	wait func()
}

func (s *slowReader) Read(p []byte) (int, error) {
	s.wait()
	return s.r.Read(p[:min(len(p), 2)])
}

func (s *slowReader) Seek(off int64, whence int) (int64, error) { return s.r.Seek(off, whence) }

func TestGetResumesABrokenBody(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	want := strings.Repeat("0123456789", 10_000)
	if err := inner.Put(ctx, "k", strings.NewReader(want), storage.PutOptions{Size: int64(len(want))}); err != nil {
		t.Fatal(err)
	}
	// The first two bodies break off; the third is whole.
	f := faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 30_000, Count: 2})
	s := retry.New(f, retry.Config{MaxAttempts: 3, Sleep: (&fakeClock{}).sleep})
	got, err := readAll(s, ctx, "k")
	if err != nil || got != want {
		t.Fatalf("resumed read: %d bytes, %v", len(got), err)
	}
	if n := f.Calls(faulty.Get); n != 3 {
		t.Fatalf("opened %d times, want 3", n)
	}

	// A range is resumed as a range.
	f.Reset()
	f.Add(faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 1000, Count: 1})
	rc, err := s.Get(ctx, "k", 5, 20_000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != want[5:20_005] {
		t.Fatalf("resumed range: %d bytes, %v", len(b), err)
	}

	// A body that keeps breaking fails after MaxAttempts opens, with the error.
	f.Reset()
	f.Add(faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 100})
	if _, err := readAll(s, ctx, "k"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("persistent truncation: %v", err)
	}
	if n := f.Calls(faulty.Get); n != 3 {
		t.Fatalf("opened %d times, want 3", n)
	}
}

// A long download that breaks many times, each time after real progress, gets a fresh
// attempt budget after each: it completes. One that breaks without progress still runs
// out of attempts.
func TestADownloadThatBreaksAfterProgressKeepsGoing(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	data := bytes.Repeat([]byte("0123456789abcdef"), 20<<16) // 20 MiB
	if err := inner.Put(ctx, "k", bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	noWait := func(context.Context, time.Duration) error { return nil }
	fst := faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 2 << 20})
	st := retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: noWait})
	rc, err := st.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes after %d gets: %v", len(got), fst.Calls(faulty.Get), err)
	}
	if fst.Calls(faulty.Get) < 10 {
		t.Fatalf("%d gets: the body did not break as arranged", fst.Calls(faulty.Get))
	}
	fst = faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 1000})
	rc, err = retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: noWait}).Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil || fst.Calls(faulty.Get) != 3 {
		t.Fatalf("breaking every 1000 bytes: %v after %d gets, want failure after 3", err, fst.Calls(faulty.Get))
	}
}
