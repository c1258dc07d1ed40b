package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
)

// Passphrase mode keeps the repository's key in the repository itself, sealed with the
// passphrase (age scrypt): encryption/passphrase-<generation>.age holds an X25519
// identity and a MAC key (and, after a passphrase rotation, every older identity), so
// that one secret writes and reads. Generation 1 is made by the first write
// (put-if-absent: of two writers racing, one key wins and both use it); each rotation
// adds the next generation. Opening the key costs one scrypt (about a second and 256
// MiB), once per process and only when an encrypted object is written or read.

const passphraseKeyPrefix = encryptionPrefix + "passphrase-"

// PassphraseKeyKey is where generation n of the passphrase key lives.
func PassphraseKeyKey(n int) string { return passphraseKeyPrefix + strconv.Itoa(n) + ".age" }

// passphraseGenerations lists the generations of the passphrase key, newest first.
func (r *Repo) passphraseGenerations(ctx context.Context) ([]int, error) {
	var gens []int
	err := r.st.List(ctx, passphraseKeyPrefix, func(o storage.ObjectInfo) error {
		s, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, passphraseKeyPrefix), ".age")
		if n, err := strconv.Atoi(s); ok && err == nil && n > 0 && PassphraseKeyKey(n) == o.Key {
			gens = append(gens, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list passphrase keys: %w", err)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(gens)))
	return gens, nil
}

// readPassphraseKey reads generation n, bounded.
func (r *Repo) readPassphraseKey(ctx context.Context, n int) ([]byte, error) {
	rc, err := r.st.Get(ctx, PassphraseKeyKey(n), 0, -1)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }() // read-only
	return readLimited(rc, crypt.PassphraseKeyLimit, PassphraseKeyKey(n))
}

// maxPassphraseTries bounds the generations a process tries to open, newest first.
const maxPassphraseTries = 8

// ErrWrongPassphrase means the repository has passphrase keys and the passphrase
// given opens none of them.
var ErrWrongPassphrase = errors.New("encryption-passphrase opens none of the repository's passphrase keys (a wrong passphrase, or one rotated away)")

// openPassphrase opens the newest passphrase key the passphrase opens (its identities
// include every older generation's). With create, a repository without one gets
// generation 1. It returns the keys and the generation.
func (r *Repo) openPassphrase(ctx context.Context, create bool) (*crypt.Keys, int, error) {
	gens, err := r.passphraseGenerations(ctx)
	if err != nil {
		return nil, 0, err
	}
	var damaged error
	for i, n := range gens {
		if i == maxPassphraseTries {
			break // each try is a scrypt: a repository full of keys must not cost minutes
		}
		b, err := r.readPassphraseKey(ctx, n)
		if errors.Is(err, storage.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		k, err := crypt.OpenPassphraseKey(r.passphrase, b)
		switch {
		case errors.Is(err, crypt.ErrWrongPassphrase):
			continue
		case err != nil:
			// A damaged generation: an older one may still open (a rotation keeps
			// every older identity in the newer, not the reverse).
			r.log.Warn("skipping a damaged passphrase key", "key", PassphraseKeyKey(n), "error", err)
			damaged = fmt.Errorf("%s: %w", PassphraseKeyKey(n), err)
			continue
		}
		return k, n, nil
	}
	switch {
	case damaged != nil:
		return nil, 0, damaged
	case len(gens) > maxPassphraseTries:
		return nil, 0, fmt.Errorf("%w: tried the newest %d of %d generations stored under %s*", ErrWrongPassphrase, maxPassphraseTries, len(gens), passphraseKeyPrefix)
	case len(gens) > 0:
		return nil, 0, fmt.Errorf("%w: %d generation(s) stored under %s*", ErrWrongPassphrase, len(gens), passphraseKeyPrefix)
	}
	if !create {
		return nil, 0, fmt.Errorf("%w: the repository has no passphrase key yet", ErrWrongPassphrase)
	}
	b, k, err := crypt.NewPassphraseKey(r.passphrase, nil)
	if err != nil {
		return nil, 0, err
	}
	err = r.st.Put(ctx, PassphraseKeyKey(1), bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
	if errors.Is(err, storage.ErrExist) {
		return r.openPassphrase(ctx, false) // another writer's won: use it
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store the passphrase key: %w", err)
	}
	return k, 1, nil
}

// RotatePassphrase stores a new generation of the passphrase key, sealed with
// newPassphrase: a new identity and MAC key, after every identity the current
// passphrase opens. Writers with the new passphrase encrypt to the new identity;
// readers with it read everything.
func (r *Repo) RotatePassphrase(ctx context.Context, newPassphrase string) (int, error) {
	old, _, err := r.openPassphrase(ctx, false)
	if err != nil {
		return 0, err
	}
	gens, err := r.passphraseGenerations(ctx)
	if err != nil {
		return 0, err
	}
	n := gens[0] // the newest, which the current passphrase may not open (an older one did)
	b, _, err := crypt.NewPassphraseKey(newPassphrase, old)
	if err != nil {
		return 0, err
	}
	err = r.st.Put(ctx, PassphraseKeyKey(n+1), bytes.NewReader(b), storage.PutOptions{IfAbsent: true, Size: int64(len(b))})
	if errors.Is(err, storage.ErrExist) {
		return 0, fmt.Errorf("another rotation stored generation %d meanwhile: run it again", n+1)
	}
	return n + 1, err
}

// unlock opens the passphrase key once per Repo (or once per KeyRing shared by
// several), the first time an encrypted object is written (write) or read, and from
// then on encrypts (when the passphrase writes) and decrypts with it. Without a
// passphrase it does nothing. A passphrase that opens no key is an error wrapping
// ErrNoKey (and remembered: it costs a scrypt per key tried); a storage error is
// returned as it is, and tried again next time.
func (r *Repo) unlock(ctx context.Context, write bool) error {
	if r.passphrase == "" {
		return nil
	}
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	if r.unlocked {
		return nil
	}
	if r.unlockErr != nil {
		return r.unlockErr
	}
	k, err := r.ring.open(ctx, r, write && r.passphraseWrites)
	if err != nil {
		if isKeyFailure(err) {
			r.unlockErr = keyError{err}
			return r.unlockErr
		}
		return err
	}
	r.unlocked = true
	r.decrypt = decrypterOf(r.keys.Merge(k))
	if r.passphraseWrites {
		r.encrypt, r.encryptErr = k, nil
	}
	return nil
}

// isKeyFailure says whether err is about the passphrase or its key (wrong, damaged,
// too costly), not about reaching the store.
func isKeyFailure(err error) bool {
	return errors.Is(err, ErrWrongPassphrase) || errors.Is(err, crypt.ErrBadPassphraseKey)
}

// unlockFor opens the passphrase key before an object is read when its header says it
// is encrypted: the key's own failures then fail the read as what they are (no key;
// a storage error), never as damage to the object. It returns the object's bytes,
// whole.
func (r *Repo) unlockFor(ctx context.Context, body io.Reader) (io.Reader, error) {
	r.keysMu.Lock()
	need := r.passphrase != "" && !r.unlocked
	r.keysMu.Unlock()
	if !need {
		return body, nil
	}
	var hdr [envelope.HeaderSize]byte
	n, err := io.ReadFull(body, hdr[:])
	src := io.MultiReader(bytes.NewReader(hdr[:n]), body)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return src, nil // too short: the envelope says so
	case err != nil:
		return nil, fmt.Errorf("read object: %w", err)
	}
	if h, err := envelope.ParseHeader(hdr[:]); err == nil && h.Cipher == envelope.CipherAge {
		if err := r.unlock(ctx, false); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// keyError is why the passphrase key did not open, as an ErrNoKey: the object cannot
// be read, for that reason.
type keyError struct{ err error }

func (e keyError) Error() string   { return "the object is encrypted and " + e.err.Error() }
func (e keyError) Unwrap() []error { return []error{envelope.ErrNoKey, e.err} }

// KeyRing shares an opened passphrase key between the Repos of one process that
// make a Repo per object (the look-ahead archiver): the key is opened once, not once
// per Repo. The zero value is ready to use.
type KeyRing struct {
	mu   sync.Mutex
	keys *crypt.Keys
	sets map[string]bool // recipient sets whose record is stored (registerRecipients)
}

// registered says whether the record of recipient set id is known to be stored.
func (k *KeyRing) registered(id string) bool {
	if k == nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sets[id]
}

// register notes that the record of recipient set id is stored.
func (k *KeyRing) register(id string) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sets == nil {
		k.sets = map[string]bool{}
	}
	k.sets[id] = true
}

// open returns the passphrase key: the ring's when it holds one, else opened (or,
// with create, made) through r.
func (k *KeyRing) open(ctx context.Context, r *Repo, create bool) (*crypt.Keys, error) {
	if k == nil {
		keys, _, err := r.openPassphrase(ctx, create)
		return keys, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil {
		return k.keys, nil
	}
	keys, _, err := r.openPassphrase(ctx, create)
	if err != nil {
		return nil, err
	}
	k.keys = keys
	return keys, nil
}
