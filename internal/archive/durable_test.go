package archive

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A push killed after link(2) but before the directory fsync leaves a visible object
// that a crash can still lose. PostgreSQL retries the push, which finds identical
// content: it must make the object durable before it reports success, since
// PostgreSQL then recycles the segment.
func TestDuplicatePushMakesTheArchivedSegmentDurable(t *testing.T) {
	ctx := context.Background()
	dir := dataDir(t, 42)
	const name = "000000010000000000000005"
	p := writeWAL(t, dir, name, segment(42, 5))

	// What the killed push had written: the object and the identity, unsynced.
	ref := mem.New()
	res, err := newArchive(t, ref, "lz4").Push(ctx, p, cluster(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "repo")
	for _, key := range []string{res.Key, "pgb.json"} {
		f := filepath.Join(root, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, get(t, ref, key), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var synced []string
	st, err := fs.NewWithOptions(root, fs.Options{Fsync: func(f *os.File) error {
		mu.Lock()
		synced = append(synced, f.Name())
		mu.Unlock()
		return f.Sync()
	}})
	if err != nil {
		t.Fatal(err)
	}
	res, err = newArchive(t, st, "lz4").Push(ctx, p, cluster(t, dir))
	if err != nil || !res.Duplicate {
		t.Fatalf("retried push: %+v, %v; want a duplicate", res, err)
	}
	obj := filepath.Join(root, filepath.FromSlash(res.Key))
	for _, want := range []string{obj, filepath.Dir(obj), filepath.Join(root, "wal"), root} {
		if !slices.Contains(synced, want) {
			t.Errorf("%s not fsynced before the duplicate push succeeded (synced: %q)", want, synced)
		}
	}
}
