package repo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

const encryptionPrefix = "encryption/"

// RecipientSetKey is where the record of recipient set id (hex) lives.
func RecipientSetKey(id string) string { return encryptionPrefix + "recipients-" + id + ".json" }

// RecipientSet is the record of one set of recipients new objects were encrypted to:
// the objects themselves name only its id (in their trailers, and backups in their
// summaries), so that pgb status can say which keys read them. Written once, by the
// first writer that encrypts to the set (put-if-absent; an existing record counts as
// written). Sealed zstd JSON, unencrypted: recipients are public keys.
type RecipientSet struct {
	Format     int       `json:"format"`
	ID         string    `json:"id"` // 16 hex digits: crypt.RecipientSetID of Recipients
	Cipher     string    `json:"cipher"`
	Recipients []string  `json:"recipients"`
	MACKeyID   string    `json:"mac_key_id"` // 6 hex digits
	FirstUsed  time.Time `json:"first_used"`
	Host       string    `json:"host,omitempty"`
}

// Encryption says how a backup's objects were encrypted (Summary.Encryption).
type Encryption struct {
	Cipher       string   `json:"cipher"` // age
	RecipientSet string   `json:"recipient_set"`
	Recipients   []string `json:"recipients"`
	MACKeyID     string   `json:"mac_key_id"`
}

// recipientLister is what an Encrypter tells of its recipients (crypt.Keys does).
type recipientLister interface {
	Recipients() []string
	RecipientSet() [8]byte
	MACKey() ([3]byte, []byte)
}

// encryptionInfo describes how this repository encrypts new objects; nil when it
// does not.
func (r *Repo) encryptionInfo() *Encryption {
	r.keysMu.Lock()
	enc := r.encrypt
	r.keysMu.Unlock()
	rl, ok := enc.(recipientLister)
	if !ok {
		return nil
	}
	set := rl.RecipientSet()
	id, _ := rl.MACKey()
	return &Encryption{Cipher: "age", RecipientSet: hex.EncodeToString(set[:]), Recipients: rl.Recipients(), MACKeyID: hex.EncodeToString(id[:])}
}

// registerRecipients writes the record of the recipient set this repository encrypts
// to, once per Repo, before the first encrypted object is stored.
func (r *Repo) registerRecipients(ctx context.Context) error {
	info := r.encryptionInfo()
	if info == nil {
		return nil
	}
	r.mu.Lock()
	done := r.registered
	r.mu.Unlock()
	if done || r.ring.registered(info.RecipientSet) {
		return nil
	}
	host, _ := os.Hostname()
	rec := RecipientSet{Format: 1, ID: info.RecipientSet, Cipher: info.Cipher, Recipients: info.Recipients,
		MACKeyID: info.MACKeyID, FirstUsed: time.Now().UTC(), Host: host}
	err := r.putJSON(ctx, RecipientSetKey(rec.ID), rec)
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return fmt.Errorf("record the encryption recipients: %w", err)
	}
	r.mu.Lock()
	r.registered = true
	r.mu.Unlock()
	r.ring.register(info.RecipientSet)
	return nil
}

// ErrDamagedRecipientSet marks a recipient set record that cannot be used.
var ErrDamagedRecipientSet = errors.New("damaged recipient set record")

