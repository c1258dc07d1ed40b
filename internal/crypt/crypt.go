// Package crypt holds pgb's client-side encryption keys (filippo.io/age): Keys encrypt
// and decrypt age streams and hold the MAC key, as internal/repo seals objects with
// them (the envelope's Encrypter, and its Decrypter through repo's adapter). It knows
// keys and nothing of the repository: internal/repo decides which objects are
// encrypted.
//
// Writers (wal-push, backup-push) need the public recipients and the MAC key; readers
// (wal-fetch, restore, verify, drill…) need an identity. The MAC key is a secret shared
// by every writer: it keys the tag an encrypted object's trailer carries, so that a
// writer that cannot decrypt can still tell a repeated upload of the same bytes from a
// conflicting one, and whoever holds the objects without the key learns nothing from
// the tag (see internal/envelope).
package crypt

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"filippo.io/age"
)

// MACKeyPrefix starts the text form of a MAC key: "pgb-mac-key-" and 64 hex digits.
const MACKeyPrefix = "pgb-mac-key-"

// maxKeyFile bounds what an identity or recipients file may hold.
const maxKeyFile = 1 << 20

// Keys are the encryption keys a process holds: any of them may be empty.
type Keys struct {
	recipients []age.Recipient
	names      []string // the recipients' text forms, sorted
	identities []age.Identity
	macKey     []byte // the writing MAC key
	macID      [3]byte
	readMACs   map[[3]byte][]byte // every MAC key held, by id: tags are checked against them
	set        [8]byte
	secrets    []string // passphrase keys: the identities' text, for a rotation
	trial      *trial   // CanWrite's trial encryption, done once per recipient set
}

// trial is the memoised result of a trial encryption to a Keys' recipients: it costs
// two X25519 operations, and every Repo made with the keys asks (the look-ahead
// archiver makes one per segment).
type trial struct {
	once sync.Once
	err  error
}

// ParseRecipients reads age recipients (age1…, age1pq1…) separated by commas, spaces
// or newlines. Lines starting with # are comments.
func ParseRecipients(text string) ([]age.Recipient, []string, error) {
	var rs []age.Recipient
	var names []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			rcs, err := age.ParseRecipients(strings.NewReader(f))
			if err != nil {
				if strings.HasPrefix(f, "AGE-SECRET-KEY") {
					return nil, nil, errors.New("a recipient is a secret key (AGE-SECRET-KEY-…): give writers the public key (age1…), which age-keygen -y or pgb keygen prints")
				}
				// Not quoted: it may be a secret pasted into the wrong setting.
				// age's error quotes it: left out.
				return nil, nil, fmt.Errorf("recipient %d is not an age public key (age1…, as pgb keygen or age-keygen -y prints)", len(rs)+1)
			}
			rs = append(rs, rcs...)
			names = append(names, f)
		}
	}
	if len(rs) == 0 {
		return nil, nil, errors.New("no recipients given")
	}
	return rs, names, nil
}

// ReadRecipientsFile reads ParseRecipients' format from a file.
func ReadRecipientsFile(path string) ([]age.Recipient, []string, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("encryption recipients file: %w", err)
	}
	rs, names, err := ParseRecipients(string(b))
	if err != nil {
		return nil, nil, fmt.Errorf("encryption recipients file %s: %w", path, err)
	}
	return rs, names, nil
}

