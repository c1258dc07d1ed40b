package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestEncryptsWhatHoldsTableDataOnly(t *testing.T) {
	for key, want := range map[string]bool{
		"wal/0000000100000000/000000010000000000000003":                        true,
		"wal/0000000100000000/000000010000000000000003.partial":                true,
		"wal/0000000100000000/000000010000000000000003.00000028.backup":        false,
		"wal/00000002.history":                                                 false,
		PartKey("20261203T030000Z", 1):                                         true,
		ManifestKey("20261203T030000Z"):                                        true,
		RelMapKey("20261203T030000Z"):                                          true,
		SummaryKey("20261203T030000Z"):                                         false,
		PermanentKey("20261203T030000Z"):                                       false,
		"restore-points/before_release.json":                                   false,
		"walsum/0000000100000000/000000010000000000000003":                     false,
		"drills/20261202T031502.123Z-0123456789abcdef-ok.json":                 false,
		"gaps/00000001/000000010000000000000004-000000010000000000000007.json": false,
		RecipientSetKey("0123456789abcdef"):                                    false,
		IdentityKey:                                                            false,
	} {
		if got := Encrypts(key); got != want {
			t.Errorf("Encrypts(%q) = %v, want %v", key, got, want)
		}
	}
}

// writerKeys are what a database host holds: recipients and the MAC key, no identity.
func writerKeys(t *testing.T) (writer, reader *crypt.Keys) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	mac, err := crypt.ParseMACKey(crypt.NewMACKey())
	if err != nil {
		t.Fatal(err)
	}
	r := id.Recipient()
	return crypt.New([]age.Recipient{r}, []string{r.String()}, nil, mac), crypt.New(nil, nil, []age.Identity{id}, nil)
}

// A writer that cannot decrypt still recognises a document it stored before (a retry
// after a lost acknowledgement) by its keyed tag, and refuses a different one.
func TestAWriterWithoutTheIdentityRecognisesItsOwnManifest(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	w, _ := writerKeys(t)
	r := New(st, Options{Keys: w, EncryptNew: true})
	key := ManifestKey("20261203T030000Z")
	doc := map[string]any{"name": "20261203T030000Z", "files": []string{"base/1/1259"}}
	if err := r.putOrSame(ctx, key, doc, "manifest"); err != nil {
		t.Fatal(err)
	}
	if err := New(st, Options{Keys: w, EncryptNew: true}).putOrSame(ctx, key, doc, "manifest"); err != nil {
		t.Fatalf("the same manifest again: %v", err)
	}
	doc["files"] = []string{"base/1/1260"}
	err := New(st, Options{Keys: w, EncryptNew: true}).putOrSame(ctx, key, doc, "manifest")
	if !errors.Is(err, storage.ErrExist) || !strings.Contains(err.Error(), "another backup's manifest") {
		t.Fatalf("a different manifest: %v", err)
	}
	// Nothing else can read it without the identity, not even the writer.
	if _, err := r.ReadManifest(ctx, "20261203T030000Z"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("reading without the identity: %v, want ErrNoKey", err)
	}
}

// Encryption without the keys to write fails every write of data; nothing is stored
// unencrypted instead.
func TestEncryptionWithoutRecipientsWritesNothing(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{EncryptNew: true})
	f, _ := wal.Parse("000000010000000000000001")
	if _, err := r.PutWAL(ctx, f, bytes.NewReader(make([]byte, 1024)), 1024); err == nil || !strings.Contains(err.Error(), "encryption-recipients") {
		t.Fatalf("PutWAL: %v", err)
	}
	if _, err := st.Stat(ctx, WALKey(f)); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("something was stored: %v", err)
	}
}

