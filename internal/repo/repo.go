// Package repo is pgb's repository layer, between the engine (archive, backup,
// restore, cmd) and object storage. It owns:
//
//   - the wrapped storage.Store: the engine never sees a key or a backend;
//   - the envelope (see internal/envelope): every object is sealed and opened here and
//     nowhere else, with the options given to New (the codec today, the cipher next);
//   - the key layout (docs/repository-format.md);
//   - the documents: the identity (pgb.json, read once per process and cached), backup
//     summaries and manifests, restore points, and the backup lock;
//   - a cheap index of backups: listing them reads one small summary per backup, not
//     every manifest's file list.
//
// Engine packages talk to it through typed methods: put or open a WAL file, list WAL
// by timeline and log, create or open a backup part, put or read a manifest, list
// backups, take a lock.
package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
)

// Options configure a Repo.
type Options struct {
	// Codec compresses what pgb stores in bulk: WAL files and backup parts. Nil means
	// no compression. Documents (manifests, summaries, restore points) are always
	// zstd-compressed: their size does not depend on this setting.
	Codec compress.Codec
	// Log receives warnings (a stale lock taken over, objects left behind); nil
	// discards them.
	Log *slog.Logger
	// Buffers, when set, lends PutWAL the memory it seals a WAL file into, so that a
	// process pushing many segments (the look-ahead archiver) reuses it rather than
	// allocating afresh per segment. Several Repos may share one.
	Buffers *WALBuffers
	// WALMemory is how much of one sealed WAL file PutWAL keeps in memory (the rest
	// goes to a temporary file); 0 means DefaultWALMemory. Tests lower it.
	WALMemory int64
	// PartCompressors is the most cores one lz4 backup part is compressed on; 0 means
	// min(GOMAXPROCS, 4). Tests set it to take the parallel path on any host.
	PartCompressors int
	// ManifestHeaderLimit bounds the header line of a format 2 manifest; 0 means
	// DefaultManifestHeaderLimit. Tests lower it.
	ManifestHeaderLimit int
	// Keys are the encryption keys given (recipients, identities, MAC key): objects
	// are decrypted with their identities; nil: none given.
	Keys *crypt.Keys
	// EncryptNew encrypts the new objects that hold table data (see Encrypts) to the
	// recipients of Keys, else, without them, to the passphrase key (Passphrase).
	// Where neither can, every write of such an object fails, and nothing is written
	// unencrypted instead.
	EncryptNew bool
	// Passphrase is encryption-passphrase: the repository's passphrase key it opens
	// (see passphrase.go) decrypts too, opened the first time an encrypted object is
	// read or written.
	Passphrase string
	// KeyRing, when set, shares the opened passphrase key, and which recipient set
	// records are stored, between Repos (several may share one): a process that makes
	// a Repo per object opens the key and records the set once.
	KeyRing *KeyRing
}

// Repo is one repository.
type Repo struct {
	st        storage.Store
	codec     compress.Codec
	docCodec  compress.Codec
	log       *slog.Logger
	buffers   *WALBuffers
	walMemory int64

	maxHeaderLine    int           // bound of a format 2 manifest's header line
	partCompressors  int           // cores one lz4 part is compressed on, at most
	extraCompressors chan struct{} // tokens: compressors beyond one per part, shared by every open part

	keys             *crypt.Keys
	passphrase       string
	passphraseWrites bool // new objects go to the passphrase key, once unlocked

	ring       *KeyRing // Options.KeyRing
	keysMu     sync.Mutex
	unlocked   bool  // the passphrase key is open
	unlockErr  error // why it did not open (no key), remembered
	encrypt    envelope.Encrypter
	encryptErr error
	decrypt    envelope.Decrypter

	mu         sync.Mutex
	id         *Identity // cached once read or written
	registered bool      // registerRecipients stored (or found) the record
}

// New wraps st. The Repo does not own st: the caller closes it.
func New(st storage.Store, opt Options) *Repo {
	codec := opt.Codec
	if codec == nil {
		codec, _ = compress.New("none", 0)
	}
	doc, _ := compress.New("zstd", 0)
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc := opt.PartCompressors
	if pc <= 0 {
		pc = min(runtime.GOMAXPROCS(0), defaultPartCompressors)
	}
	mh := opt.ManifestHeaderLimit
	if mh <= 0 {
		mh = DefaultManifestHeaderLimit
	}
	wm := opt.WALMemory
	if wm <= 0 {
		wm = DefaultWALMemory
	}
	r := &Repo{st: st, codec: codec, docCodec: doc, log: log, buffers: opt.Buffers, walMemory: wm,
		partCompressors: pc, extraCompressors: make(chan struct{}, extraCompressorBudget), maxHeaderLine: mh,
		keys: opt.Keys, passphrase: opt.Passphrase, ring: opt.KeyRing, decrypt: decrypterOf(opt.Keys)}
	if opt.EncryptNew {
		switch werr := opt.Keys.CanWrite(); {
		case werr == nil:
			r.encrypt = opt.Keys
		case opt.Passphrase != "" && !opt.Keys.HasRecipients():
			r.passphraseWrites = true
		default:
			r.encryptErr = werr
		}
	}
	return r
}

