// Package storagetest is the conformance suite for storage.Store backends: every
// backend's tests call Run, which checks the contract documented on storage.Store.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

// Run runs the conformance suite against the stores that newStore makes. newStore is
// called once per subtest and must return a fresh, empty store; Run closes it when the
// subtest ends. Subtests do not run in parallel with each other.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"SizeHintIgnored", testSizeHintIgnored},
		{"ZeroBytes", testZeroBytes},
		{"Large", testLarge},
		{"OddKeys", testOddKeys},
		{"IfAbsent", testIfAbsent},
		{"IfAbsentRace", testIfAbsentRace},
		{"Missing", testMissing},
		{"Ranges", testRanges},
		{"FailingReader", testFailingReader},
		{"CancelledPut", testCancelledPut},
		{"CancelledCalls", testCancelledCalls},
		{"AtomicOverwrite", testAtomicOverwrite},
		{"ListPrefix", testListPrefix},
		{"ListOrder", testListOrder},
		{"ListMany", testListMany},
		{"ListStop", testListStop},
		{"ListCancel", testListCancel},
		{"InvalidKeys", testInvalidKeys},
		{"DeleteAll", testDeleteAll},
		{"DeleteAllCancelled", testDeleteAllCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// ---- helpers ----

func put(t *testing.T, s storage.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s storage.Store, key string, off, length int64) []byte {
	t.Helper()
	b, err := tryGet(t.Context(), s, key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	return b
}

func tryGet(ctx context.Context, s storage.Store, key string, off, length int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return b, err
}

func wantContent(t *testing.T, s storage.Store, key string, want []byte) {
	t.Helper()
	got := get(t, s, key, 0, -1)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %s, want %s", key, show(got), show(want))
	}
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(want)) {
		t.Fatalf("Stat(%q) = {Key %q, Size %d}, want {Key %q, Size %d}", key, info.Key, info.Size, key, len(want))
	}
}

func wantMissing(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if _, err := tryGet(t.Context(), s, key, 0, -1); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Get(%q) error = %v, want ErrNotExist", key, err)
	}
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat(%q) error = %v, want ErrNotExist", key, err)
	}
}

func list(t *testing.T, s storage.Store, prefix string) []storage.ObjectInfo {
	t.Helper()
	var infos []storage.ObjectInfo
	if err := s.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		infos = append(infos, oi)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return infos
}

func listKeys(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, oi := range list(t, s, prefix) {
		keys = append(keys, oi.Key)
	}
	return keys
}

func wantKeys(t *testing.T, s storage.Store, prefix string, want ...string) {
	t.Helper()
	if got := listKeys(t, s, prefix); !slices.Equal(got, want) {
		t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
	}
}

// show abbreviates b for failure messages.
func show(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q (%d bytes)", b, len(b))
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b) // never fails
	return b
}

var errBoom = errors.New("storagetest: injected reader failure")

// failingReader yields data and then fails with errBoom instead of io.EOF.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

// hookReader calls hook once after the first Read, then goes on yielding data.
type hookReader struct {
	r    io.Reader
	hook func()
	once sync.Once
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.once.Do(h.hook)
	return n, err
}

// ---- tests ----

func testRoundTrip(t *testing.T, s storage.Store) {
	ctx := t.Context()
	data := []byte("hello, repository")
	before := time.Now()
	put(t, s, "a/b/c.txt", data)
	wantContent(t, s, "a/b/c.txt", data)

	info, err := s.Stat(ctx, "a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	if d := info.ModTime.Sub(before); d < -10*time.Minute || d > 10*time.Minute {
		t.Errorf("Stat ModTime = %v, want close to %v", info.ModTime, before)
	}

	infos := list(t, s, "")
	if len(infos) != 1 || infos[0].Key != "a/b/c.txt" || infos[0].Size != int64(len(data)) {
		t.Fatalf("List(\"\") = %+v, want one object a/b/c.txt of %d bytes", infos, len(data))
	}
	if infos[0].ModTime.IsZero() {
		t.Errorf("List ModTime is zero")
	}

	if err := s.Delete(ctx, "a/b/c.txt"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, s, "a/b/c.txt")
	wantKeys(t, s, "")
	if err := s.Delete(ctx, "a/b/c.txt"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("second Delete error = %v, want ErrNotExist", err)
	}

	// The key can be used again after a delete.
	put(t, s, "a/b/c.txt", []byte("again"))
	wantContent(t, s, "a/b/c.txt", []byte("again"))

	if s.String() == "" {
		t.Errorf("String() is empty")
	}
}

