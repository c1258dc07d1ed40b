package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

func TestPassThroughConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return faulty.New(mem.New()) })
}

func put(t *testing.T, s storage.Store, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func read(s storage.Store, ctx context.Context, key string) (string, error) {
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// outcomes runs n Stats and returns which failed, as a string of "x" and ".".
func outcomes(s storage.Store, ctx context.Context, key string, n int) string {
	var b strings.Builder
	for range n {
		if _, err := s.Stat(ctx, key); err != nil {
			b.WriteByte('x')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func TestSkipAndCount(t *testing.T) {
	inner := mem.New()
	put(t, inner, "k", "v")
	boom := errors.New("boom")
	s := faulty.New(inner, faulty.Rule{Op: faulty.Stat, Skip: 2, Count: 3, Err: boom})
	ctx := t.Context()
	if got, want := outcomes(s, ctx, "k", 8), "..xxx..."; got != want {
		t.Errorf("outcomes = %s, want %s", got, want)
	}
	s.Reset()
	s.Add(faulty.Rule{Op: faulty.Stat, Count: 1, Err: boom})
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, boom) {
		t.Errorf("Stat error = %v, want boom", err)
	}
	if s.Calls(faulty.Stat) != 1 || s.Faults(faulty.Stat) != 1 || s.Calls(faulty.Get) != 0 {
		t.Errorf("counters after Reset: calls %d, faults %d, get calls %d; want 1, 1, 0", s.Calls(faulty.Stat), s.Faults(faulty.Stat), s.Calls(faulty.Get))
	}
	// Other operations are unaffected, and the default error is ErrInjected.
	s.Add(faulty.Rule{Op: faulty.Delete})
	if got, err := read(s, ctx, "k"); err != nil || got != "v" {
		t.Errorf("Get = %q, %v; want v", got, err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("Delete error = %v, want ErrInjected", err)
	}
	if _, err := inner.Stat(ctx, "k"); err != nil {
		t.Errorf("a failed Delete reached the inner store: %v", err)
	}
}

func TestKeyFilterAndOrder(t *testing.T) {
	inner := mem.New()
	put(t, inner, "a/1", "x")
	put(t, inner, "b/1", "x")
	first, second := errors.New("first"), errors.New("second")
	s := faulty.New(inner,
		faulty.Rule{Op: faulty.Stat, Key: "a/", Count: 1, Err: first},
		faulty.Rule{Op: faulty.Stat, Err: second},
	)
	ctx := t.Context()
	if _, err := s.Stat(ctx, "a/1"); !errors.Is(err, first) {
		t.Errorf("first Stat(a/1) error = %v, want first", err)
	}
	if _, err := s.Stat(ctx, "a/1"); !errors.Is(err, second) {
		t.Errorf("second Stat(a/1) error = %v, want second", err)
	}
	if _, err := s.Stat(ctx, "b/1"); !errors.Is(err, second) {
		t.Errorf("Stat(b/1) error = %v, want second", err)
	}
}

func TestProbDeterministic(t *testing.T) {
	inner := mem.New()
	put(t, inner, "k", "v")
	ctx := t.Context()
	run := func(seed uint64) string {
		s := faulty.New(inner, faulty.Rule{Op: faulty.Stat, Prob: 0.3, Seed: seed})
		return outcomes(s, ctx, "k", 200)
	}
	a, b, c := run(1), run(1), run(2)
	if a != b {
		t.Errorf("same seed gave different outcomes:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("different seeds gave the same outcomes")
	}
	if n := strings.Count(a, "x"); n < 30 || n > 90 {
		t.Errorf("%d of 200 calls failed with Prob 0.3", n)
	}
}

func TestGetFaults(t *testing.T) {
	inner := mem.New()
	put(t, inner, "k", "0123456789")
	ctx := t.Context()

	s := faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 4, Count: 1})
	got, err := read(s, ctx, "k")
	if got != "0123" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated Get = %q, %v; want 0123, io.ErrUnexpectedEOF", got, err)
	}
	if got, err := read(s, ctx, "k"); got != "0123456789" || err != nil {
		t.Errorf("Get after the rule ran out = %q, %v", got, err)
	}

	s = faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Corrupt, Offset: 3})
	got, err = read(s, ctx, "k")
	if err != nil || got != "012\xcc456789" {
		t.Errorf("corrupted Get = %q, %v; want byte 3 flipped", got, err)
	}

	s = faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.FailAfter})
	if _, err := s.Get(ctx, "k", 0, -1); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("FailAfter Get error = %v, want ErrInjected", err)
	}
	// Missing objects stay missing rather than being turned into injected failures.
	if _, err := s.Get(ctx, "nope", 0, -1); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("FailAfter Get of a missing key: error = %v, want ErrNotExist", err)
	}
}