// String names the repository for messages, without secrets.
func (r *Repo) String() string { return r.st.String() }

// Codec is the codec bulk data is written with.
func (r *Repo) Codec() compress.Codec { return r.codec }

// Sum identifies the plain content of a stored object: its size and checksum.
type Sum = envelope.Sum

// ErrCorrupt means a stored object failed verification: bad header or trailer, a
// stream that does not decode, or a size or checksum that does not match.
var ErrCorrupt = envelope.ErrCorrupt

// ErrNoKey means an object is encrypted and no identity was given to read it.
var ErrNoKey = envelope.ErrNoKey

// ErrWrongKey means an object is encrypted and none of the identities given can read it.
var ErrWrongKey = envelope.ErrWrongKey

// Overhead is what sealing adds to an object's encoded bytes.
const Overhead = envelope.Overhead

// seal returns a writer that encodes into dst what is to be stored under key; its
// Close writes the trailer. It is the only place objects are sealed: encrypted when the
// repository encrypts and Encrypts(key).
func (r *Repo) seal(dst io.Writer, codec compress.Codec, key string) (*envelope.Writer, error) {
	if !Encrypts(key) || !r.Encrypting() {
		return envelope.NewWriter(dst, codec)
	}
	r.keysMu.Lock()
	enc, encErr := r.encrypt, r.encryptErr
	r.keysMu.Unlock()
	if encErr != nil {
		return nil, fmt.Errorf("write %s: %w", key, encErr)
	}
	if enc == nil {
		return nil, fmt.Errorf("write %s: the passphrase key is not open", key) // a caller skipped unlock: a defect
	}
	return envelope.NewEncryptedWriter(dst, codec, enc)
}

// Encrypts says whether the object under key is encrypted when the repository
// encrypts: everything that holds table data or the cluster's files — WAL segments
// and partial segments, backup parts, manifests (file lists, backup_label,
// tablespace_map) and relation maps. What status and backup-list read without a key
// stays readable: pgb.json, timeline and backup history files, backup summaries,
// permanent marks, restore points, WAL summaries, drill and gap records, the lock.
func Encrypts(key string) bool {
	switch {
	case strings.HasPrefix(key, walPrefix):
		return !strings.HasSuffix(key, ".history") && !strings.HasSuffix(key, ".backup")
	case strings.HasPrefix(key, backupsPrefix):
		doc := key[strings.LastIndexByte(key, '/')+1:]
		return doc == manifestName || doc == relMapName || strings.HasPrefix(doc, "part-")
	}
	return false
}

// Encrypting says whether new objects Encrypts names are encrypted.
func (r *Repo) Encrypting() bool {
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	return r.encrypt != nil || r.encryptErr != nil || r.passphraseWrites
}

// sealing makes the keys new objects are encrypted with ready (opening the passphrase
// key when it is what they go to): every writer of an object Encrypts names calls it
// before seal.
func (r *Repo) sealing(ctx context.Context, key string) error {
	if !Encrypts(key) {
		return nil
	}
	if !r.Encrypting() {
		return r.mayStoreUnencrypted(ctx)
	}
	if !r.passphraseWrites {
		return nil
	}
	return r.unlock(ctx, true)
}

// ErrMustEncrypt means a writer that does not encrypt met a repository created
// encrypted: nothing is stored unencrypted there.
var ErrMustEncrypt = errors.New("this repository was created encrypted (pgb.json says encryption: age) and this pgb is not set to encrypt: set encryption: age with encryption-recipients and encryption-mac-key, or encryption-passphrase; nothing was stored unencrypted")

// mayStoreUnencrypted fails with ErrMustEncrypt in a repository created encrypted.
// pgb.json is read once per Repo (wal-push and backup-push have read it already).
func (r *Repo) mayStoreUnencrypted(ctx context.Context) error {
	id, err := r.Identity(ctx)
	switch {
	case errors.Is(err, ErrNoIdentity):
		return nil // a new repository: the writer that creates pgb.json decides
	case err != nil:
		return err
	case id.Encryption != "":
		return ErrMustEncrypt
	}
	return nil
}

// ErrVanished means an object that was there when reading began was gone when the
// read was resumed: a failed read, which must not look like a missing object.
var ErrVanished = errors.New("object vanished while being read")