// ReadIdentityFile reads age identities (AGE-SECRET-KEY-1…, one per line, # comments)
// from a file that only its owner may read: a key others can read is refused.
func ReadIdentityFile(path string) ([]age.Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("encryption identity file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("encryption identity file %s can be read by other users (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("encryption identity file: %w", err)
	}
	var ids []age.Identity
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, err := age.ParseIdentities(strings.NewReader(line))
		if err != nil {
			// age's error may quote part of the line, which is key material: left out.
			return nil, fmt.Errorf("encryption identity file %s line %d is not an age identity (AGE-SECRET-KEY-1…)", path, n+1)
		}
		ids = append(ids, id...)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("encryption identity file %s holds no identity", path)
	}
	return ids, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(f), maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// ParseMACKeys reads a comma-separated list of MAC keys: the first is the writing one.
func ParseMACKeys(s string) ([][]byte, error) {
	var out [][]byte
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		k, err := ParseMACKey(f)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// ParseMACKey reads a MAC key's text form (MACKeyPrefix and 64 hex digits).
func ParseMACKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	k, err := hex.DecodeString(strings.TrimPrefix(s, MACKeyPrefix))
	if !strings.HasPrefix(s, MACKeyPrefix) || err != nil || len(k) != 32 {
		return nil, fmt.Errorf("encryption-mac-key is not a MAC key (%s and 64 hex digits, as pgb keygen prints)", MACKeyPrefix)
	}
	return k, nil
}

// NewMACKey makes a random MAC key in its text form.
func NewMACKey() string {
	var k [32]byte
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails
	return MACKeyPrefix + hex.EncodeToString(k[:])
}

// MACKeyID is the id of a MAC key recorded in trailers: the first 3 bytes of a hash
// of the key, which tells keys apart without revealing them.
func MACKeyID(key []byte) [3]byte {
	h := sha256.Sum256(append([]byte("pgb mac key id\x00"), key...))
	return [3]byte{h[0], h[1], h[2]}
}

// New gathers keys; any of them may be nil.
func New(recipients []age.Recipient, names []string, identities []age.Identity, macKey []byte) *Keys {
	k := &Keys{recipients: recipients, identities: identities, macKey: macKey, trial: &trial{}}
	k.names = append([]string(nil), names...)
	sort.Strings(k.names)
	k.set = RecipientSetID(k.names)
	k.readMACs = map[[3]byte][]byte{}
	if macKey != nil {
		k.macID = MACKeyID(macKey)
		k.readMACs[k.macID] = macKey
	}
	return k
}

// CanWrite says whether the keys can seal objects: recipients and a MAC key.
func (k *Keys) CanWrite() error {
	switch {
	case k == nil || len(k.recipients) == 0:
		return errors.New("encryption is age but no recipients are given: set encryption-recipients or encryption-recipients-file (the public keys, age1…)")
	case k.macKey == nil:
		return errors.New("encryption is age but no encryption-mac-key is given: every host that writes to the repository needs the same one (pgb keygen makes one)")
	}
	// age refuses some sets (post-quantum and classic recipients mixed): find out
	// here, not at the first write.
	k.trial.once.Do(func() {
		w, err := age.Encrypt(io.Discard, k.recipients...)
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			k.trial.err = fmt.Errorf("encryption-recipients cannot be used together: %w", err)
		}
	})
	return k.trial.err
}

// HasRecipients says whether recipients were given.
func (k *Keys) HasRecipients() bool { return k != nil && len(k.recipients) > 0 }

// CanRead says whether the keys hold an identity.
func (k *Keys) CanRead() bool { return k != nil && len(k.identities) > 0 }

// Recipients are the recipients' text forms, sorted.
func (k *Keys) Recipients() []string { return append([]string(nil), k.names...) }

// MACKeyID is the id of the MAC key, if one is held.
func (k *Keys) MACKeyID() ([3]byte, bool) { return k.macID, k.macKey != nil }

// Encrypt implements envelope.Encrypter.
func (k *Keys) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	return age.Encrypt(dst, k.recipients...)
}

// MACKey implements envelope.Encrypter.
func (k *Keys) MACKey() ([3]byte, []byte) { return k.macID, k.macKey }

// RecipientSet implements envelope.Encrypter.
func (k *Keys) RecipientSet() [8]byte { return k.set }

// RecipientSetID identifies a set of recipients (their text forms, in any order): the
// first 8 bytes of a hash of them, sorted.
func RecipientSetID(names []string) [8]byte {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	h := sha256.Sum256([]byte("pgb recipients\x00" + strings.Join(sorted, "\n")))
	var id [8]byte
	copy(id[:], h[:8])
	return id
}

// ErrNoIdentityMatch means none of the identities held can decrypt a stream: it was
// encrypted for other recipients (or its header's stanzas are damaged).
var ErrNoIdentityMatch = errors.New("no identity matches")

// Decrypt returns the plaintext of the age stream src, decrypted with the identities
// held; ErrNoIdentityMatch when none can.
func (k *Keys) Decrypt(src io.Reader) (io.Reader, error) {
	r, err := age.Decrypt(src, k.identities...)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, ErrNoIdentityMatch
	}
	return r, err
}

// MACKeyFor is the MAC key with this id when the keys hold it, else nil; check says
// whether they hold any: a reader that does checks every encrypted object's tag, and
// refuses one under a MAC key it does not hold.
func (k *Keys) MACKeyFor(id [3]byte) (key []byte, check bool) {
	return k.readMACs[id], len(k.readMACs) > 0
}

// WithReadMACKeys returns k that also checks tags under these MAC keys (older ones:
// k writes with its own).
func (k *Keys) WithReadMACKeys(keys ...[]byte) *Keys {
	c := *k
	c.readMACs = map[[3]byte][]byte{}
	for id, m := range k.readMACs {
		c.readMACs[id] = m
	}
	for _, m := range keys {
		c.readMACs[MACKeyID(m)] = m
	}
	return &c
}

// Generate makes a new X25519 identity: its secret text (AGE-SECRET-KEY-1…) and its
// recipient (age1…).
func Generate() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", err
	}
	return id.String(), id.Recipient().String(), nil
}

