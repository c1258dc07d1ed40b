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
)

// IdentityKey names the document that binds a repository to one cluster.
const IdentityKey = "pgb.json"

// FormatVersion is the repository layout version pgb writes.
const FormatVersion = 1

// Identity is the content of pgb.json.
type Identity struct {
	Format     int       `json:"format"`
	SystemID   SystemID  `json:"system_identifier"`
	PGVersion  int       `json:"pg_version"`
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by,omitempty"`
	FirstWrite string    `json:"first_write,omitempty"` // what wrote the identity: "wal-push 0000…"
	// Encryption is "age" for a repository whose first writer encrypted: writers that
	// do not encrypt are refused there (ErrMustEncrypt). Absent otherwise.
	Encryption string `json:"encryption,omitempty"`
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

// Identity reads pgb.json, once per Repo: later calls return the cached identity.
//
// pgb.json is plain JSON, not sealed: it says which format (and, with encryption,
// which cipher) the rest of the repository has, so it must be readable first.
func (r *Repo) Identity(ctx context.Context) (Identity, error) {
	r.mu.Lock()
	cached := r.id
	r.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	// Read without the lock: a caller's deadline must not wait behind another's read.
	// Two first readers both read; they find the same immutable object.
	id, err := readIdentity(ctx, r.st)
	if err == nil {
		r.mu.Lock()
		r.id = &id
		r.mu.Unlock()
	}
	return id, err
}

func readIdentity(ctx context.Context, st storage.Store) (Identity, error) {
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
	if id.SystemID != sys && id.PGVersion != 0 && pgVersion != 0 && id.PGVersion != pgVersion {
		return fmt.Errorf("%w: it holds cluster %s of PostgreSQL %d, this is cluster %s of PostgreSQL %d; after a major upgrade (pg_upgrade makes a new cluster) archive and back up into a new repository (--repo) and keep this one for the old backups (README: Major upgrades of PostgreSQL)",
			ErrForeignCluster, id.SystemID, id.PGVersion, sys, pgVersion)
	}
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
func (r *Repo) EnsureIdentity(ctx context.Context, want Identity) (Identity, error) {
	id, err := r.Identity(ctx)
	if err == nil {
		return id, id.Matches(want.SystemID, want.PGVersion)
	}
	if !errors.Is(err, ErrNoIdentity) {
		return Identity{}, err
	}
	want.Format = FormatVersion
	if r.Encrypting() {
		want.Encryption = "age"
	}
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return Identity{}, err
	}
	b = append(b, '\n')
	err = r.st.Put(ctx, IdentityKey, bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
	if err == nil {
		r.mu.Lock()
		r.id = &want
		r.mu.Unlock()
		return want, nil
	}
	if !errors.Is(err, storage.ErrExist) {
		return Identity{}, fmt.Errorf("initialise repository %s: %w", r, err)
	}
	id, err = r.Identity(ctx)
	if err != nil {
		return Identity{}, err
	}
	return id, id.Matches(want.SystemID, want.PGVersion)
}