// Object is a stored object being read: Read yields its plain bytes, and the last Read
// (io.EOF) comes only after the size and checksum were verified. Sum is valid then.
type Object struct {
	body io.ReadCloser
	er   *envelope.Reader
	key  string
}

// open opens the object under key for verified reading. It is the only place objects
// are opened. A missing object is an error wrapping storage.ErrNotExist. Errors name
// the key.
func (r *Repo) open(ctx context.Context, key string) (*Object, error) {
	body, err := r.st.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	src, err := r.unlockFor(ctx, body)
	if err != nil {
		_ = body.Close() // read-only: the error is what matters
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	r.keysMu.Lock()
	dec := r.decrypt
	r.keysMu.Unlock()
	er, err := envelope.NewDecryptingReader(src, dec)
	if err != nil {
		_ = body.Close() // read-only: the error is what matters
		if errors.Is(err, storage.ErrNotExist) {
			// Opened, then gone while its header was read (a resumed read found
			// nothing): a failed read, never "not there".
			return nil, fmt.Errorf("%s: %w (%s)", key, ErrVanished, err.Error())
		}
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return &Object{body: body, er: er, key: key}, nil
}

// Read reads plain bytes.
func (o *Object) Read(p []byte) (int, error) { return o.er.Read(p) }

// Sum is the verified size and checksum, once Read has returned io.EOF.
func (o *Object) Sum() Sum { return o.er.Sum() }

// Key names the object for messages.
func (o *Object) Key() string { return o.key }

// Close releases the object. Reading is what verifies: Close reports nothing about
// the content.
func (o *Object) Close() error {
	err := o.er.Close()
	if cerr := o.body.Close(); err == nil {
		err = cerr
	}
	return err
}

// readTrailer reads only the trailer of the object under key: its plain size and
// checksum, in one ranged read.
func (r *Repo) readTrailer(ctx context.Context, key string) (Sum, error) {
	info, err := r.st.Stat(ctx, key)
	if err != nil {
		return Sum{}, err
	}
	if info.Size < envelope.Overhead {
		return Sum{}, fmt.Errorf("%w: %s is %d bytes", envelope.ErrCorrupt, key, info.Size)
	}
	rc, err := r.st.Get(ctx, key, info.Size-envelope.TrailerSize, envelope.TrailerSize)
	if err != nil {
		return Sum{}, err
	}
	defer func() { _ = rc.Close() }() // read-only: ParseTrailer checks what was read
	t := make([]byte, envelope.TrailerSize)
	if _, err := io.ReadFull(rc, t); err != nil {
		return Sum{}, fmt.Errorf("read trailer of %s: %w", key, err)
	}
	return envelope.ParseTrailer(t)
}

// Close closes the store underneath.
func (r *Repo) Close() error { return r.st.Close() }

// ProbeWrite writes, reads back and deletes a small object under check/: the
// repository is reachable and writable.
func (r *Repo) ProbeWrite(ctx context.Context) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	key := "check/probe-" + hex.EncodeToString(b[:])
	body := []byte("pgb check " + time.Now().UTC().Format(time.RFC3339Nano))
	if err := r.st.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{IfAbsent: true, Size: int64(len(body))}); err != nil {
		return err
	}
	defer func() { _ = r.st.Delete(context.WithoutCancel(ctx), key) }() // best effort: a leftover probe is harmless
	rc, err := r.st.Get(ctx, key, 0, -1)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }() // read-only: the bytes are compared below
	got, err := io.ReadAll(io.LimitReader(rc, int64(len(body))+1))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, body) {
		return errors.New("probe object read back differently")
	}
	return nil
}

// ProbeChecksums asks the store whether it accepts the S3 SDK's default request
// checksums. known is false for stores that have no such question (fs, GCS).
func (r *Repo) ProbeChecksums(ctx context.Context) (known, supported bool, err error) {
	p, ok := storage.Unwrap(r.st).(interface {
		ProbeChecksums(context.Context) (bool, error)
	})
	if !ok {
		return false, false, nil
	}
	supported, err = p.ProbeChecksums(ctx)
	return true, supported, err
}

// ProbeConditionalWrites asks the store whether it enforces put-if-absent itself.
// known is false for stores that cannot tell (or need not: fs, GCS).
func (r *Repo) ProbeConditionalWrites(ctx context.Context) (known, enforced bool, err error) {
	p, ok := storage.Unwrap(r.st).(interface {
		ProbeConditionalWrites(context.Context) (bool, error)
	})
	if !ok {
		return false, false, nil
	}
	enforced, err = p.ProbeConditionalWrites(ctx)
	return true, enforced, err
}
