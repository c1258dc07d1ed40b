package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

func putLock(t *testing.T, st storage.Store, o LockOwner) {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), backupLockKey, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
}

func lockHolder(t *testing.T, st storage.Store) LockOwner {
	t.Helper()
	o, _, err := readLock(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	pid := cmd.Process.Pid
	if processAlive(pid) {
		t.Skipf("pid %d was reused at once", pid)
	}
	return pid
}

func TestBackupLockHeldByThisProcess(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	l, err := AcquireBackupLock(ctx, st, "backup-push")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if o := lockHolder(t, st); o.PID != os.Getpid() || o.Host != host || o.What != "backup-push" || o != l.Owner {
		t.Errorf("lock holder = %+v, Owner = %+v; want this process", o, l.Owner)
	}

	_, err = AcquireBackupLock(ctx, st, "backup-push")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second AcquireBackupLock = %v, want ErrLocked", err)
	}
	for _, s := range []string{host, "backup-push", backupLockKey} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("ErrLocked message %q does not mention %q", err, s)
		}
	}
	if o := lockHolder(t, st); o != l.Owner {
		t.Errorf("a refused acquire changed the lock to %+v", o)
	}

	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, backupLockKey); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("lock object after Release: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	l2, err := AcquireBackupLock(ctx, st, "restore")
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if o := lockHolder(t, st); o.What != "restore" {
		t.Errorf("lock holder = %+v", o)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBackupLockHolders(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		holder   func(t *testing.T) LockOwner
		takeOver bool
		mention  []string
	}{
		{
			name: "dead process on this host",
			holder: func(t *testing.T) LockOwner {
				return LockOwner{Host: host, PID: deadPID(t), Started: started, What: "backup-push"}
			},
			takeOver: true,
		},
		{
			name: "no pid on this host",
			holder: func(t *testing.T) LockOwner {
				return LockOwner{Host: host, PID: 0, Started: started, What: "backup-push"}
			},
			takeOver: true,
		},
		{
			name: "live process on this host",
			holder: func(t *testing.T) LockOwner {
				return LockOwner{Host: host, PID: os.Getppid(), Started: started, What: "backup-push"}
			},
			mention: []string{host, "2026-01-02T03:04:05Z"},
		},
		{
			name: "another host",
			holder: func(t *testing.T) LockOwner {
				return LockOwner{Host: "db2.example.org", PID: deadPID(t), Started: started, What: "backup-push"}
			},
			mention: []string{"db2.example.org", "backup-push", "2026-01-02T03:04:05Z"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := mem.New()
			old := tc.holder(t)
			putLock(t, st, old)
			l, err := AcquireBackupLock(ctx, st, "backup-push")
			if tc.takeOver {
				if err != nil {
					t.Fatalf("AcquireBackupLock = %v, want the stale lock taken over", err)
				}
				if o := lockHolder(t, st); o.PID != os.Getpid() || o.Host != host {
					t.Errorf("lock holder after take-over = %+v", o)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("AcquireBackupLock = %v, %v; want ErrLocked", l, err)
			}
			for _, s := range tc.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not mention %q", err, s)
				}
			}
			if o := lockHolder(t, st); !o.Started.Equal(old.Started) || o.Host != old.Host || o.PID != old.PID {
				t.Errorf("refused acquire changed the lock: %+v, was %+v", o, old)
			}
		})
	}
}

func TestBackupLockErrors(t *testing.T) {
	ctx := context.Background()

	st := mem.New()
	if err := st.Put(ctx, backupLockKey, strings.NewReader("{broken"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	_, err := AcquireBackupLock(ctx, st, "backup-push")
	if err == nil || errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged lock: %v, want a damaged-lock error", err)
	}

	fst := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: "locks/"})
	_, err = AcquireBackupLock(ctx, fst, "backup-push")
	if !errors.Is(err, faulty.ErrInjected) || errors.Is(err, ErrLocked) {
		t.Errorf("failing store: %v, want the storage error", err)
	}

	// A failing Delete on Release is reported.
	fst = faulty.New(mem.New(), faulty.Rule{Op: faulty.Delete})
	l, err := AcquireBackupLock(ctx, fst, "backup-push")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("Release with a failing store = %v", err)
	}
}

func TestProcessAlive(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  func(t *testing.T) int
		want bool
	}{
		{"self", func(*testing.T) int { return os.Getpid() }, true},
		{"pid 1", func(*testing.T) int { return 1 }, true}, // EPERM counts as alive
		{"zero", func(*testing.T) int { return 0 }, false},
		{"negative", func(*testing.T) int { return -1 }, false},
		{"reaped child", deadPID, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := processAlive(tc.pid(t)); got != tc.want {
				t.Errorf("processAlive = %v, want %v", got, tc.want)
			}
		})
	}
}

// interleavingStore runs hook after the first Get of the lock object has read the
// stale lock but before its caller sees it: another process acting in between.
type interleavingStore struct {
	storage.Store
	once sync.Once
	hook func()
}

func (s *interleavingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key, off, length)
	if err != nil || key != backupLockKey {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	s.once.Do(s.hook)
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestBackupLockTakeOverRace(t *testing.T) {
	ctx := context.Background()
	host, _ := os.Hostname()
	inner := mem.New()
	putLock(t, inner, LockOwner{Host: host, PID: deadPID(t), What: "killed backup"})
	var first *Lock
	var firstErr error
	st := &interleavingStore{Store: inner, hook: func() {
		// Process A takes the stale lock over while B is deciding.
		first, firstErr = AcquireBackupLock(ctx, inner, "backup A")
	}}
	second, err := AcquireBackupLock(ctx, st, "backup B")
	if firstErr != nil {
		t.Fatalf("A could not take the stale lock over: %v", firstErr)
	}
	if err == nil {
		t.Errorf("both A (%+v) and B (%+v) hold the backup lock; the repository holds %+v", first.Owner, second.Owner, lockHolder(t, inner))
	} else if !errors.Is(err, ErrLocked) {
		t.Errorf("B: %v, want ErrLocked", err)
	}
}

// A lock Put whose acknowledgement is lost is retried by the store wrapper and then
// finds the lock this very call wrote: that is success, not "another backup is running".
func TestBackupLockPutWithLostAcknowledgementIsOurs(t *testing.T) {
	ctx := context.Background()
	fst := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: backupLockKey, Fault: faulty.FailAfter, Count: 1})
	st := retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	l, err := AcquireBackupLock(ctx, st, "backup-push")
	if err != nil {
		t.Fatalf("AcquireBackupLock after a lost acknowledgement = %v, want the lock", err)
	}
	if fst.Faults(faulty.Put) != 1 {
		t.Fatalf("the lost acknowledgement was not injected (%d faults)", fst.Faults(faulty.Put))
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, backupLockKey); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("lock left behind after Release: %v", err)
	}
}