func testOverwrite(t *testing.T, s storage.Store) {
	put(t, s, "k", []byte("first version, long"))
	put(t, s, "k", []byte("second"))
	wantContent(t, s, "k", []byte("second"))
	put(t, s, "k", []byte("third version, longer than the others"))
	wantContent(t, s, "k", []byte("third version, longer than the others"))
	wantKeys(t, s, "", "k")
}

func testSizeHintIgnored(t *testing.T, s storage.Store) {
	ctx := t.Context()
	data := []byte("0123456789")
	for _, size := range []int64{-1, 3, 10, 100} {
		key := fmt.Sprintf("size/%d", size)
		if err := s.Put(ctx, key, bytes.NewReader(data), storage.PutOptions{Size: size}); err != nil {
			t.Fatalf("Put with Size %d: %v", size, err)
		}
		wantContent(t, s, key, data)
	}
}

func testZeroBytes(t *testing.T, s storage.Store) {
	put(t, s, "empty", nil)
	wantContent(t, s, "empty", []byte{})
	infos := list(t, s, "")
	if len(infos) != 1 || infos[0].Key != "empty" || infos[0].Size != 0 {
		t.Fatalf("List = %+v, want one empty object", infos)
	}
	if got := get(t, s, "empty", 0, 10); len(got) != 0 {
		t.Fatalf("Get(empty, 0, 10) = %s, want nothing", show(got))
	}
	if _, err := tryGet(t.Context(), s, "empty", 1, -1); !errors.Is(err, storage.ErrInvalidRange) {
		t.Fatalf("Get(empty, 1, -1) error = %v, want ErrInvalidRange", err)
	}
}

