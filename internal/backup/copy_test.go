package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A backup copied into another repository is that repository's own: written with its
// compression, restorable from it alone, byte for byte; a second copy finds it there
// and writes nothing. A part that does not verify, or a stop segment the destination
// does not have, fails the copy and leaves nothing of the backup there.
func TestCopiedBackupRestoresFromTheOtherRepositoryAlone(t *testing.T) {
	ctx := context.Background()
	fx, st, m := pushedBackup(t)
	if len(m.Parts) < 2 {
		t.Fatalf("the fixture makes %d part(s); the test wants several", len(m.Parts))
	}
	from := repo.New(st, repo.Options{})
	zstd, err := compress.New("zstd", 0)
	if err != nil {
		t.Fatal(err)
	}
	dstStore := mem.New()
	putWAL(t, dstStore, "000000010000000000000002")
	dst := repo.New(dstStore, repo.Options{Codec: zstd})
	opt := CopyOptions{Concurrency: 2, ArchiveTimeout: 2 * time.Second}
	copied, err := Copy(ctx, from, dst, m.Name, opt)
	if err != nil || len(copied) != 1 || copied[0].Already || copied[0].Stored == 0 {
		t.Fatalf("Copy = %+v, %v", copied, err)
	}
	list, _, err := dst.ListBackups(ctx)
	if err != nil || len(list) != 1 || list[0].Name != m.Name || list[0].Compression != "zstd" || list[0].StoredSize != copied[0].Stored {
		t.Fatalf("destination lists %+v, %v", list, err)
	}
	restoreAndCheck(t, dst, list[0], fx)

	if again, err := Copy(ctx, from, dst, m.Name, opt); err != nil || len(again) != 1 || !again[0].Already {
		t.Fatalf("second Copy = %+v, %v; want it found there", again, err)
	}

	// A damaged part in the source: the copy fails, nothing of the backup is left.
	damaged := mem.New()
	putWAL(t, damaged, "000000010000000000000002")
	key := repo.PartKey(m.Name, 2)
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	bad := bytes.Clone(b)
	bad[len(bad)/2] ^= 0x55
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.Delete(ctx, key))
	must(st.Put(ctx, key, bytes.NewReader(bad), storage.PutOptions{Size: -1}))
	if _, err := Copy(ctx, from, repo.New(damaged, repo.Options{Codec: zstd}), m.Name, opt); err == nil {
		t.Fatal("a damaged part was copied")
	}
	if keys := allKeys(t, damaged, repo.BackupPrefix(m.Name)); len(keys) != 0 {
		t.Fatalf("a failed copy left %v", keys)
	}
	must(st.Delete(ctx, key))
	must(st.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{Size: -1}))

	// The destination lacks the stop segment: no manifest, nothing left.
	noWAL := mem.New()
	opt.ArchiveTimeout = 50 * time.Millisecond
	if _, err := Copy(ctx, from, repo.New(noWAL, repo.Options{Codec: zstd}), m.Name, opt); err == nil || !strings.Contains(err.Error(), "did not reach") {
		t.Fatalf("copy without the stop segment there: %v", err)
	}
	if keys := allKeys(t, noWAL, repo.BackupPrefix(m.Name)); len(keys) != 0 {
		t.Fatalf("a copy without its WAL left %v", keys)
	}
}

