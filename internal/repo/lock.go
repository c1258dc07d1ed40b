package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

const backupLockKey = "locks/backup.json"

// DefaultLockMaxAge is how old a backup lock must be before it is taken over from a
// holder that cannot be proven gone (another host, another boot, another PID
// namespace). A day: a daily cron backup then misses at most one run after a crash in
// a container, each refused run says why, and a backup that runs longer than a day
// needs a larger --lock-max-age.
const DefaultLockMaxAge = 24 * time.Hour

// DefaultLockLease is how long a held lock stays valid without being renewed. The
// holder renews it every DefaultLockLease/5 while it runs (lockRenewEvery), so only a
// holder that is gone, hung or cut off from the repository lets it lapse; a lock whose
// lease lapsed more than lockClockSkew ago is taken over from any host.
const DefaultLockLease = 5 * time.Minute

// lockClockSkew is how far apart the clocks of two hosts sharing a repository may be:
// a lease counts as lapsed only that long after its end.
const lockClockSkew = time.Minute

// markerStaleAfter is the age after which a takeover marker is taken for the leftover
// of a process killed in the middle of a takeover (which lasts a few requests).
const markerStaleAfter = time.Hour

// ErrLocked means another backup holds the repository's backup lock.
var ErrLocked = errors.New("another backup is running")

// ErrLockLost means the lock was no longer ours when it was released: it was taken
// over (or removed by hand) while we held it. It is left alone.
var ErrLockLost = errors.New("the backup lock is no longer ours")

// Lock is a held repository lock.
type Lock struct {
	st    storage.Store
	key   string
	body  []byte
	Owner LockOwner
	stop  func() // stops the renewal of the lease
}

// LockOwner says who holds a lock. The fields after What let another process on the
// same machine prove that the holder is gone; they are empty in locks written by
// older versions, which are then taken over only by age.
type LockOwner struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	What    string    `json:"what"`
	// Token is random, new for every acquisition: a lock object holding our exact
	// body is ours, even when the Put that wrote it reported a failure.
	Token string `json:"token,omitempty"`
	// BootID is the holder's /proc/sys/kernel/random/boot_id, PIDNamespace its
	// /proc/self/ns/pid link and ProcStart its start time (/proc/PID/stat field 22):
	// the same pid means the same process only on the same boot, in the same PID
	// namespace, with the same start time.
	BootID       string `json:"boot_id,omitempty"`
	PIDNamespace string `json:"pid_ns,omitempty"`
	ProcStart    uint64 `json:"proc_start,omitempty"`
	// LeaseUntil is when the lock lapses unless renewed: the holder renews it in
	// leaseKey(Token), a small object of its own, so that the lock object itself is
	// never rewritten. Zero in locks written before leases: they lapse only by MaxAge.
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// leaseRenewal is what a holder writes to renew its lease.
type leaseRenewal struct {
	Until time.Time `json:"until"`
}

// leaseKey names the renewal object of the lock holding token.
func leaseKey(token string) string { return backupLockKey + ".lease-" + token }

// LockOptions tune AcquireBackupLock.
type LockOptions struct {
	// Host describes this process and its machine; the zero value means LocalHost().
	Host Host
	// MaxAge: a lock older than this is taken over even when its holder cannot be
	// proven gone. Zero means DefaultLockMaxAge.
	MaxAge time.Duration
	// Log receives the warning that a lock was taken over; nil discards it.
	Log *slog.Logger
	// Lease is how long the lock stays valid unless renewed; zero means
	// DefaultLockLease. It is renewed every Lease/5 until Release.
	Lease time.Duration
	// Wait is how long to wait for a lock someone else holds before giving up with
	// ErrLocked (--lock-wait); zero gives up at once.
	Wait    time.Duration
	poll    time.Duration // how often a Wait looks again; zero means lockPoll (tests lower it)
	renewed func()        // called after each renewal of the lease (tests)
}