func testLarge(t *testing.T, s storage.Store) {
	data := pattern(1, 5<<20+123)
	ctx := t.Context()
	// A reader without WriterTo or Seeker, as a pipe from a compressor would be.
	if err := s.Put(ctx, "big/object", io.MultiReader(bytes.NewReader(data)), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	wantContent(t, s, "big/object", data)
	off := int64(3<<20 + 7)
	if got := get(t, s, "big/object", off, 1<<20); !bytes.Equal(got, data[off:off+1<<20]) {
		t.Fatalf("Get of 1 MiB at %d differs (%d bytes)", off, len(got))
	}
	if got := get(t, s, "big/object", off, -1); !bytes.Equal(got, data[off:]) {
		t.Fatalf("Get from %d to end differs (%d bytes, want %d)", off, len(got), len(data)-int(off))
	}
}

func testOddKeys(t *testing.T, s storage.Store) {
	keys := []string{
		"with space/file name.txt",
		"unicode/ünïcödé-🙂",
		"punct/a:b;c=d,e+f@g%20h~i!j'k(l)m",
		".hidden/.dotfile",
		"a/...",
		"deep/1/2/3/4/5/6/7/8/9/10",
	}
	for i, k := range keys {
		put(t, s, k, []byte(fmt.Sprint(i)))
	}
	for i, k := range keys {
		wantContent(t, s, k, []byte(fmt.Sprint(i)))
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	wantKeys(t, s, "", want...)
	for _, k := range keys {
		if err := s.Delete(t.Context(), k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	wantKeys(t, s, "")
}

func testIfAbsent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	err := s.Put(ctx, "once", strings.NewReader("original"), storage.PutOptions{IfAbsent: true, Size: -1})
	if errors.Is(err, storage.ErrUnsupported) {
		t.Skipf("store does not support IfAbsent: %v", err)
	}
	if err != nil {
		t.Fatalf("first IfAbsent Put: %v", err)
	}
	wantContent(t, s, "once", []byte("original"))

	err = s.Put(ctx, "once", strings.NewReader("replacement"), storage.PutOptions{IfAbsent: true, Size: -1})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("second IfAbsent Put error = %v, want ErrExist", err)
	}
	wantContent(t, s, "once", []byte("original"))

	// A zero-byte object counts as present too.
	put(t, s, "dir/empty", nil)
	err = s.Put(ctx, "dir/empty", strings.NewReader("x"), storage.PutOptions{IfAbsent: true, Size: 1})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("IfAbsent Put over empty object error = %v, want ErrExist", err)
	}
	wantContent(t, s, "dir/empty", []byte{})

	// After a delete the key is absent again.
	if err := s.Delete(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "once", strings.NewReader("new"), storage.PutOptions{IfAbsent: true, Size: 3}); err != nil {
		t.Fatalf("IfAbsent Put after Delete: %v", err)
	}
	wantContent(t, s, "once", []byte("new"))
	wantKeys(t, s, "", "dir/empty", "once")
}

func testIfAbsentRace(t *testing.T, s storage.Store) {
	const writers = 16
	ctx := t.Context()
	contents := make([][]byte, writers)
	for i := range contents {
		// Distinct content and distinct lengths, large enough for the writes to overlap.
		contents[i] = bytes.Repeat([]byte{byte('A' + i)}, 32<<10+i*1000)
	}
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(ctx, "race/key", bytes.NewReader(contents[i]), storage.PutOptions{IfAbsent: true, Size: int64(len(contents[i]))})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both succeeded", winner, i)
			}
			winner = i
		case errors.Is(err, storage.ErrUnsupported):
			t.Skipf("store does not support IfAbsent: %v", err)
		case !errors.Is(err, storage.ErrExist):
			t.Fatalf("writer %d: error = %v, want nil or ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no writer succeeded")
	}
	wantContent(t, s, "race/key", contents[winner])
	wantKeys(t, s, "", "race/key")
}

func testMissing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	put(t, s, "present/x", []byte("x"))
	for _, key := range []string{"absent", "present/y", "present/x/below", "presen", "present"} {
		wantMissing(t, s, key)
		if _, err := s.Get(ctx, key, 5, 10); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Get(%q, 5, 10) error = %v, want ErrNotExist", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Delete(%q) error = %v, want ErrNotExist", key, err)
		}
	}
	wantContent(t, s, "present/x", []byte("x"))
}

func testRanges(t *testing.T, s storage.Store) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?") // 64 bytes
	size := int64(len(data))
	put(t, s, "r", data)
	for _, tc := range []struct {
		off, length int64
		want        string
	}{
		{0, -1, string(data)},
		{0, size, string(data)},
		{0, 10, "0123456789"},
		{0, 0, ""},
		{10, -1, string(data[10:])},
		{10, 5, "abcde"},
		{10, 0, ""},
		{size - 1, -1, "?"},
		{size - 1, 1, "?"},
		{60, 100, "YZ!?"}, // runs past the end
		{size, -1, ""},    // starts at the end
		{size, 5, ""},
	} {
		if got := get(t, s, "r", tc.off, tc.length); string(got) != tc.want {
			t.Errorf("Get(r, %d, %d) = %q, want %q", tc.off, tc.length, got, tc.want)
		}
	}
	for _, off := range []int64{size + 1, size + 1000, -1} {
		if _, err := tryGet(t.Context(), s, "r", off, -1); !errors.Is(err, storage.ErrInvalidRange) {
			t.Errorf("Get(r, %d, -1) error = %v, want ErrInvalidRange", off, err)
		}
	}
}