// RecipientSets reads every recipient set record, oldest first. A damaged one (its id
// not that of its recipients, another format) is left out with a warning.
func (r *Repo) RecipientSets(ctx context.Context) ([]RecipientSet, error) {
	var keys []string
	err := r.st.List(ctx, encryptionPrefix, func(o storage.ObjectInfo) error {
		if strings.HasPrefix(o.Key, encryptionPrefix+"recipients-") && strings.HasSuffix(o.Key, ".json") {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list recipient sets: %w", err)
	}
	var out []RecipientSet
	for _, k := range keys {
		var rs RecipientSet
		err := r.getJSON(ctx, k, &rs, smallDocLimit, "a recipient set record is a few KiB")
		if err == nil {
			err = checkRecipientSet(k, rs)
		}
		switch {
		case errors.Is(err, storage.ErrNotExist):
			continue
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrDamagedRecipientSet):
			r.log.Warn("skipping a damaged recipient set record", "key", k, "error", err)
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FirstUsed.Equal(out[j].FirstUsed) {
			return out[i].FirstUsed.Before(out[j].FirstUsed)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func checkRecipientSet(key string, rs RecipientSet) error {
	id := crypt.RecipientSetID(rs.Recipients)
	mac, err := hex.DecodeString(rs.MACKeyID)
	switch {
	case rs.Format != 1:
		return fmt.Errorf("%s: %w: format %d (upgrade pgb)", key, ErrDamagedRecipientSet, rs.Format)
	case RecipientSetKey(rs.ID) != key || rs.ID != hex.EncodeToString(id[:]):
		return fmt.Errorf("%s: %w: its id is not that of its recipients", key, ErrDamagedRecipientSet)
	case rs.Cipher != "age" || err != nil || len(mac) != 3:
		return fmt.Errorf("%s: %w: cipher %q, MAC key id %q", key, ErrDamagedRecipientSet, rs.Cipher, rs.MACKeyID)
	}
	if _, _, err := crypt.ParseRecipients(strings.Join(rs.Recipients, "\n")); err != nil {
		return fmt.Errorf("%s: %w: %w", key, ErrDamagedRecipientSet, err)
	}
	return nil
}

// WALRecipientSet says which recipient set the archived WAL file f is encrypted to
// (16 hex digits), from one ranged read of its trailer; "" when it is not encrypted.
func (r *Repo) WALRecipientSet(ctx context.Context, f wal.File) (string, error) {
	s, err := r.readTrailer(ctx, WALKey(f))
	if err != nil {
		return "", err
	}
	if set, ok := s.RecipientSet(); ok {
		return hex.EncodeToString(set[:]), nil
	}
	return "", nil
}

// CanDecrypt says whether this repository holds a key to read encrypted objects (an
// identity, or a passphrase, whether or not it opens).
func (r *Repo) CanDecrypt() bool {
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	return r.decrypt != nil || r.passphrase != ""
}

// Destination names where and how new objects are written: the repository (String),
// and for one that encrypts the recipient set and MAC key it encrypts with. The
// look-ahead archiver is bound to it, so that a wal-push whose keys changed (a key
// rotation) neither trusts the records of an archiver still writing with the old ones
// nor leaves that archiver running.
func (r *Repo) Destination() string {
	if r.passphraseWrites {
		// Not the key's set: that is known only once the key is open, and this must
		// not open it. Nor anything derived from the passphrase: this string is stored
		// in pg_wal/pgb, and a fast hash of a passphrase is a way to test guesses. A
		// running archiver keeps the key it opened after a rotate-passphrase until it
		// idles out; what it writes stays readable, the new generation holding every
		// older identity.
		return r.String() + " (encrypted with the passphrase key)"
	}
	if e := r.encryptionInfo(); e != nil {
		return r.String() + " (encrypted for " + e.RecipientSet + ", MAC key " + e.MACKeyID + ")"
	}
	return r.String()
}

// EncryptionState says how this repository encrypts new objects.
type EncryptionState struct {
	// Err: it should encrypt but cannot (no recipients, no MAC key).
	Err error
	// Passphrase: new objects go to the passphrase key (opened by the first write).
	Passphrase bool
	// Info: the recipients new objects go to; nil when none (not encrypting, or the
	// passphrase key not open yet).
	Info *Encryption
}

// EncryptionState reports how new objects are encrypted.
func (r *Repo) EncryptionState() EncryptionState {
	r.keysMu.Lock()
	err := r.encryptErr
	r.keysMu.Unlock()
	return EncryptionState{Err: err, Passphrase: r.passphraseWrites, Info: r.encryptionInfo()}
}

// decrypter adapts crypt.Keys to the envelope's Decrypter.
type decrypter struct{ k *crypt.Keys }

// decrypterOf is the envelope's Decrypter of k; nil when it holds no identity (an
// encrypted object then fails with ErrNoKey).
func decrypterOf(k *crypt.Keys) envelope.Decrypter {
	if !k.CanRead() {
		return nil
	}
	return decrypter{k}
}

func (d decrypter) Decrypt(src io.Reader) (io.Reader, error) {
	r, err := d.k.Decrypt(src)
	if errors.Is(err, crypt.ErrNoIdentityMatch) {
		return nil, envelope.ErrWrongKey
	}
	return r, err
}

func (d decrypter) MACKey(id [3]byte) ([]byte, bool) { return d.k.MACKeyFor(id) }
