package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
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
	if _, err := procStart(pid); !errors.Is(err, iofs.ErrNotExist) {
		t.Skipf("pid %d was reused at once", pid)
	}
	return pid
}

func TestBackupLockHeldByThisProcess(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	l, err := acquireLocal(ctx, st, "backup-push")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if o := lockHolder(t, st); o.PID != os.Getpid() || o.Host != host || o.What != "backup-push" || o != l.Owner {
		t.Errorf("lock holder = %+v, Owner = %+v; want this process", o, l.Owner)
	}

	_, err = acquireLocal(ctx, st, "backup-push")
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
	l2, err := acquireLocal(ctx, st, "restore")
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

// fakeHost is a machine with the given live processes (pid -> start time).
func fakeHost(now time.Time, live map[int]uint64) Host {
	return Host{
		Name: "db1", BootID: "boot-1", PIDNamespace: "pid:[4026531836]", PID: 4242,
		ProcessStart: func(pid int) (uint64, error) {
			if st, ok := live[pid]; ok {
				return st, nil
			}
			return 0, fmt.Errorf("pid %d: %w", pid, iofs.ErrNotExist)
		},
		Now: func() time.Time { return now },
	}
}

func TestBackupLockHolders(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recent := now.Add(-time.Hour)
	here := LockOwner{Host: "db1", BootID: "boot-1", PIDNamespace: "pid:[4026531836]", PID: 77, ProcStart: 1000,
		Started: recent, What: "backup-push", Token: "t"}
	with := func(f func(o *LockOwner)) LockOwner { o := here; f(&o); return o }
	live := map[int]uint64{77: 1000, 78: 5000}
	for _, tc := range []struct {
		name     string
		holder   LockOwner
		takeOver bool
	}{
		{"live process here", here, false},
		{"dead process here", with(func(o *LockOwner) { o.PID = 99 }), true},
		{"pid reused by another process", with(func(o *LockOwner) { o.PID, o.ProcStart = 78, 1000 }), true},
		{"no pid here", with(func(o *LockOwner) { o.PID = 0 }), true},
		{"another PID namespace, same host name", with(func(o *LockOwner) { o.PIDNamespace, o.PID = "pid:[4026532999]", 99 }), false},
		{"another boot (a cloned VM, or before a reboot)", with(func(o *LockOwner) { o.BootID, o.PID = "boot-0", 99 }), false},
		{"another host", with(func(o *LockOwner) { o.Host, o.PID = "db2.example.org", 99 }), false},
		{"an older pgb's lock, no boot id", with(func(o *LockOwner) { o.BootID, o.PIDNamespace, o.PID = "", "", 99 }), false},
		{"another host, older than the limit", with(func(o *LockOwner) { o.Host, o.Started = "db2.example.org", now.Add(-25*time.Hour) }), true},
		{"live process here, older than the limit", with(func(o *LockOwner) { o.Started = now.Add(-25 * time.Hour) }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := mem.New()
			putLock(t, st, tc.holder)
			var logged bytes.Buffer
			opts := LockOptions{Host: fakeHost(now, live), Log: slog.New(slog.NewTextHandler(&logged, nil))}
			l, err := New(st, Options{}).AcquireBackupLock(ctx, "backup-push", opts)
			if tc.takeOver {
				if err != nil {
					t.Fatalf("AcquireBackupLock = %v, want the stale lock taken over", err)
				}
				if o := lockHolder(t, st); o.PID != 4242 || o.Host != "db1" || o.Token == tc.holder.Token {
					t.Errorf("lock holder after take-over = %+v", o)
				}
				if !strings.Contains(logged.String(), "took over a stale backup lock") || !strings.Contains(logged.String(), "holder_pid="+strconv.Itoa(tc.holder.PID)) {
					t.Errorf("takeover not logged with the old holder: %q", logged.String())
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("AcquireBackupLock = %v, %v; want ErrLocked", l, err)
			}
			for _, s := range []string{tc.holder.Host, "2026-01-02T02:04:05Z", backupLockKey} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not mention %q", err, s)
				}
			}
			if o := lockHolder(t, st); o != tc.holder {
				t.Errorf("refused acquire changed the lock: %+v, was %+v", o, tc.holder)
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
	_, err := acquireLocal(ctx, st, "backup-push")
	if err == nil || errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged lock: %v, want a damaged-lock error", err)
	}

	fst := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: "locks/"})
	_, err = acquireLocal(ctx, fst, "backup-push")
	if !errors.Is(err, faulty.ErrInjected) || errors.Is(err, ErrLocked) {
		t.Errorf("failing store: %v, want the storage error", err)
	}

	// A failing Delete on Release is reported.
	fst = faulty.New(mem.New(), faulty.Rule{Op: faulty.Delete})
	l, err := acquireLocal(ctx, fst, "backup-push")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("Release with a failing store = %v", err)
	}
}

func TestProcStart(t *testing.T) {
	self, err := procStart(os.Getpid())
	if err != nil || self == 0 {
		t.Skipf("no /proc here: %v", err)
	}
	if again, _ := procStart(os.Getpid()); again != self {
		t.Errorf("start time of this process changed: %d, %d", self, again)
	}
	if _, err := procStart(deadPID(t)); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("reaped child: %v, want ErrNotExist", err)
	}
	if _, err := procStart(0); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("pid 0: %v, want ErrNotExist", err)
	}
	// The command name may hold spaces and parentheses.
	line := "123 (a) b (c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 12345 67 18446744073709551615"
	if got, err := parseProcStart(line); err != nil || got != 987654 {
		t.Errorf("parseProcStart = %d, %v; want 987654", got, err)
	}
	if _, err := parseProcStart("123 (x) S 1"); err == nil {
		t.Error("short stat line accepted")
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
		first, firstErr = acquireLocal(ctx, inner, "backup A")
	}}
	second, err := acquireLocal(ctx, st, "backup B")
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
	l, err := acquireLocal(ctx, st, "backup-push")
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
