package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// recorder records the keys read and the prefixes listed.
type recorder struct {
	storage.Store
	mu     sync.Mutex
	gets   []string
	listed []string
}

func (r *recorder) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.gets = append(r.gets, key)
	r.mu.Unlock()
	return r.Store.Get(ctx, key, off, length)
}

func (r *recorder) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	r.mu.Lock()
	r.listed = append(r.listed, prefix)
	r.mu.Unlock()
	return r.Store.List(ctx, prefix, fn)
}

// bigManifest is a backup with n files.
func bigManifest(name string, stop wal.LSN, n int) *Manifest {
	m := testManifest(name, stop)
	m.Files = nil
	for i := range n {
		m.Files = append(m.Files, File{Path: fmt.Sprintf("base/5/%d", 16384+i), Size: 8192, Mode: 0o600, CRC: fmt.Sprintf("%08x", i), Part: 1})
	}
	return m
}

// Listing backups costs one small read per backup: their summaries, never the
// manifests with their file lists.
func TestListingBackupsReadsSummariesNotManifests(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	for i, name := range []string{"a", "b", "c"} {
		if err := New(st, Options{}).PutBackup(ctx, bigManifest(name, wal.LSN(i+1)<<24, 5000)); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{Store: st}
	list, damaged, err := New(rec, Options{}).ListBackups(ctx)
	if err != nil || len(list) != 3 || len(damaged) != 0 {
		t.Fatalf("ListBackups = %v, %v, %v", list, damaged, err)
	}
	if len(rec.gets) != 3 {
		t.Errorf("listing 3 backups read %d objects (%v), want 3 summaries", len(rec.gets), rec.gets)
	}
	for _, k := range rec.gets {
		if !strings.HasSuffix(k, "/"+summaryName) {
			t.Errorf("listing backups read %s", k)
		}
	}
	if list[1].FileCount != 5000 || list[1].PartCount != 1 || list[1].Name != "b" {
		t.Errorf("summary of b = %+v", list[1])
	}
	m, err := New(st, Options{}).Manifest(ctx, list[1])
	if err != nil || len(m.Files) != 5000 {
		t.Fatalf("Manifest(b) = %v", err)
	}
}

// A backup written before summaries existed (the manifest alone) is listed from its
// manifest, with the same summary a new pgb would have written.
func TestABackupWithoutASummaryIsListedFromItsManifest(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	old := bigManifest("old", 1<<24, 3)
	old.Format = FormatVersion
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("old"), old); err != nil {
		t.Fatal(err)
	}
	list, damaged, err := New(st, Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 || len(damaged) != 0 {
		t.Fatalf("ListBackups = %v, %v, %v", list, damaged, err)
	}
	if list[0].FileCount != 3 || list[0].PartCount != 1 || list[0].StopLSN != old.StopLSN {
		t.Errorf("summary = %+v", list[0])
	}
	if _, err := New(st, Options{}).Manifest(ctx, list[0]); err != nil {
		t.Fatalf("Manifest of an old backup: %v", err)
	}
}

// A damaged summary does not make a backup unusable: the manifest, which is what makes
// the backup exist, is read instead.
func TestABackupWithADamagedSummaryIsListedFromItsManifest(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if err := New(st, Options{}).PutBackup(ctx, bigManifest("a", 1<<24, 3)); err != nil {
		t.Fatal(err)
	}
	fst := faulty.New(st, faulty.Rule{Op: faulty.Get, Key: SummaryKey("a"), Fault: faulty.Corrupt, Offset: 20})
	list, damaged, err := New(fst, Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 || len(damaged) != 0 || list[0].FileCount != 3 {
		t.Fatalf("ListBackups with a damaged summary = %v, %v, %v; want a listed from its manifest", list, damaged, err)
	}
}

// A summary that says something else than its manifest marks the backup damaged when
// it is about to be restored: restore must not plan with one and restore the other.
func TestASummaryThatDisagreesWithItsManifestIsDamage(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	m := bigManifest("a", 1<<24, 3)
	if err := New(st, Options{}).PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	forged := m.Summary
	forged.StopLSN += 1 << 24
	if err := st.Delete(ctx, SummaryKey("a")); err != nil {
		t.Fatal(err)
	}
	if err := New(st, Options{}).putJSON(ctx, SummaryKey("a"), forged); err != nil {
		t.Fatal(err)
	}
	list, _, err := New(st, Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListBackups = %v, %v", list, err)
	}
	if _, err := New(st, Options{}).Manifest(ctx, list[0]); !errors.Is(err, ErrDamagedBackup) {
		t.Fatalf("Manifest with a forged summary = %v, want ErrDamagedBackup", err)
	}
}

// A manifest whose counts disagree with its lists is damaged.
func TestAManifestWhoseCountsDisagreeIsDamaged(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	m := bigManifest("a", 1<<24, 3)
	m.Format, m.FileCount, m.PartCount = FormatVersion, 4, 1
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("a"), m); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Options{}).ReadManifest(ctx, "a"); !errors.Is(err, ErrDamagedBackup) {
		t.Fatalf("ReadManifest = %v, want ErrDamagedBackup", err)
	}
}

