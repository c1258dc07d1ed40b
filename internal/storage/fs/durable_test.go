package fs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
)

// syncRecorder records the paths the store fsyncs, and fails those in fail.
type syncRecorder struct {
	mu     sync.Mutex
	synced []string
	fail   string
}

func (r *syncRecorder) fsync(f *os.File) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced = append(r.synced, f.Name())
	if r.fail != "" && f.Name() == r.fail {
		return errors.New("injected fsync failure")
	}
	return f.Sync()
}

// A put-if-absent that finds an object left by a writer killed between link(2) and
// the directory fsync makes that object durable before it answers ErrExist.
func TestIfAbsentMakesTheExistingObjectDurable(t *testing.T) {
	ctx := context.Background()
	rec := &syncRecorder{}
	r := filepath.Join(t.TempDir(), "repo")
	s, err := fs.NewWithOptions(r, fs.Options{Fsync: rec.fsync})
	if err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(r, "wal", "0000000100000000", "000000010000000000000001")
	if err := os.MkdirAll(filepath.Dir(obj), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("segment"), 0o600); err != nil { // visible, never synced
		t.Fatal(err)
	}
	err = s.Put(ctx, "wal/0000000100000000/000000010000000000000001", strings.NewReader("segment"), storage.PutOptions{IfAbsent: true, Size: 7})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("Put = %v, want ErrExist", err)
	}
	for _, p := range []string{obj, filepath.Dir(obj), filepath.Join(r, "wal"), r} {
		if !slices.Contains(rec.synced, p) {
			t.Errorf("%s was not fsynced before ErrExist (synced: %q)", p, rec.synced)
		}
	}

	// When the existing object cannot be made durable, the answer is not ErrExist:
	// the caller must not count it as stored.
	rec.fail = filepath.Dir(obj)
	err = s.Put(ctx, "wal/0000000100000000/000000010000000000000001", strings.NewReader("segment"), storage.PutOptions{IfAbsent: true, Size: 7})
	if err == nil || errors.Is(err, storage.ErrExist) {
		t.Fatalf("Put with a failing fsync = %v, want an error that is not ErrExist", err)
	}
}

// Temp files left by killed writers are removed by the next Put into their
// directory once they are older than StaleTempAge; younger ones may be a live
// writer's and stay.
func TestPutRemovesStaleTempFiles(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	dir := filepath.Join(root(t, s), "wal", "0000000100000000")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, young := filepath.Join(dir, ".tmp-killed"), filepath.Join(dir, ".tmp-live")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, make([]byte, 1024), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-fs.StaleTempAge - time.Minute)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "wal/0000000100000000/000000010000000000000002", strings.NewReader("x"), storage.PutOptions{IfAbsent: true, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temp file after a Put: %v, want it removed", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("young temp file: %v, want it kept", err)
	}
}

// A killed backup leaves temp files in a directory nothing writes again: only
// RemoveStaleTemps removes them (the kill test's scale-10 run filled gigabytes with
// them). Young ones and real objects stay.
func TestRemoveStaleTempsCleansWhatKilledBackupsLeft(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	r := root(t, s)
	killed := filepath.Join(r, "backups", "20261203T035758Z")
	live := filepath.Join(r, "backups", "20261203T041356Z")
	for _, d := range []string{killed, live} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(killed, ".tmp-660862890")
	if err := os.WriteFile(old, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	young := filepath.Join(live, ".tmp-1")
	if err := os.WriteFile(young, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "backups/20261203T041356Z/summary", strings.NewReader("s"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	n, b, err := s.RemoveStaleTemps(ctx, "backups/", time.Now().Add(-time.Hour), false)
	if err != nil || n != 1 || b != 4096 {
		t.Fatalf("dry run: %d files, %d bytes, %v; want 1, 4096", n, b, err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("a dry run removed it: %v", err)
	}
	if n, _, err := s.RemoveStaleTemps(ctx, "backups/", time.Now().Add(-time.Hour), true); err != nil || n != 1 {
		t.Fatalf("remove: %d, %v", n, err)
	}
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Fatalf("the killed backup's directory: %v, want it gone", err)
	}
	for _, p := range []string{young, filepath.Join(live, "summary")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v, want it kept", p, err)
		}
	}
	if n, _, err := s.RemoveStaleTemps(ctx, "nothing-here/", time.Now(), true); err != nil || n != 0 {
		t.Fatalf("a missing prefix: %d, %v", n, err)
	}
}