func putAndRead(t *testing.T, w, r *Repo, seg string, data []byte) error {
	t.Helper()
	ctx := context.Background()
	f, _ := wal.Parse(seg)
	if w != nil {
		if _, err := w.PutWAL(ctx, f, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	o, err := r.OpenWAL(ctx, f)
	if err != nil {
		return err
	}
	defer func() { _ = o.Close() }()
	got, err := io.ReadAll(o)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read back different bytes")
	}
	return nil
}

// Passphrase mode: the first write stores the repository's key sealed with the
// passphrase; a process with the passphrase reads and writes, a wrong passphrase
// reads nothing; a rotation keeps everything readable under the new passphrase, and
// what is written after it cannot be read with the old one.
func TestPassphraseModeAndItsRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("several scrypt runs of a second each")
	}
	ctx := context.Background()
	st := mem.New()
	codec, _ := compress.New("lz4", 0)
	const old, fresh = "correct horse battery staple", "a new and longer passphrase"
	pw := func(p string) *Repo { return New(st, Options{Codec: codec, EncryptNew: true, Passphrase: p}) }
	data := bytes.Repeat([]byte("row 42 "), 10000)
	a := pw(old)
	if err := putAndRead(t, a, a, "000000010000000000000001", data); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, PassphraseKeyKey(1)); err != nil {
		t.Fatalf("no passphrase key stored: %v", err)
	}
	if err := putAndRead(t, nil, pw(old), "000000010000000000000001", data); err != nil {
		t.Fatalf("another process with the passphrase: %v", err)
	}
	if err := putAndRead(t, nil, pw("not the passphrase at all"), "000000010000000000000001", data); !errors.Is(err, ErrNoKey) || !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("a wrong passphrase: %v, want ErrNoKey and ErrWrongPassphrase", err)
	}
	// A wrong passphrase must not make a second key either: writing fails.
	f2, _ := wal.Parse("000000010000000000000002")
	if _, err := pw("not the passphrase at all").PutWAL(ctx, f2, bytes.NewReader(data), int64(len(data))); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("writing with a wrong passphrase: %v", err)
	}
	if n, err := pw(old).RotatePassphrase(ctx, fresh); err != nil || n != 2 {
		t.Fatalf("rotate: %d, %v", n, err)
	}
	b := pw(fresh)
	if err := putAndRead(t, nil, b, "000000010000000000000001", data); err != nil {
		t.Fatalf("the new passphrase reads what the old key wrote: %v", err)
	}
	if err := putAndRead(t, b, b, "000000010000000000000003", data); err != nil {
		t.Fatal(err)
	}
	if err := putAndRead(t, nil, pw(old), "000000010000000000000003", data); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("the old passphrase on what the new key wrote: %v, want ErrWrongKey", err)
	}
}

// A passphrase that opens no key, or a store failing while the key is read, is never
// taken for damage: restore would otherwise skip the backup as damaged and restore an
// older one (found by review). Neither costs a second scrypt once the passphrase is
// known to be wrong.
func TestAPassphraseKeyThatDoesNotOpenIsNotDamage(t *testing.T) {
	if testing.Short() {
		t.Skip("scrypt runs of a second each")
	}
	ctx := context.Background()
	st := mem.New()
	const name = "20261203T030000Z"
	w := New(st, Options{EncryptNew: true, Passphrase: "correct horse battery staple"})
	if err := w.putOrSame(ctx, ManifestKey(name), map[string]any{"name": name}, "manifest"); err != nil {
		t.Fatal(err)
	}
	wrong := New(st, Options{Passphrase: "not the passphrase at all"})
	for i := 0; i < 2; i++ {
		_, err := wrong.ReadManifest(ctx, name)
		if !errors.Is(err, ErrNoKey) || !errors.Is(err, ErrWrongPassphrase) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrDamagedBackup) {
			t.Fatalf("wrong passphrase, read %d: %v; want ErrNoKey and ErrWrongPassphrase, not damage", i+1, err)
		}
	}
	boom := errors.New("connection reset")
	failing := New(faulty.New(st, faulty.Rule{Op: faulty.List, Key: "encryption/", Err: boom, Count: 1}), Options{Passphrase: "correct horse battery staple"})
	_, err := failing.ReadManifest(ctx, name)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNoKey) {
		t.Fatalf("store failing while the key is listed: %v; want the storage error", err)
	}
	if _, err := failing.ReadManifest(ctx, name); err != nil {
		t.Fatalf("once the store answers again: %v", err)
	}
}