func putWAL(t *testing.T, r *Repo, name string) {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutWAL(context.Background(), f, strings.NewReader(name), int64(len(name))); err != nil {
		t.Fatal(err)
	}
}

// WAL can be listed by timeline and log without listing the whole archive.
func TestListingWALByRangeListsOnlyThatRange(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	for _, n := range []string{
		"000000010000000000000001", "0000000100000001000000FE", "000000010000000100000002.00000028.backup",
		"000000010000000200000000", "000000010000000200000001.partial", "000000010000000300000000",
		"00000002.history", "000000020000000100000005",
	} {
		putWAL(t, r, n)
	}
	// Not where pgb puts a file of that name: skipped.
	if err := st.Put(ctx, "wal/0000000100000001/000000010000000900000001", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Store: st}
	var got []string
	err := New(rec, Options{}).ListWALRange(ctx, 1, 1, 2, func(o WALObject) error {
		got = append(got, o.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "000000010000000100000002.00000028.backup,0000000100000001000000FE,000000010000000200000000,000000010000000200000001.partial"
	if strings.Join(got, ",") != want {
		t.Errorf("ListWALRange(1, 1, 2) = %v, want %s", got, want)
	}
	if strings.Join(rec.listed, ",") != "wal/0000000100000001/,wal/0000000100000002/" {
		t.Errorf("listed %v, want one listing per log", rec.listed)
	}
	var all []string
	if err := r.ListWAL(ctx, func(o WALObject) error { all = append(all, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Errorf("ListWAL = %v, want the 8 WAL files", all)
	}
	b, err := r.ReadHistory(ctx, 2)
	if err != nil || !bytes.Equal(b, []byte("00000002.history")) {
		t.Errorf("ReadHistory(2) = %q, %v", b, err)
	}
}

// The identity is read once per Repo.
func TestTheIdentityIsReadOnce(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if _, err := New(st, Options{}).EnsureIdentity(ctx, Identity{SystemID: 7, PGVersion: 15}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Store: st}
	r := New(rec, Options{})
	for range 3 {
		if id, err := r.Identity(ctx); err != nil || id.SystemID != 7 {
			t.Fatalf("Identity = %+v, %v", id, err)
		}
	}
	if len(rec.gets) != 1 {
		t.Errorf("3 Identity calls read pgb.json %d times, want 1", len(rec.gets))
	}
}

// A backup name pgb could not have written (from an object planted in the bucket) is
// listed as damaged, quoted, never printed raw.
func TestABackupNamePgbDoesNotWriteIsListedAsDamaged(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	m := bigManifest("x\tfake row", 1<<24, 1)
	m.Format = FormatVersion
	if err := r.putJSON(ctx, ManifestKey(m.Name), m); err != nil {
		t.Fatal(err)
	}
	list, damaged, err := r.ListBackups(ctx)
	if err != nil || len(list) != 0 || len(damaged) != 1 || damaged[0].Name != `"x\tfake row"` || !errors.Is(damaged[0].Err, ErrDamagedBackup) {
		t.Fatalf("ListBackups = %v, %+v, %v", list, damaged, err)
	}
}