func testFailingReader(t *testing.T, s storage.Store) {
	ctx := t.Context()
	data := pattern(2, 600<<10) // several copy chunks
	for _, opts := range []storage.PutOptions{{Size: -1}, {Size: int64(len(data))}, {IfAbsent: true, Size: -1}} {
		err := s.Put(ctx, "fail/new", &failingReader{bytes.NewReader(data)}, opts)
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put(%+v) with a failing reader: error = %v, want it to wrap the reader's error", opts, err)
		}
		wantMissing(t, s, "fail/new")
		wantKeys(t, s, "")
	}

	put(t, s, "fail/old", []byte("previous"))
	err := s.Put(ctx, "fail/old", &failingReader{bytes.NewReader(data)}, storage.PutOptions{Size: -1})
	if !errors.Is(err, errBoom) {
		t.Fatalf("overwriting Put with a failing reader: error = %v, want it to wrap the reader's error", err)
	}
	wantContent(t, s, "fail/old", []byte("previous"))
	wantKeys(t, s, "", "fail/old")

	// A reader that fails at once, before yielding anything.
	err = s.Put(ctx, "fail/old", &failingReader{strings.NewReader("")}, storage.PutOptions{Size: -1})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Put with an at-once failing reader: error = %v, want errBoom", err)
	}
	wantContent(t, s, "fail/old", []byte("previous"))
}

func testCancelledPut(t *testing.T, s storage.Store) {
	data := pattern(3, 1<<20)

	// Cancelled before the call.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "c/new", bytes.NewReader(data), storage.PutOptions{Size: -1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with cancelled ctx: error = %v, want context.Canceled", err)
	}
	wantMissing(t, s, "c/new")

	// Cancelled while the data is being read; the reader goes on yielding data.
	for _, opts := range []storage.PutOptions{{Size: -1}, {IfAbsent: true, Size: -1}} {
		ctx, cancel = context.WithCancel(t.Context())
		err := s.Put(ctx, "c/new", &hookReader{r: bytes.NewReader(data), hook: cancel}, opts)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put(%+v) cancelled midway: error = %v, want context.Canceled", opts, err)
		}
		wantMissing(t, s, "c/new")
	}

	// A previous object survives a cancelled overwrite.
	put(t, s, "c/old", []byte("previous"))
	ctx, cancel = context.WithCancel(t.Context())
	err := s.Put(ctx, "c/old", &hookReader{r: bytes.NewReader(data), hook: cancel}, storage.PutOptions{Size: -1})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("overwriting Put cancelled midway: error = %v, want context.Canceled", err)
	}
	wantContent(t, s, "c/old", []byte("previous"))
	wantKeys(t, s, "", "c/old")
}

func testCancelledCalls(t *testing.T, s storage.Store) {
	put(t, s, "k", []byte("value"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Get(ctx, "k", 0, -1); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with cancelled ctx: error = %v, want context.Canceled", err)
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat with cancelled ctx: error = %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with cancelled ctx: error = %v, want context.Canceled", err)
	}
	wantContent(t, s, "k", []byte("value")) // the cancelled Delete did nothing

	// A reader stops with ctx's error once its Get context is cancelled.
	data := pattern(4, 1<<20)
	put(t, s, "big", data)
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	rc, err := s.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }() // read-only; the test is about cancellation
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		t.Errorf("reading on after cancelling the Get context: got %d more bytes and no error", n)
	}
}

func testAtomicOverwrite(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := bytes.Repeat([]byte("A"), 64<<10)
	b := bytes.Repeat([]byte("B"), 100<<10)
	put(t, s, "atomic", a)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := range 30 {
			v := a
			if i%2 == 0 {
				v = b
			}
			if err := s.Put(ctx, "atomic", bytes.NewReader(v), storage.PutOptions{Size: -1}); err != nil {
				t.Errorf("Put: %v", err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := tryGet(ctx, s, "atomic", 0, -1)
				if err != nil {
					t.Errorf("Get during overwrites: %v", err)
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					t.Errorf("Get during overwrites saw a partial or mixed object: %s", show(got))
					return
				}
			}
		})
	}
	wg.Wait()
	wantContent(t, s, "atomic", a)
}