// AcquireBackupLock takes the repository's backup lock.
//
// A lock held by someone else is taken over only when its holder is provably gone —
// same host name, same boot and same PID namespace as this process, and no process
// with its pid and start time — or when it is older than opts.MaxAge; a takeover is
// logged as a warning naming the old holder. Any other holder is ErrLocked.
//
// The lock is plain JSON, not sealed: whoever finds a repository locked must be able
// to read who holds it.
func (r *Repo) AcquireBackupLock(ctx context.Context, what string, opts LockOptions) (*Lock, error) {
	if opts.Log == nil {
		opts.Log = r.log
	}
	if opts.Wait <= 0 {
		return acquireBackupLock(ctx, r.st, what, opts)
	}
	deadline := time.Now().Add(opts.Wait)
	for logged := false; ; logged = true {
		l, err := acquireBackupLock(ctx, r.st, what, opts)
		left := time.Until(deadline)
		if !errors.Is(err, ErrLocked) || left <= 0 {
			if err != nil && errors.Is(err, ErrLocked) {
				err = fmt.Errorf("%w (waited %s, --lock-wait)", err, opts.Wait)
			}
			return l, err
		}
		if !logged {
			opts.Log.Info("waiting for the backup lock", "wait", opts.Wait, "held", err.Error())
		}
		poll := opts.poll
		if poll <= 0 {
			poll = lockPoll
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// lockPoll is how often a --lock-wait looks at the lock again.
const lockPoll = 5 * time.Second

func acquireBackupLock(ctx context.Context, st storage.Store, what string, opts LockOptions) (*Lock, error) {
	h := opts.Host
	if h.Now == nil {
		h = LocalHost()
	}
	maxAge := opts.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultLockMaxAge
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	lease := opts.Lease
	if lease <= 0 {
		lease = DefaultLockLease
	}
	started := h.Now().UTC()
	me := LockOwner{Host: h.Name, PID: h.PID, Started: started, What: what, Token: token,
		BootID: h.BootID, PIDNamespace: h.PIDNamespace, LeaseUntil: started.Add(lease)}
	if h.ProcessStart != nil {
		me.ProcStart, _ = h.ProcessStart(h.PID) // zero when unknown: then only the pid counts
	}
	b, _ := json.Marshal(me)
	mine := &Lock{st: st, key: backupLockKey, body: b, Owner: me, stop: func() {}}
	for attempt := 0; attempt < 2; attempt++ {
		err := st.Put(ctx, backupLockKey, bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
		if err == nil {
			mine.renew(ctx, h, lease, log, opts.renewed)
			return mine, nil
		}
		if !errors.Is(err, storage.ErrExist) {
			// The Put may have committed before it failed (a lost acknowledgement on
			// the last attempt): remove the lock if it is ours, best effort.
			_ = mine.Release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("take backup lock: %w", err)
		}
		holder, raw, rerr := readLock(ctx, st)
		if errors.Is(rerr, storage.ErrNotExist) && attempt == 0 {
			continue // released between our Put and our read
		}
		if rerr != nil {
			return nil, rerr
		}
		if bytes.Equal(raw, b) {
			// Our own Put committed the lock but its acknowledgement was lost, and a
			// retry found it: the token makes the body unique to this acquisition.
			mine.renew(ctx, h, lease, log, opts.renewed)
			return mine, nil
		}
		locked := fmt.Errorf("%w in repository %s: %s since %s (pid %d on %s); if that process is gone, delete %s from the repository",
			ErrLocked, st, holder.What, holder.Started.Format(time.RFC3339), holder.PID, holder.Host, backupLockKey)
		why := h.gone(holder, maxAge)
		if why == "" {
			why = leaseLapsed(ctx, st, holder, h.Now())
		}
		if why == "" || attempt > 0 {
			return nil, locked
		}
		taken, err := takeOver(ctx, st, holder, raw, b, h, maxAge)
		if err != nil {
			return nil, err
		}
		if !taken {
			return nil, locked // another process took it over first
		}
		log.Warn("took over a stale backup lock", "reason", why,
			"holder_what", holder.What, "holder_pid", holder.PID, "holder_host", holder.Host,
			"holder_started", holder.Started.Format(time.RFC3339), "lock", backupLockKey)
	}
	return nil, ErrLocked
}

// takeOver removes the stale lock whose exact bytes are raw, unless another process
// got there first; it reports whether the lock was removed (or was gone).
//
// Several processes may find the same stale lock. Only the one that claims it, by a
// put-if-absent of a marker named after that lock, may remove it; and it removes it
// only if the lock object still holds those bytes, so that a process that read the
// stale lock long ago and claims the marker after an earlier taker released it cannot
// remove the fresh lock that taker put meanwhile. The marker is removed at the end; a
// marker older than markerStaleAfter is the leftover of a process killed mid-takeover
// and is removed before claiming.
func takeOver(ctx context.Context, st storage.Store, holder LockOwner, raw, b []byte, h Host, maxAge time.Duration) (bool, error) {
	marker := markerKey(holder)
	claimed, err := claimMarker(ctx, st, marker, b, h, maxAge)
	if err != nil || !claimed {
		return false, err
	}
	defer func() {
		_ = st.Delete(context.WithoutCancel(ctx), marker) // best effort: a leftover goes stale
	}()
	_, cur, err := readLock(ctx, st)
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return true, nil
	case err != nil:
		return false, err
	case !bytes.Equal(cur, raw):
		return false, nil // taken over by another process, which holds it now
	}
	if err := st.Delete(ctx, backupLockKey); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return false, fmt.Errorf("remove stale backup lock: %w", err)
	}
	if holder.Token != "" {
		_ = st.Delete(ctx, leaseKey(holder.Token)) // best effort: garbage once the lock is gone
	}
	return true, nil
}

// markerKey names the takeover marker of a lock.
func markerKey(o LockOwner) string {
	if o.Token != "" {
		return backupLockKey + ".takeover-" + o.Token
	}
	return fmt.Sprintf("%s.takeover-%d-%d", backupLockKey, o.PID, o.Started.UnixNano())
}

// claimMarker puts the marker if absent. A marker that exists is another taker's,
// unless it holds our own body (a lost acknowledgement), or it is the leftover of a
// taker that was killed: its process is proven gone as a lock holder's would be (same
// host, boot and PID namespace, no process with its pid and start time), or the
// marker is older than markerStaleAfter. A leftover is removed and claimed once more.
func claimMarker(ctx context.Context, st storage.Store, marker string, b []byte, h Host, maxAge time.Duration) (bool, error) {
	for attempt := 0; ; attempt++ {
		err := st.Put(ctx, marker, bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, storage.ErrExist) {
			return false, fmt.Errorf("take over stale backup lock: %w", err)
		}
		got, rerr := readSmall(ctx, st, marker)
		if rerr == nil && bytes.Equal(got, b) {
			return true, nil
		}
		if attempt > 0 {
			return false, nil
		}
		info, err := st.Stat(ctx, marker)
		if errors.Is(err, storage.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("take over stale backup lock: %w", err)
		}
		var taker LockOwner
		takerGone := rerr == nil && json.Unmarshal(got, &taker) == nil && h.gone(taker, maxAge) != ""
		if !takerGone && h.Now().Sub(info.ModTime) < markerStaleAfter {
			return false, nil
		}
		if err := st.Delete(ctx, marker); err != nil && !errors.Is(err, storage.ErrNotExist) {
			return false, fmt.Errorf("remove stale takeover marker: %w", err)
		}
	}
}

// newToken returns 128 random bits in hex.
func newToken() (string, error) {
	var t [16]byte
	if _, err := rand.Read(t[:]); err != nil {
		return "", fmt.Errorf("backup lock token: %w", err)
	}
	return hex.EncodeToString(t[:]), nil
}

// maxLockSize bounds what is read of a lock object: repository data is untrusted.
const maxLockSize = 1 << 16

// readSmall reads an object of at most maxLockSize bytes.
func readSmall(ctx context.Context, st storage.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }() // read-only: the caller parses what was read
	return readLimited(rc, maxLockSize, key)
}

// readLock reads the lock object: its owner and its exact bytes.
func readLock(ctx context.Context, st storage.Store) (LockOwner, []byte, error) {
	var o LockOwner
	b, err := readSmall(ctx, st, backupLockKey)
	if err != nil {
		return o, nil, fmt.Errorf("read backup lock: %w", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, nil, fmt.Errorf("backup lock %s is damaged (%w): delete it if no backup is running", backupLockKey, err)
	}
	return o, b, nil
}

// Release gives the lock up. It deletes the lock object only while it still holds this
// lock's exact body; a lock that was taken over meanwhile is left to its new holder and
// Release says so with ErrLockLost. (The store has no conditional delete: a takeover
// in the instant between the read and the delete is not detected.)
func (l *Lock) Release(ctx context.Context) error {
	if l.stop != nil {
		l.stop()
	}
	if l.Owner.Token != "" {
		defer func() { _ = l.st.Delete(context.WithoutCancel(ctx), leaseKey(l.Owner.Token)) }() // best effort: garbage once the lock is gone
	}
	_, cur, err := readLock(ctx, l.st)
	if errors.Is(err, storage.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release backup lock: %w", err)
	}
	if !bytes.Equal(cur, l.body) {
		return fmt.Errorf("release backup lock: %w: it was taken over; %s is left in place", ErrLockLost, l.key)
	}
	if err := l.st.Delete(ctx, l.key); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("release backup lock: %w", err)
	}
	return nil
}

// renew starts renewing the lease until Release: every lease/5 it writes a new end
// into the lock's renewal object. A renewal that fails is logged; the lease then
// lapses only once renewals have failed for its whole length.
func (l *Lock) renew(ctx context.Context, h Host, lease time.Duration, log *slog.Logger, renewed func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lease / 5)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			b, _ := json.Marshal(leaseRenewal{Until: h.Now().UTC().Add(lease)})
			if err := l.st.Put(ctx, leaseKey(l.Owner.Token), bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil && ctx.Err() == nil {
				log.Warn("could not renew the backup lock's lease; another host may take the lock over once it lapses", "error", err, "lease", lease)
			} else if renewed != nil {
				renewed()
			}
		}
	}()
	l.stop = func() { cancel(); <-done }
}

// leaseLapsed says why the lease of holder has lapsed ("" if it has not, or the lock
// has no lease): its end, renewed or not, is more than lockClockSkew before now.
func leaseLapsed(ctx context.Context, st storage.Store, holder LockOwner, now time.Time) string {
	if holder.LeaseUntil.IsZero() || holder.Token == "" {
		return ""
	}
	until := holder.LeaseUntil
	b, err := readSmall(ctx, st, leaseKey(holder.Token))
	switch {
	case err == nil:
		var r leaseRenewal
		if json.Unmarshal(b, &r) != nil {
			return "" // damaged: cannot tell
		}
		if r.Until.After(until) {
			until = r.Until
		}
	case !errors.Is(err, storage.ErrNotExist):
		return "" // cannot tell
	}
	if now.Sub(until) <= lockClockSkew {
		return ""
	}
	return fmt.Sprintf("its lease lapsed at %s, not renewed since (the holder is gone, hung or cut off from the repository)", until.Format(time.RFC3339))
}
