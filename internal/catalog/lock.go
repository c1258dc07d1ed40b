package catalog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

const backupLockKey = "locks/backup.json"

// ErrLocked means another backup holds the repository's backup lock.
var ErrLocked = errors.New("another backup is running")

// Lock is a held repository lock.
type Lock struct {
	st    storage.Store
	key   string
	Owner LockOwner
}

// LockOwner says who holds a lock.
type LockOwner struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	What    string    `json:"what"`
	// Token is random, new for every acquisition: a lock object holding our exact
	// body is ours, even when the Put that wrote it reported a failure.
	Token string `json:"token,omitempty"`
}

// AcquireBackupLock takes the repository's backup lock. A lock left by a dead process
// on this host (a killed backup) is taken over; any other holder is ErrLocked.
func AcquireBackupLock(ctx context.Context, st storage.Store, what string) (*Lock, error) {
	host, _ := os.Hostname()
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	me := LockOwner{Host: host, PID: os.Getpid(), Started: time.Now().UTC(), What: what, Token: token}
	b, _ := json.Marshal(me)
	for attempt := 0; attempt < 2; attempt++ {
		err := st.Put(ctx, backupLockKey, bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
		if err == nil {
			return &Lock{st: st, key: backupLockKey, Owner: me}, nil
		}
		if !errors.Is(err, storage.ErrExist) {
			return nil, fmt.Errorf("take backup lock: %w", err)
		}
		holder, raw, rerr := readLock(ctx, st)
		if rerr != nil {
			return nil, rerr
		}
		if bytes.Equal(raw, b) {
			// Our own Put committed the lock but its acknowledgement was lost, and a
			// retry found it: the token makes the body unique to this acquisition.
			return &Lock{st: st, key: backupLockKey, Owner: me}, nil
		}
		locked := fmt.Errorf("%w in repository %s: %s since %s (pid %d on %s); if that process is gone, delete %s from the repository",
			ErrLocked, st, holder.What, holder.Started.Format(time.RFC3339), holder.PID, holder.Host, backupLockKey)
		if holder.Host != host || processAlive(holder.PID) || attempt > 0 {
			return nil, locked
		}
		// The holder died without releasing the lock. Several processes may find the
		// same stale lock: only the one that claims it (put-if-absent of a marker named
		// after that very lock) may remove it, so none can remove a fresh lock another
		// took meanwhile. Markers are tiny and stay, one per taken-over lock.
		marker := fmt.Sprintf("%s.takeover-%d-%d", backupLockKey, holder.PID, holder.Started.UnixNano())
		if err := st.Put(ctx, marker, bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))}); err != nil {
			if errors.Is(err, storage.ErrExist) {
				return nil, locked // another process is taking it over
			}
			return nil, fmt.Errorf("take over stale backup lock: %w", err)
		}
		if err := st.Delete(ctx, backupLockKey); err != nil && !errors.Is(err, storage.ErrNotExist) {
			return nil, fmt.Errorf("remove stale backup lock: %w", err)
		}
	}
	return nil, ErrLocked
}

// newToken returns 128 random bits in hex.
func newToken() (string, error) {
	var t [16]byte
	if _, err := rand.Read(t[:]); err != nil {
		return "", fmt.Errorf("backup lock token: %w", err)
	}
	return hex.EncodeToString(t[:]), nil
}

// readLock reads the lock object: its owner and its exact bytes.
func readLock(ctx context.Context, st storage.Store) (LockOwner, []byte, error) {
	var o LockOwner
	rc, err := st.Get(ctx, backupLockKey, 0, -1)
	if err != nil {
		return o, nil, fmt.Errorf("read backup lock: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<16))
	if err != nil {
		return o, nil, fmt.Errorf("read backup lock: %w", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, nil, fmt.Errorf("backup lock %s is damaged (%w): delete it if no backup is running", backupLockKey, err)
	}
	return o, b, nil
}

// processAlive reports whether a process with that pid exists on this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Release gives the lock up.
func (l *Lock) Release(ctx context.Context) error {
	if err := l.st.Delete(ctx, l.key); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("release backup lock: %w", err)
	}
	return nil
}