// passphraseWorkFactor is the scrypt work factor (log2 N) of passphrase keys: age's
// default, about a second and 256 MiB. Readers refuse a key that declares more.
const passphraseWorkFactor = 18

// PassphraseKeyLimit bounds a sealed passphrase key (a few identities and a MAC key).
const PassphraseKeyLimit = 64 << 10

// NewPassphraseKey makes a repository key for passphrase mode: a new X25519 identity
// and MAC key, after the identities of prior (a rotation keeps the old identities
// readable under the new passphrase), sealed with the passphrase (age scrypt, its
// default work factor: about a second and 256 MiB, once per process that needs the
// key). It returns the sealed bytes and the keys they hold.
func NewPassphraseKey(passphrase string, prior *Keys) ([]byte, *Keys, error) {
	if len(passphrase) < 12 {
		return nil, nil, errors.New("encryption-passphrase is shorter than 12 characters: choose a long one (it guards every backup)")
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, nil, err
	}
	var b strings.Builder
	b.WriteString("# pgb passphrase key: the first identity is the current one\n")
	b.WriteString(id.String() + "\n")
	if prior != nil {
		for _, s := range prior.secrets {
			b.WriteString(s + "\n")
		}
	}
	mac := NewMACKey()
	b.WriteString(mac + "\n") // the first MAC key is the current one
	if prior != nil {
		for _, m := range prior.readMACs {
			b.WriteString(MACKeyPrefix + hex.EncodeToString(m) + "\n")
		}
	}
	sr, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, nil, err
	}
	sr.SetWorkFactor(passphraseWorkFactor)
	var out strings.Builder
	w, err := age.Encrypt(&out, sr)
	if err != nil {
		return nil, nil, err
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return nil, nil, err
	}
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	k, err := parsePassphraseKey(b.String())
	if err != nil {
		return nil, nil, err
	}
	return []byte(out.String()), k, nil
}

// ErrWrongPassphrase means a passphrase key does not open with the passphrase given.
var ErrWrongPassphrase = errors.New("the passphrase does not open it")

// ErrBadPassphraseKey means a passphrase key is damaged or not one pgb writes.
var ErrBadPassphraseKey = errors.New("not a usable passphrase key")

// OpenPassphraseKey opens a repository key sealed by NewPassphraseKey.
func OpenPassphraseKey(passphrase string, sealed []byte) (*Keys, error) {
	if len(sealed) > PassphraseKeyLimit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadPassphraseKey, PassphraseKeyLimit)
	}
	si, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, err
	}
	// A key file is repository data: one declaring a higher work factor than pgb
	// writes would make every reader spend seconds and gigabytes on it.
	si.SetMaxWorkFactor(passphraseWorkFactor)
	r, err := age.Decrypt(strings.NewReader(string(sealed)), si)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("%w: %w", ErrBadPassphraseKey, err)
	}
	b, err := io.ReadAll(io.LimitReader(r, PassphraseKeyLimit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPassphraseKey, err)
	}
	k, err := parsePassphraseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPassphraseKey, err)
	}
	return k, nil
}

func parsePassphraseKey(text string) (*Keys, error) {
	var ids []age.Identity
	var secrets []string
	var mac []byte
	var older [][]byte
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, MACKeyPrefix):
			k, err := ParseMACKey(line)
			if err != nil {
				return nil, err
			}
			if mac == nil {
				mac = k
			} else {
				older = append(older, k)
			}
		default:
			id, err := age.ParseX25519Identity(line)
			if err != nil {
				return nil, errors.New("passphrase key holds a line that is not a key")
			}
			ids, secrets = append(ids, id), append(secrets, line)
		}
	}
	if len(ids) == 0 || mac == nil {
		return nil, errors.New("passphrase key holds no identity or no MAC key")
	}
	cur := ids[0].(*age.X25519Identity).Recipient()
	k := New([]age.Recipient{cur}, []string{cur.String()}, ids, mac).WithReadMACKeys(older...)
	k.secrets = secrets
	return k, nil
}

// Merge returns keys that read with the identities of both k and o; writing keys
// (recipients, MAC key) are k's, else o's.
func (k *Keys) Merge(o *Keys) *Keys {
	if o == nil {
		return k
	}
	if k == nil {
		return o
	}
	w := k
	if len(k.recipients) == 0 {
		w = o
	}
	mac := w.macKey
	if mac == nil {
		mac = o.macKey
	}
	m := New(w.recipients, w.names, append(append([]age.Identity(nil), k.identities...), o.identities...), mac)
	for _, x := range []*Keys{k, o} {
		for _, mk := range x.readMACs {
			m = m.WithReadMACKeys(mk)
		}
	}
	m.secrets = append(append([]string(nil), k.secrets...), o.secrets...)
	return m
}
