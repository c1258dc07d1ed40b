package idle_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/idle"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return idle.New(mem.New(), time.Minute) })
}

func stored(t *testing.T, data string) *mem.Store {
	t.Helper()
	st := mem.New()
	if err := st.Put(t.Context(), "k", strings.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	return st
}

// A body that goes silent ends with ErrIdle, which the retry layer may retry, and
// not with a hang: the caller's context has no deadline here.
func TestStalledBodyEndsWithIdleError(t *testing.T) {
	fst := faulty.New(stored(t, "0123456789"), faulty.Rule{Op: faulty.Get, Fault: faulty.Stall, Offset: 0})
	rc, err := idle.New(fst, 10*time.Millisecond).Get(context.Background(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if len(got) != 0 || !errors.Is(err, idle.ErrIdle) {
		t.Fatalf("ReadAll = %q, %v; want nothing and ErrIdle", got, err)
	}
	if !retry.Retryable(err) {
		t.Errorf("ErrIdle is not retryable: %v", err)
	}
}

// Composed as open.Open does, a stall mid-body is resumed where it stopped.
func TestStalledBodyIsResumed(t *testing.T) {
	fst := faulty.New(stored(t, "0123456789"), faulty.Rule{Op: faulty.Get, Fault: faulty.Stall, Offset: 4, Count: 1})
	// Generous attempts: on a loaded machine the timer may also cut off a slow read
	// that was making progress; that is resumed like the stall.
	st := retry.New(idle.New(fst, 10*time.Millisecond), retry.Config{MaxAttempts: 20, Sleep: func(context.Context, time.Duration) error { return nil }})
	rc, err := st.Get(context.Background(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); string(got) != "0123456789" || err != nil {
		t.Fatalf("ReadAll = %q, %v; want the whole object", got, err)
	}
	if fst.Faults(faulty.Get) != 1 || fst.Calls(faulty.Get) < 2 {
		t.Errorf("%d Gets, %d stalled; want the stalled one resumed", fst.Calls(faulty.Get), fst.Faults(faulty.Get))
	}
}

// The caller's own cancellation is not mistaken for an idle body.
func TestCancelledReadIsNotIdle(t *testing.T) {
	fst := faulty.New(stored(t, "0123456789"), faulty.Rule{Op: faulty.Get, Fault: faulty.Stall, Offset: 0})
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := idle.New(fst, time.Hour).Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cancel()
	if _, err := rc.Read(make([]byte, 4)); !errors.Is(err, context.Canceled) || errors.Is(err, idle.ErrIdle) {
		t.Errorf("Read after cancel = %v, want context.Canceled", err)
	}
}
