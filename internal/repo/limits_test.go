package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// putBomb stores at key a valid zstd envelope whose JSON decodes to n bytes: a small
// object that would take gigabytes of memory to read whole.
func putBomb(t *testing.T, st storage.Store, key string, n int) int64 {
	t.Helper()
	codec, err := compress.New("zstd", 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, codec)
	if err != nil {
		t.Fatal(err)
	}
	head, tail := []byte(`{"format":1,"name":"bomb","backup_label":"`), []byte(`"}`)
	write := func(b []byte) {
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(head)
	chunk := bytes.Repeat([]byte("A"), 1<<20)
	for left := n - len(head) - len(tail); left > 0; left -= len(chunk) {
		write(chunk[:min(left, len(chunk))])
	}
	write(tail)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), key, bytes.NewReader(buf.Bytes()), storage.PutOptions{Size: int64(buf.Len())}); err != nil {
		t.Fatal(err)
	}
	return int64(buf.Len())
}

// A small manifest that decodes to far more than any real one is refused once the
// limit is reached, without reading (or holding) the rest.
func TestManifestDecompressionBombIsRefused(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	stored := putBomb(t, st, ManifestKey("bomb"), 300<<20)
	if stored > 1<<20 {
		t.Fatalf("the bomb is %d bytes stored; want a small object", stored)
	}
	if err := New(st, Options{}).PutBackup(ctx, testManifest("good", 0x2000000)); err != nil {
		t.Fatal(err)
	}
	_, err := New(st, Options{}).ReadManifest(ctx, "bomb")
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrDamagedBackup) || !strings.Contains(err.Error(), "manifest") ||
		!strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("ReadManifest of a bomb = %v; want ErrTooLarge naming the manifest and the limit", err)
	}
	t.Log(err)
	list, damaged, err := New(st, Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "good" || len(damaged) != 1 || !errors.Is(damaged[0].Err, ErrTooLarge) {
		t.Fatalf("ListBackups with a bomb = %v, %v, %v; want good listed and bomb damaged", list, damaged, err)
	}
}

func TestManifestLimit(t *testing.T) {
	for _, tc := range []struct{ stored, want int64 }{
		{0, 64 << 20}, {417 << 10, 64 << 20}, {1 << 20, 128 << 20}, {4 << 20, 512 << 20},
		{8 << 20, 1 << 30}, {100 << 20, 1 << 30}, {-1, 1 << 30}, {1 << 62, 1 << 30},
	} {
		if got := manifestLimit(tc.stored); got != tc.want {
			t.Errorf("manifestLimit(%d) = %d, want %d", tc.stored, got, tc.want)
		}
	}
}

func TestSmallDocumentsAreReadThroughALimit(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	putBomb(t, st, restorePointKey("bomb"), 8<<20)
	if _, err := New(st, Options{}).ReadRestorePoint(ctx, "bomb"); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "restore-points/bomb.json") {
		t.Errorf("ReadRestorePoint of a bomb = %v; want ErrTooLarge naming it", err)
	}
	big := `{"format":1,"system_identifier":"1","pg_version":15,"created_by":"` + strings.Repeat("x", 2<<20) + `"}`
	if err := st.Put(ctx, IdentityKey, strings.NewReader(big), storage.PutOptions{Size: int64(len(big))}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Options{}).Identity(ctx); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), IdentityKey) {
		t.Errorf("ReadIdentity of an oversized pgb.json = %v; want ErrTooLarge naming it", err)
	}
	lock := `{"host":"` + strings.Repeat("h", 2<<20) + `","pid":1}`
	if err := st.Put(ctx, backupLockKey, strings.NewReader(lock), storage.PutOptions{Size: int64(len(lock))}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readLock(ctx, st); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), backupLockKey) {
		t.Errorf("readLock of an oversized lock = %v; want ErrTooLarge naming it", err)
	}
}
