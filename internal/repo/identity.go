// Package catalog is the repository's key layout and its small metadata documents:
// which cluster a repository belongs to, and (later) backup manifests, restore points
// and retention. See docs/repository-format.md.
package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// Key layout.
const (
	// IdentityKey names the document that binds a repository to one cluster.
	IdentityKey = "pgb.json"
	walPrefix   = "wal/"
)

// FormatVersion is the repository layout version pgb writes.
const FormatVersion = 1

// WALKey is where an archived WAL file lives: segments, partial segments and backup
// history files under wal/<timeline+log>/, timeline history files at wal/<name>.
func WALKey(f wal.File) string {
	if f.Kind == wal.History {
		return walPrefix + f.Name
	}
	return walPrefix + f.Name[:16] + "/" + f.Name
}

// Identity is the content of pgb.json.
type Identity struct {
	Format     int       `json:"format"`
	SystemID   SystemID  `json:"system_identifier"`
	PGVersion  int       `json:"pg_version"`
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by,omitempty"`
	FirstWrite string    `json:"first_write,omitempty"` // what wrote the identity: "wal-push 0000…"
}

// SystemID is a cluster's system identifier. It is a string in JSON, since a uint64
// does not survive JavaScript-based tooling.
type SystemID uint64

func (s SystemID) String() string { return strconv.FormatUint(uint64(s), 10) }

// MarshalText writes the decimal form.
func (s SystemID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the decimal form.
func (s *SystemID) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("system identifier %q: %w", b, err)
	}
	*s = SystemID(v)
	return nil
}

// ErrNoIdentity means the repository has no pgb.json: it is empty, or --repo points
// at the wrong place.
var ErrNoIdentity = errors.New("repository is not initialised (no " + IdentityKey + ")")

// ErrForeignCluster means the repository belongs to another cluster.
var ErrForeignCluster = errors.New("repository belongs to another cluster")

// ReadIdentity reads pgb.json.
func ReadIdentity(ctx context.Context, st storage.Store) (Identity, error) {
	rc, err := st.Get(ctx, IdentityKey, 0, -1)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return Identity{}, fmt.Errorf("%w: %s", ErrNoIdentity, st)
		}
		return Identity{}, fmt.Errorf("read %s: %w", IdentityKey, err)
	}
	defer func() { _ = rc.Close() }() // read-only: the JSON decode checks what was read
	b, err := readLimited(rc, smallDocLimit, IdentityKey)
	if errors.Is(err, ErrTooLarge) {
		return Identity{}, fmt.Errorf("%w in %s: it is damaged; it should be a few hundred bytes", err, st)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("read %s: %w", IdentityKey, err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("%s in %s is damaged: %w", IdentityKey, st, err)
	}
	if id.Format > FormatVersion {
		return Identity{}, fmt.Errorf("repository %s has format %d; this pgb understands up to %d: upgrade pgb", st, id.Format, FormatVersion)
	}
	return id, nil
}

// Matches checks that a cluster may write to a repository with identity id.
func (id Identity) Matches(sys SystemID, pgVersion int) error {
	if id.SystemID != sys {
		return fmt.Errorf("%w: it holds cluster %s, this is cluster %s; give each cluster its own repository (--repo)",
			ErrForeignCluster, id.SystemID, sys)
	}
	if id.PGVersion != pgVersion {
		return fmt.Errorf("%w: it holds PostgreSQL %d, this cluster runs %d; after a major upgrade start a new repository (--repo)",
			ErrForeignCluster, id.PGVersion, pgVersion)
	}
	return nil
}

// EnsureIdentity binds the repository to a cluster on first use, and on every later
// use checks that it is the same cluster. The first writer wins atomically; a racing
// second writer re-reads and compares.
func EnsureIdentity(ctx context.Context, st storage.Store, want Identity) (Identity, error) {
	id, err := ReadIdentity(ctx, st)
	if err == nil {
		return id, id.Matches(want.SystemID, want.PGVersion)
	}
	if !errors.Is(err, ErrNoIdentity) {
		return Identity{}, err
	}
	want.Format = FormatVersion
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return Identity{}, err
	}
	b = append(b, '\n')
	err = st.Put(ctx, IdentityKey, bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
	if err == nil {
		return want, nil
	}
	if !errors.Is(err, storage.ErrExist) {
		return Identity{}, fmt.Errorf("initialise repository %s: %w", st, err)
	}
	id, err = ReadIdentity(ctx, st)
	if err != nil {
		return Identity{}, err
	}
	return id, id.Matches(want.SystemID, want.PGVersion)
}

// ErrWALTimeout means a WAL file did not reach the repository in time.
var ErrWALTimeout = errors.New("WAL file did not reach the repository in time")

// WaitForWAL polls until the WAL file f is in the repository, for at most timeout.
func WaitForWAL(ctx context.Context, st storage.Store, f wal.File, timeout time.Duration) error {
	return WaitForWALUntil(ctx, st, f, timeout, nil)
}

// WaitForWALUntil is WaitForWAL that also gives up as soon as probe (if not nil) returns
// an error, which it returns: probe tells when the file can no longer arrive, such as
// archive_command failing for it.
func WaitForWALUntil(ctx context.Context, st storage.Store, f wal.File, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := st.Stat(ctx, WALKey(f))
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrNotExist) {
			return fmt.Errorf("look for %s: %w", f.Name, err)
		}
		if probe != nil {
			if err := probe(ctx); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s after %s", ErrWALTimeout, f.Name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