func testListPrefix(t *testing.T, s storage.Store) {
	keys := []string{"a/b/c", "a/b/d/e", "a/bc", "a/c", "ab", "b", "ba/x"}
	for i, k := range keys {
		put(t, s, k, bytes.Repeat([]byte("x"), i+1))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{"a", []string{"a/b/c", "a/b/d/e", "a/bc", "a/c", "ab"}},
		{"a/", []string{"a/b/c", "a/b/d/e", "a/bc", "a/c"}},
		{"a/b", []string{"a/b/c", "a/b/d/e", "a/bc"}},
		{"a/b/", []string{"a/b/c", "a/b/d/e"}},
		{"a/b/c", []string{"a/b/c"}},
		{"a/b/d", []string{"a/b/d/e"}},
		{"a/b/d/e", []string{"a/b/d/e"}},
		{"a/b/c/", nil}, // "a/b/c" is an object, not a directory
		{"a/b/c/x", nil},
		{"b", []string{"b", "ba/x"}},
		{"ba/", []string{"ba/x"}},
		{"zz", nil},
		{"zz/", nil},
		{"a/x/y", nil},
	} {
		wantKeys(t, s, tc.prefix, tc.want...)
	}
	// Sizes are reported per object.
	for _, oi := range list(t, s, "") {
		i := slices.Index(keys, oi.Key)
		if oi.Size != int64(i+1) {
			t.Errorf("List: %s has Size %d, want %d", oi.Key, oi.Size, i+1)
		}
	}
}

func testListOrder(t *testing.T, s storage.Store) {
	// Byte order puts "-" and "." before "/", and "0" after it, so a naive
	// directory-by-directory walk gets these wrong.
	keys := []string{"x0", "x.z", "x-a", "x/y.z", "x/y-z/q", "x/y/z", "x/Y", "x~", "X", "x/y0"}
	for _, k := range keys {
		put(t, s, k, []byte(k))
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	wantKeys(t, s, "", want...)
	wantKeys(t, s, "x", want[1:]...) // all but "X"
	wantKeys(t, s, "x/y", "x/y-z/q", "x/y.z", "x/y/z", "x/y0")
}

func testListMany(t *testing.T, s storage.Store) {
	const n = 1100
	keys := make([]string, n)
	for i := range keys {
		// Unpadded numbers so that lexical order differs from numeric order, spread
		// over a few "directories".
		keys[i] = fmt.Sprintf("many/%d/%d", i%3, i)
	}
	ctx := t.Context()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if err := s.Put(ctx, keys[i], strings.NewReader(keys[i]), storage.PutOptions{Size: -1}); err != nil {
					t.Errorf("Put(%q): %v", keys[i], err)
				}
			}
		})
	}
	for i := range keys {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	put(t, s, "manz", []byte("after"))
	put(t, s, "man", []byte("before"))

	infos := list(t, s, "many/")
	want := slices.Clone(keys)
	slices.Sort(want)
	if len(infos) != n {
		t.Fatalf("List(many/) returned %d objects, want %d", len(infos), n)
	}
	for i, oi := range infos {
		if oi.Key != want[i] {
			t.Fatalf("List(many/)[%d] = %q, want %q", i, oi.Key, want[i])
		}
		if oi.Size != int64(len(oi.Key)) {
			t.Fatalf("List(many/): %q has Size %d, want %d", oi.Key, oi.Size, len(oi.Key))
		}
	}
	if got := listKeys(t, s, "many/1/"); len(got) != n/3+1 || got[0] != "many/1/1" || got[1] != "many/1/10" {
		t.Fatalf("List(many/1/) = %d keys starting %q, want %d keys starting many/1/1, many/1/10", len(got), got[:min(2, len(got))], n/3+1)
	}
	if got := listKeys(t, s, ""); len(got) != n+2 || got[0] != "man" || got[n+1] != "manz" {
		t.Fatalf("List(\"\") = %d keys, first %q, last %q; want %d, man, manz", len(got), got[0], got[len(got)-1], n+2)
	}
}

