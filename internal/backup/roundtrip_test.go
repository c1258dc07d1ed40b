package backup

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// backupAndRestore backs fx up into a fresh repository and restores the backup into a
// new directory, which it returns; the tablespace goes to a new location too.
func backupAndRestore(t *testing.T, fx backupFixture) string {
	t.Helper()
	ctx := context.Background()
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	if _, err := newPusher(st, src, fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Run(ctx); err != nil {
		t.Fatal(err)
	}
	rp := repo.New(st, repo.Options{})
	list, _, err := rp.ListBackups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListBackups = %v, %v", names(list), err)
	}
	m, err := rp.Manifest(ctx, list[0])
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "restored")
	r := &restore.Restorer{Repo: rp, Log: slog.New(slog.DiscardHandler), Opt: restore.Options{
		DataDir: dir, TablespaceMap: map[string]string{fx.spcDir: filepath.Join(base, "spc")}, Concurrency: 2,
	}}
	if err := r.Run(ctx, m); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return dir
}

// checkRestored compares every file fx wants with the restored directory, byte for
// byte, under its exact name.
func checkRestored(t *testing.T, fx backupFixture, dir string) {
	t.Helper()
	for p, want := range fx.want {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			t.Errorf("restored %q: %v", p, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("restored %q differs", p)
		}
	}
}

func TestFileNamesThatAreNotUTF8SurviveBackupAndRestore(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, map[string][]byte{
		"base/5/16384_\xff":       []byte("a name with byte 0xff in a database directory"),
		"caf\xe9/conf\xff.d/x":    []byte("a top-level directory and a file below it, Latin-1 names"),
		"pg_logical/snap\xfe.tmp": nil,
	})
	dir := backupAndRestore(t, fx)
	checkRestored(t, fx, dir)
	if fi, err := os.Stat(filepath.Join(dir, "caf\xe9", "conf\xff.d")); err != nil || !fi.IsDir() {
		t.Errorf("directory caf\\xe9/conf\\xff.d not restored under its exact name: %v", err)
	}
}

// An in-place tablespace (allow_in_place_tablespaces) is a directory under pg_tblspc,
// not a link: PostgreSQL leaves it out of tablespace_map, and a restore recreates it
// where it was.
func TestInPlaceTablespaceSurvivesBackupAndRestore(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, map[string][]byte{
		"pg_tblspc/16500/PG_15_202209061/5/16501": randomBytes(9, 20_000),
	})
	dir := backupAndRestore(t, fx)
	checkRestored(t, fx, dir)
	if fi, err := os.Lstat(filepath.Join(dir, "pg_tblspc", "16500")); err != nil || !fi.IsDir() {
		t.Errorf("pg_tblspc/16500 restored as %v, %v; want a directory", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tablespace_map")); err != nil || bytes.Contains(b, []byte("16500")) {
		t.Errorf("tablespace_map = %q, %v; want only the linked tablespace", b, err)
	}
}

// A restore writes its record (.pgb-restored) before it puts global/pg_control in
// place, its last step: a restore killed while writing the record leaves its
// temporary file in a directory without pg_control, never in a finished one. (The
// kill test found one: pg_control there, and .pgb-tmp-.pgb-restored-… beside it.)
func TestRestoreRecordIsOnDiskBeforePgControl(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	dir := backupAndRestore(t, fx)
	ctime := func(rel string) int64 {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return st.Ctim.Nano()
	}
	if rec, ctl := ctime(restore.RecordFile), ctime("global/pg_control"); rec > ctl {
		t.Fatalf("the record changed at %d, after pg_control appeared at %d", rec, ctl)
	}
}
