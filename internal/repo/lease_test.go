package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func putLease(t *testing.T, st storage.Store, token string, until time.Time) {
	t.Helper()
	b, _ := json.Marshal(leaseRenewal{Until: until})
	if err := st.Put(context.Background(), leaseKey(token), bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
}

// A lock held on another host, whose holder cannot be proven gone, is taken over once
// its lease has lapsed (beyond the clock skew allowed): not only after lock-max-age.
// A renewed lease, or one that lapsed within the skew, keeps it.
func TestALockWhoseLeaseLapsedIsTakenOverFromAnyHost(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	for _, c := range []struct {
		name      string
		leaseEnd  time.Time
		renewedTo time.Time // zero: never renewed
		takenOver bool
	}{
		{"lapsed", now.Add(-2 * lockClockSkew), time.Time{}, true},
		{"renewed", now.Add(-2 * lockClockSkew), now.Add(3 * time.Minute), false},
		{"renewal lapsed too", now.Add(-10 * lockClockSkew), now.Add(-2 * lockClockSkew), true},
		{"within the clock skew", now.Add(-lockClockSkew / 2), time.Time{}, false},
		{"running", now.Add(4 * time.Minute), time.Time{}, false},
	} {
		st := mem.New()
		holder := LockOwner{Host: "db2", PID: 7, Started: now.Add(-time.Hour), What: "backup-push", Token: "theirs", LeaseUntil: c.leaseEnd}
		putLock(t, st, holder)
		if !c.renewedTo.IsZero() {
			putLease(t, st, holder.Token, c.renewedTo)
		}
		l, err := acquireLocal(ctx, st, "backup-push")
		switch {
		case c.takenOver && err != nil:
			t.Errorf("%s: not taken over: %v", c.name, err)
		case !c.takenOver && !errors.Is(err, ErrLocked):
			t.Errorf("%s: AcquireBackupLock = %v, want ErrLocked", c.name, err)
		}
		if l != nil {
			if _, err := st.Stat(ctx, leaseKey(holder.Token)); !errors.Is(err, storage.ErrNotExist) {
				t.Errorf("%s: the old holder's lease object is left: %v", c.name, err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// While a lock is held its lease is renewed, and Release removes the renewal.
func TestAHeldLockRenewsItsLease(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	renewed := make(chan struct{}, 1)
	l, err := r.AcquireBackupLock(ctx, "backup-push", LockOptions{Lease: 10 * time.Millisecond, renewed: func() {
		select {
		case renewed <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Owner.LeaseUntil.IsZero() {
		t.Fatal("the lock has no lease")
	}
	<-renewed // a lock that is never renewed ends in the test's timeout
	b, err := readSmall(ctx, st, leaseKey(l.Owner.Token))
	var lr leaseRenewal
	if err != nil || json.Unmarshal(b, &lr) != nil || !lr.Until.After(l.Owner.LeaseUntil) {
		t.Fatalf("lease renewal %s, %v: want an end after %s", b, err, l.Owner.LeaseUntil)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, leaseKey(l.Owner.Token)); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Release left the lease renewal: %v", err)
	}
	if _, err := st.Stat(ctx, backupLockKey); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Release left the lock: %v", err)
	}
}

// --lock-wait: a command waits for a held lock and takes it once it is released; one
// that waited in vain says how long it waited.
func TestLockWaitTakesTheLockOnceReleased(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	held, err := r.AcquireBackupLock(ctx, "backup-push", LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AcquireBackupLock(ctx, "delete", LockOptions{Wait: time.Millisecond, poll: time.Millisecond}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "waited") {
		t.Fatalf("a wait in vain = %v, want ErrLocked saying it waited", err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := r.AcquireBackupLock(ctx, "delete", LockOptions{Wait: time.Hour, poll: time.Millisecond})
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting for the lock: %v", err)
	}
}