func testListStop(t *testing.T, s storage.Store) {
	for i := range 10 {
		put(t, s, fmt.Sprintf("s/%02d", i), nil)
	}
	errStop := errors.New("stop here")
	var seen []string
	err := s.List(t.Context(), "s/", func(oi storage.ObjectInfo) error {
		seen = append(seen, oi.Key)
		if len(seen) == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("List error = %v, want the callback's error", err)
	}
	if want := []string{"s/00", "s/01", "s/02"}; !slices.Equal(seen, want) {
		t.Fatalf("List called fn for %q, want %q", seen, want)
	}
}

func testListCancel(t *testing.T, s storage.Store) {
	for i := range 10 {
		put(t, s, fmt.Sprintf("s/%02d", i), nil)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := 0
	err := s.List(ctx, "", func(storage.ObjectInfo) error { calls++; return nil })
	if !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("List with cancelled ctx: error = %v after %d calls, want context.Canceled and no calls", err, calls)
	}

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	calls = 0
	err = s.List(ctx, "s/", func(storage.ObjectInfo) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Fatalf("List cancelled by fn: error = %v after %d calls, want context.Canceled after 2", err, calls)
	}
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	put(t, s, "a/b", []byte("x"))
	bad := []string{"", "/abs", "/", "a/../b", "..", ".", "./a", "a/./b", "a//b", "a/", "a/b/", "a\\b", "a\x00b"}
	for _, key := range bad {
		if err := s.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{Size: 1}); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{IfAbsent: true, Size: 1}); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q, IfAbsent) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Stat(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q) error = %v, want ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range []string{"/", "/a", "a//", "a//b", "../", "a/../", "./", "a/./b", "a\\b", "a\x00"} {
		called := false
		err := s.List(ctx, prefix, func(storage.ObjectInfo) error { called = true; return nil })
		if !errors.Is(err, storage.ErrInvalidKey) || called {
			t.Errorf("List(%q) error = %v (fn called: %v), want ErrInvalidKey", prefix, err, called)
		}
	}
	// Nothing was written through a bad key, and the valid object is intact.
	wantKeys(t, s, "", "a/b")
	wantContent(t, s, "a/b", []byte("x"))
}

// testDeleteAll checks storage.DeleteAll, which uses the store's batch delete when it
// has one (storage.BatchDeleter): every key goes, missing keys count as deleted, other
// keys stay, and an invalid key stops it before anything is deleted.
func testDeleteAll(t *testing.T, s storage.Store) {
	ctx := t.Context()
	n := 7
	if b := storage.MaxBatch(s); b > 0 && b <= 10 {
		n = 2*b + 1 // several batches, the last one short
	}
	var keys []string
	for i := range n {
		k := fmt.Sprintf("del/%02d", i)
		put(t, s, k, []byte(k))
		keys = append(keys, k)
	}
	put(t, s, "del0", []byte("stays"))
	put(t, s, "keep/x", []byte("stays"))
	if err := storage.DeleteAll(ctx, s, nil); err != nil {
		t.Fatalf("DeleteAll(nil): %v", err)
	}
	bad := append(append([]string(nil), keys...), "del/../keep/x")
	if err := storage.DeleteAll(ctx, s, bad); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("DeleteAll with an invalid key: error = %v, want ErrInvalidKey", err)
	}
	wantKeys(t, s, "del/", keys...) // nothing deleted
	withMissing := append([]string{"del/missing", "nothing/here"}, keys...)
	if err := storage.DeleteAll(ctx, s, withMissing); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	wantKeys(t, s, "", "del0", "keep/x")
	if err := storage.DeleteAll(ctx, s, keys); err != nil {
		t.Fatalf("DeleteAll again, every key missing: %v", err)
	}
	wantContent(t, s, "keep/x", []byte("stays"))
}

// testDeleteAllCancelled: a cancelled context fails DeleteAll with its error.
func testDeleteAllCancelled(t *testing.T, s storage.Store) {
	put(t, s, "k", []byte("value"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := storage.DeleteAll(ctx, s, []string{"k"}); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteAll with cancelled ctx: error = %v, want context.Canceled", err)
	}
	wantContent(t, s, "k", []byte("value"))
}