// A repository created by an encrypting writer refuses writers that do not encrypt (a
// host whose config lost its encryption settings), with nothing stored (found by
// review).
func TestARepositoryCreatedEncryptedRefusesUnencryptedWriters(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	w, _ := writerKeys(t)
	enc := New(st, Options{Keys: w, EncryptNew: true})
	if _, err := enc.EnsureIdentity(ctx, Identity{SystemID: 7, PGVersion: 15}); err != nil {
		t.Fatal(err)
	}
	if id, _ := New(st, Options{}).Identity(ctx); id.Encryption != "age" {
		t.Fatalf("pgb.json says encryption %q, want age", id.Encryption)
	}
	plain := New(st, Options{})
	f, _ := wal.Parse("000000010000000000000001")
	if _, err := plain.PutWAL(ctx, f, bytes.NewReader(make([]byte, 1024)), 1024); !errors.Is(err, ErrMustEncrypt) {
		t.Fatalf("an unencrypted wal-push: %v, want ErrMustEncrypt", err)
	}
	if _, err := plain.CreatePart(ctx, "20261203T030000Z", 1); !errors.Is(err, ErrMustEncrypt) {
		t.Fatalf("an unencrypted backup part: %v, want ErrMustEncrypt", err)
	}
	if _, err := st.Stat(ctx, WALKey(f)); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("something was stored: %v", err)
	}
	// What status and backup-list read stays writable unencrypted (restore points).
	if err := plain.PutRestorePoint(ctx, RestorePoint{Name: "before_release"}); err != nil {
		t.Fatal(err)
	}
	// A repository created unencrypted takes both (encryption turned on later).
	st2 := mem.New()
	if _, err := New(st2, Options{}).EnsureIdentity(ctx, Identity{SystemID: 7, PGVersion: 15}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st2, Options{}).PutWAL(ctx, f, bytes.NewReader(make([]byte, 1024)), 1024); err != nil {
		t.Fatal(err)
	}
}

// Repos sharing a KeyRing (the look-ahead archiver makes one per segment) open the
// passphrase key once between them, not once each: a scrypt of a second and 256 MiB
// per segment would stall archiving (found by review).
func TestReposSharingAKeyRingOpenThePassphraseKeyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("a scrypt run of a second")
	}
	opened := 0
	counting := &countGets{Store: mem.New(), prefix: "encryption/passphrase-", n: &opened}
	ring := &KeyRing{}
	for i, seg := range []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"} {
		r := New(counting, Options{EncryptNew: true, Passphrase: "correct horse battery staple", KeyRing: ring})
		if err := putAndRead(t, r, r, seg, []byte("row")); err != nil {
			t.Fatalf("segment %d: %v", i+1, err)
		}
	}
	if opened > 1 {
		t.Fatalf("the passphrase key was read %d times, want at most once", opened)
	}
}

// countGets counts the Gets of keys under prefix.
type countGets struct {
	storage.Store
	prefix string
	n      *int
}

func (c *countGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, c.prefix) {
		*c.n++
	}
	return c.Store.Get(ctx, key, off, n)
}

// Repos sharing a KeyRing store the record of their recipient set once between them:
// the archiver's Repo per segment would otherwise add a request per segment.
func TestReposSharingAKeyRingRecordTheRecipientSetOnce(t *testing.T) {
	puts := 0
	st := &countPuts{Store: mem.New(), prefix: "encryption/recipients-", n: &puts}
	w, _ := writerKeys(t)
	ring := &KeyRing{}
	for _, seg := range []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"} {
		f, _ := wal.Parse(seg)
		if _, err := New(st, Options{Keys: w, EncryptNew: true, KeyRing: ring}).PutWAL(context.Background(), f, bytes.NewReader([]byte("row")), 3); err != nil {
			t.Fatal(err)
		}
	}
	if puts != 1 {
		t.Fatalf("the recipient set record was put %d times, want once", puts)
	}
}

// countPuts counts the Puts of keys under prefix.
type countPuts struct {
	storage.Store
	prefix string
	n      *int
}

func (c *countPuts) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) error {
	if strings.HasPrefix(key, c.prefix) {
		*c.n++
	}
	return c.Store.Put(ctx, key, r, o)
}
