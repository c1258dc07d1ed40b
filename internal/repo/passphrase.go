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
	for _, n := range gens {
		b, err := r.readPassphraseKey(ctx, n)
		if errors.Is(err, storage.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		k, err := crypt.OpenPassphraseKey(r.passphrase, b)
		if errors.Is(err, crypt.ErrWrongPassphrase) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", PassphraseKeyKey(n), err)
		}
		return k, n, nil
	}
	if len(gens) > 0 {
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
	old, n, err := r.openPassphrase(ctx, false)
	if err != nil {
		return 0, err
	}
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

// unlock opens the passphrase key once per Repo, the first time an encrypted object is
// written (write) or read, and from then on encrypts (when the passphrase writes) and
// decrypts with it. Without a passphrase it does nothing.
func (r *Repo) unlock(ctx context.Context, write bool) error {
	if r.passphrase == "" {
		return nil
	}
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	if r.unlocked {
		return nil
	}
	k, _, err := r.openPassphrase(ctx, write && r.passphraseWrites)
	if err != nil {
		return err
	}
	r.unlocked = true
	r.decrypt = decrypterOf(r.keys.Merge(k))
	if r.passphraseWrites {
		r.encrypt, r.encryptErr = k, nil
	}
	return nil
}

// decrypter is what open decrypts with: the identities given, and the passphrase key
// once the first encrypted object needs it.
func (r *Repo) decrypter(ctx context.Context) envelope.Decrypter {
	r.keysMu.Lock()
	d, locked := r.decrypt, r.passphrase != "" && !r.unlocked
	r.keysMu.Unlock()
	if !locked {
		return d
	}
	return &lazyDecrypter{r: r, ctx: ctx}
}

// lazyDecrypter opens the passphrase key when an object turns out to be encrypted.
type lazyDecrypter struct {
	r   *Repo
	ctx context.Context
}

func (l *lazyDecrypter) Decrypt(src io.Reader) (io.Reader, error) {
	if err := l.r.unlock(l.ctx, false); err != nil {
		return nil, keyError{err} // says why the passphrase gave no key; is ErrNoKey too
	}
	l.r.keysMu.Lock()
	d := l.r.decrypt
	l.r.keysMu.Unlock()
	if d == nil {
		return nil, envelope.ErrNoKey
	}
	return d.Decrypt(src)
}

func (l *lazyDecrypter) MACKey(id [3]byte) []byte {
	l.r.keysMu.Lock()
	d := l.r.decrypt
	l.r.keysMu.Unlock()
	if d == nil {
		return nil
	}
	return d.MACKey(id)
}

// keyError is why the passphrase key did not open, as an ErrNoKey: the object cannot
// be read, for that reason.
type keyError struct{ err error }

func (e keyError) Error() string   { return "the object is encrypted and " + e.err.Error() }
func (e keyError) Unwrap() []error { return []error{envelope.ErrNoKey, e.err} }