func TestPutFaults(t *testing.T) {
	inner := mem.New()
	ctx := t.Context()
	s := faulty.New(inner,
		faulty.Rule{Op: faulty.Put, Key: "trunc", Fault: faulty.Truncate, Offset: 3},
		faulty.Rule{Op: faulty.Put, Key: "after", Fault: faulty.FailAfter},
		faulty.Rule{Op: faulty.Put, Key: "corrupt", Fault: faulty.Corrupt, Offset: 0},
		faulty.Rule{Op: faulty.Put, Key: "fail"},
	)
	for _, key := range []string{"trunc", "after", "corrupt", "fail"} {
		err := s.Put(ctx, key, strings.NewReader("abcdef"), storage.PutOptions{Size: 6})
		if (err == nil) != (key == "corrupt") {
			t.Errorf("Put(%q) error = %v", key, err)
		}
	}
	var keys []string
	if err := inner.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"after", "corrupt"}; !slices.Equal(keys, want) {
		t.Errorf("stored keys = %q, want %q", keys, want)
	}
	if got, _ := read(inner, ctx, "corrupt"); got != "\x9ebcdef" {
		t.Errorf("corrupted Put stored %q", got)
	}
	if got, _ := read(inner, ctx, "after"); got != "abcdef" {
		t.Errorf("FailAfter Put stored %q", got)
	}
}

func TestListTruncate(t *testing.T) {
	inner := mem.New()
	for _, k := range []string{"a", "b", "c", "d"} {
		put(t, inner, k, k)
	}
	s := faulty.New(inner, faulty.Rule{Op: faulty.List, Fault: faulty.Truncate, Offset: 2})
	var keys []string
	err := s.List(t.Context(), "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if !errors.Is(err, faulty.ErrInjected) || !slices.Equal(keys, []string{"a", "b"}) {
		t.Errorf("List = %q, %v; want a, b and ErrInjected", keys, err)
	}
}

func TestHang(t *testing.T) {
	inner := mem.New()
	put(t, inner, "k", "v")
	s := faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Hang})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	// It returns only because the context ended (no timing is asserted).
	_, err := s.Get(ctx, "k", 0, -1)
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		t.Errorf("hung Get: error %v (ctx %v), want DeadlineExceeded once the context is done", err, ctx.Err())
	}
}

func TestPutTruncateWithBytes(t *testing.T) {
	// A Truncate fault on Put hands the inner store a reader that fails midway; the
	// inner store must then store nothing.
	inner := mem.New()
	put(t, inner, "k", "old")
	s := faulty.New(inner, faulty.Rule{Op: faulty.Put, Fault: faulty.Truncate, Offset: 100})
	err := s.Put(t.Context(), "k", bytes.NewReader(make([]byte, 1000)), storage.PutOptions{Size: 1000})
	if !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("error = %v, want ErrInjected", err)
	}
	if got, _ := read(inner, t.Context(), "k"); got != "old" {
		t.Errorf("stored %q, want old", got)
	}
}

func TestStall(t *testing.T) {
	inner := mem.New()
	put(t, inner, "k", "0123456789")
	s := faulty.New(inner, faulty.Rule{Op: faulty.Get, Fault: faulty.Stall, Offset: 4})
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("a stalling Get must open: %v", err)
	}
	defer rc.Close()
	got := make([]byte, 4)
	if _, err := io.ReadFull(rc, got); err != nil || string(got) != "0123" {
		t.Fatalf("first bytes = %q, %v", got, err)
	}
	cancel()
	// It returns only because the context ended.
	if n, err := rc.Read(make([]byte, 10)); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("stalled Read = %d, %v; want context.Canceled", n, err)
	}
}