// A copy into a repository that encrypts is encrypted there with its own keys:
// unreadable without them, restorable with them.
func TestCopyIntoAnEncryptingRepositoryEncrypts(t *testing.T) {
	ctx := context.Background()
	fx, st, m := pushedBackup(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	mac, err := crypt.ParseMACKey(crypt.NewMACKey())
	if err != nil {
		t.Fatal(err)
	}
	keys := crypt.New([]age.Recipient{id.Recipient()}, []string{id.Recipient().String()}, []age.Identity{id}, mac)
	dstStore := mem.New()
	putWAL(t, dstStore, "000000010000000000000002")
	codec, _ := compress.New("lz4", 0)
	if _, err := Copy(ctx, repo.New(st, repo.Options{}), repo.New(dstStore, repo.Options{Codec: codec, Keys: keys, EncryptNew: true}), m.Name,
		CopyOptions{Concurrency: 2, ArchiveTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(mustOpenPart(t, repo.New(dstStore, repo.Options{}), m.Name)); !errors.Is(err, repo.ErrNoKey) {
		t.Fatalf("a copied part read without a key: %v, want ErrNoKey", err)
	}
	dst := repo.New(dstStore, repo.Options{Keys: keys})
	list, _, err := dst.ListBackups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListBackups = %v, %v", names(list), err)
	}
	restoreAndCheck(t, dst, list[0], fx)
}

// mustOpenPart opens part 1 of backup in rp, or fails with what opening it says.
func mustOpenPart(t *testing.T, rp *repo.Repo, backup string) io.Reader {
	t.Helper()
	o, err := rp.OpenPart(context.Background(), backup, repo.Part{N: 1})
	if err != nil {
		return errReader{err}
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// Each repository names its own backups by their start time: the copy of a backup
// into a repository where another backup has its name goes in under name-copy, and a
// later copy finds it there by what it is, not by its name.
func TestCopyWhereTheNameIsTakenByAnotherBackup(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, dstStore := mem.New(), mem.New()
	putWAL(t, st, "000000010000000000000002")
	putWAL(t, dstStore, "000000010000000000000002")
	m, err := newPusher(st, newFakeSource(fx.dataDir), fx.dataDir, 16<<10, 2, at).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	own := newFakeSource(fx.dataDir)
	own.stopLSN = 0x2000200 // the destination's own backup, taken in the same second
	if om, err := newPusher(dstStore, own, fx.dataDir, 16<<10, 2, at).Run(ctx); err != nil || om.Name != m.Name {
		t.Fatalf("the destination's own backup: %v (named %v)", err, om)
	} else {
		_ = om.Close()
	}
	dst := repo.New(dstStore, repo.Options{})
	opt := CopyOptions{Concurrency: 2, ArchiveTimeout: time.Second}
	copied, err := Copy(ctx, repo.New(st, repo.Options{}), dst, m.Name, opt)
	if err != nil || len(copied) != 1 || copied[0].Name != m.Name+"-copy" {
		t.Fatalf("Copy = %+v, %v; want it in as %s-copy", copied, err, m.Name)
	}
	list, _, err := dst.ListBackups(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("destination lists %v, %v", names(list), err)
	}
	for _, s := range list {
		got, err := dst.Manifest(ctx, s)
		if err != nil {
			t.Fatalf("backup %s: %v", s.Name, err)
		}
		if s.Name == m.Name+"-copy" && (got.StopLSN != m.StopLSN || got.Name != s.Name) {
			t.Errorf("the copy holds %s stopping at %s", got.Name, got.StopLSN)
		}
	}
	if again, err := Copy(ctx, repo.New(st, repo.Options{}), dst, m.Name, opt); err != nil || len(again) != 1 || !again[0].Already || again[0].Name != m.Name+"-copy" {
		t.Fatalf("second Copy = %+v, %v; want it found as %s-copy", again, err, m.Name)
	}
}

// pushedBackup is a backup of a new fixture in a new repository, whose stop segment
// it holds.
func pushedBackup(t *testing.T) (backupFixture, *mem.Store, *repo.Manifest) {
	t.Helper()
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	m, err := newPusher(st, src, fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return fx, st, m
}

// restoreAndCheck restores backup s of rp into a new directory and checks that it
// holds fx's files byte for byte.
func restoreAndCheck(t *testing.T, rp *repo.Repo, s *repo.Summary, fx backupFixture) {
	t.Helper()
	m, err := rp.Manifest(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	r := &restore.Restorer{Repo: rp, Log: slog.New(slog.DiscardHandler), Opt: restore.Options{
		DataDir: filepath.Join(base, "restored"), TablespaceMap: map[string]string{fx.spcDir: filepath.Join(base, "spc")}, Concurrency: 2,
	}}
	if err := r.Run(context.Background(), m); err != nil {
		t.Fatalf("restore of backup %s: %v", s.Name, err)
	}
	checkRestored(t, fx, filepath.Join(base, "restored"))
}
