package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func realBootID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip(err)
	}
	return strings.TrimSpace(string(b))
}

// A lock whose pid is not a process here but which was written in another PID
// namespace (a container with the same host name) may belong to a live backup.
func TestBackupLockFromAnotherPIDNamespaceIsNotTakenOver(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	host, _ := os.Hostname()
	putLock(t, st, LockOwner{Host: host, PID: deadPID(t), Started: time.Now().UTC(), What: "backup-push in a container",
		BootID: realBootID(t), PIDNamespace: "pid:[1]", Token: "other"})
	_, err := acquireLocal(ctx, st, "backup-push")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("AcquireBackupLock = %v, want ErrLocked", err)
	}
	if o := lockHolder(t, st); o.Token != "other" {
		t.Errorf("lock changed to %+v", o)
	}
}

// Release deletes only its own lock, never one that was taken over meanwhile.
func TestBackupLockReleaseLeavesALockItNoLongerHolds(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	l, err := acquireLocal(ctx, st, "backup-push")
	if err != nil {
		t.Fatal(err)
	}
	other := LockOwner{Host: "db2", PID: 7, Started: time.Now().UTC(), What: "backup-push", Token: "theirs"}
	putLock(t, st, other) // taken over (by age, or by hand) while we ran
	if err := l.Release(ctx); !errors.Is(err, ErrLockLost) {
		t.Errorf("Release of a lock taken over = %v, want ErrLockLost", err)
	}
	if _, err := st.Stat(ctx, backupLockKey); err != nil {
		t.Fatalf("Release removed a lock it no longer held: %v", err)
	}
	if o := lockHolder(t, st); o.Token != "theirs" {
		t.Errorf("lock changed to %+v", o)
	}
}

// A takeover leaves nothing behind but the new lock.
func TestBackupLockTakeOverLeavesNoMarker(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	host, _ := os.Hostname()
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Skip(err)
	}
	putLock(t, st, LockOwner{Host: host, PID: deadPID(t), Started: time.Now().UTC(), What: "killed backup",
		BootID: realBootID(t), PIDNamespace: ns, Token: "dead"})
	l, err := acquireLocal(ctx, st, "backup-push")
	if err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	var keys []string
	if err := st.List(ctx, "locks/", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != backupLockKey {
		t.Errorf("objects under locks/ after a takeover: %q, want only %s", keys, backupLockKey)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func acquireLocal(ctx context.Context, st storage.Store, what string) (*Lock, error) {
	return New(st, Options{}).AcquireBackupLock(ctx, what, LockOptions{})
}

// A lock Put that committed but reported a failure every time leaves no lock behind:
// the failed acquire removes what it wrote, and only that.
func TestFailedLockPutLeavesNoLockBehind(t *testing.T) {
	ctx := context.Background()
	fst := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: backupLockKey, Fault: faulty.FailAfter})
	_, err := acquireLocal(ctx, fst, "backup-push")
	if !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("AcquireBackupLock = %v, want the injected failure", err)
	}
	if _, err := fst.Inner().Stat(ctx, backupLockKey); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("a failed acquire left its lock behind: %v", err)
	}
}

// A backup-push killed in the middle of taking over a stale lock leaves its takeover
// marker behind. The next run finds the marker's process gone too and takes the lock
// over all the same, rather than report "another backup is running" until the marker
// is an hour old (found by the random-kill test).
func TestAMarkerLeftByAKilledTakerDoesNotBlockTheLock(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	host, _ := os.Hostname()
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Skip(err)
	}
	dead := LockOwner{Host: host, PID: deadPID(t), Started: time.Now().UTC(), What: "killed backup",
		BootID: realBootID(t), PIDNamespace: ns, Token: "dead"}
	putLock(t, st, dead)
	taker := dead
	taker.PID, taker.Token, taker.What = deadPID(t), "killed-taker", "backup-push killed while taking over"
	b, err := json.Marshal(taker)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, markerKey(dead), bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
	l, err := acquireLocal(ctx, st, "backup-push")
	if err != nil {
		t.Fatalf("a lock whose holder and whose taker were both killed is not taken over: %v", err)
	}
	defer func() { _ = l.Release(ctx) }()
	if _, err := st.Stat(ctx, markerKey(dead)); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("the dead taker's marker is left: %v", err)
	}

	// A marker whose taker may be alive (another host) still holds the lock back.
	st2 := mem.New()
	putLock(t, st2, dead)
	taker.Host = "db2"
	b, _ = json.Marshal(taker)
	if err := st2.Put(ctx, markerKey(dead), bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
	if _, err := acquireLocal(ctx, st2, "backup-push"); !errors.Is(err, ErrLocked) {
		t.Errorf("a takeover in progress on another host was ignored: %v", err)
	}
}
