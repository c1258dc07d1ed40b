package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/waltest"
)

const segSize = waltest.SegSize

var (
	segment  = waltest.Segment
	dataDir  = waltest.DataDir
	writeWAL = waltest.WriteWAL
)

func newArchive(t testing.TB, st storage.Store, codec string) *Archive {
	t.Helper()
	c, err := compress.New(codec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &Archive{Repo: repo.New(st, repo.Options{Codec: c}), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func cluster(t testing.TB, dir string) *Cluster {
	t.Helper()
	c, err := ClusterFromDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestPushThenFetchIsByteIdenticalForEveryCodec(t *testing.T) {
	ctx := context.Background()
	for _, codec := range compress.Names() {
		st := mem.New()
		a := newArchive(t, st, codec)
		dir := dataDir(t, 42)
		seg := segment(42, 1)
		const name = "000000010000000000000003"
		res, err := a.Push(ctx, writeWAL(t, dir, name, seg), cluster(t, dir))
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		if res.Key != "wal/0000000100000000/"+name || res.Duplicate || res.Size != segSize {
			t.Errorf("%s: result %+v", codec, res)
		}
		if codec != "none" && res.Stored >= segSize/2 {
			t.Errorf("%s: stored %d bytes of a compressible segment", codec, res.Stored)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if _, err := a.Fetch(ctx, name, dest); err != nil {
			t.Fatalf("%s fetch: %v", codec, err)
		}
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(got, seg) {
			t.Fatalf("%s: fetched segment differs", codec)
		}
		id, err := repo.New(st, repo.Options{}).Identity(ctx)
		if err != nil || id.SystemID != 42 || id.PGVersion != 15 {
			t.Fatalf("%s: identity %+v, %v", codec, id, err)
		}
	}
}

func TestHistoryAndBackupFilesNeedTheDataDirectory(t *testing.T) {
	ctx := context.Background()
	a := newArchive(t, mem.New(), "lz4")
	dir := dataDir(t, 42)
	hist := writeWAL(t, dir, "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"))
	if _, err := a.Push(ctx, hist, nil); err == nil || !strings.Contains(err.Error(), "--pgdata") {
		t.Fatalf("history without data dir: %v", err)
	}
	if _, err := a.Push(ctx, hist, cluster(t, dir)); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYHISTORY")
	if _, err := a.Fetch(ctx, "00000002.history", dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !strings.HasPrefix(string(got), "1\t0/3000000") {
		t.Fatalf("history = %q", got)
	}
}

func TestDuplicatePushSucceedsAndDifferentContentIsRefused(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := newArchive(t, st, "lz4")
	dir := dataDir(t, 42)
	const name = "000000010000000000000007"
	p := writeWAL(t, dir, name, segment(42, 7))
	if _, err := a.Push(ctx, p, cluster(t, dir)); err != nil {
		t.Fatal(err)
	}
	// Same content, even written with another codec, is a duplicate.
	res, err := newArchive(t, st, "zstd").Push(ctx, p, cluster(t, dir))
	if err != nil || !res.Duplicate {
		t.Fatalf("duplicate push: %+v, %v", res, err)
	}
	before := get(t, st, "wal/0000000100000000/"+name)
	writeWAL(t, dir, name, segment(42, 8))
	_, err = a.Push(ctx, p, cluster(t, dir))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting push: %v", err)
	}
	if !bytes.Equal(before, get(t, st, "wal/0000000100000000/"+name)) {
		t.Fatal("stored object changed")
	}
}

func get(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

func TestForeignClusterIsRefused(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := newArchive(t, st, "lz4")
	d1, d2 := dataDir(t, 1), dataDir(t, 2)
	if _, err := a.Push(ctx, writeWAL(t, d1, "000000010000000000000001", segment(1, 1)), cluster(t, d1)); err != nil {
		t.Fatal(err)
	}
	_, err := a.Push(ctx, writeWAL(t, d2, "000000010000000000000002", segment(2, 1)), cluster(t, d2))
	if !errors.Is(err, repo.ErrForeignCluster) {
		t.Fatalf("foreign cluster: %v", err)
	}
	// A segment whose header names another cluster than the data directory.
	_, err = a.Push(ctx, writeWAL(t, d1, "000000010000000000000003", segment(2, 1)), cluster(t, d1))
	if !errors.Is(err, repo.ErrForeignCluster) {
		t.Fatalf("segment of another cluster: %v", err)
	}
	// Without a data directory the segment header decides.
	_, err = a.Push(ctx, writeWAL(t, d2, "000000010000000000000004", segment(2, 1)), nil)
	if !errors.Is(err, repo.ErrForeignCluster) {
		t.Fatalf("header-identified foreign segment: %v", err)
	}
	if _, err := st.Stat(ctx, "wal/0000000100000000/000000010000000000000002"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("foreign segment stored: %v", err)
	}
}

func TestTruncatedSegmentIsRefused(t *testing.T) {
	a := newArchive(t, mem.New(), "lz4")
	dir := dataDir(t, 42)
	p := writeWAL(t, dir, "000000010000000000000001", segment(42, 1)[:8<<20])
	if _, err := a.Push(context.Background(), p, cluster(t, dir)); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("half segment: %v", err)
	}
}

func TestFetchOutcomes(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := newArchive(t, st, "lz4")
	dir := dataDir(t, 42)
	const name = "000000010000000000000001"
	if _, err := a.Push(ctx, writeWAL(t, dir, name, segment(42, 1)), cluster(t, dir)); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	dest := filepath.Join(out, "x")

	if _, err := a.Fetch(ctx, "000000010000000000000002", dest); !errors.Is(err, ErrNotArchived) {
		t.Errorf("missing: %v", err)
	}
	empty := newArchive(t, mem.New(), "lz4")
	if _, err := empty.Fetch(ctx, name, dest); !errors.Is(err, repo.ErrNoIdentity) || errors.Is(err, ErrNotArchived) {
		t.Errorf("uninitialised repository must not look like end of archive: %v", err)
	}

	// A corrupted byte: ErrCorrupt, no retry, nothing written.
	fst := faulty.New(st, faulty.Rule{Op: faulty.Get, Fault: faulty.Corrupt, Offset: 1000})
	if _, err := newArchive(t, fst, "lz4").Fetch(ctx, name, dest); !errors.Is(err, repo.ErrCorrupt) {
		t.Errorf("corrupt: %v", err)
	}
	if fst.Calls(faulty.Get) != 1 {
		t.Errorf("corrupt object fetched %d times, want 1", fst.Calls(faulty.Get))
	}
	assertEmptyDir(t, out)

	// A body cut off twice, then whole: resumed by the store's retry layer, verified,
	// written.
	noWait := func(context.Context, time.Duration) error { return nil }
	fst = faulty.New(st, faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 5000, Count: 2})
	if _, err := newArchive(t, retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: noWait}), "lz4").Fetch(ctx, name, dest); err != nil {
		t.Fatalf("transient truncation: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, waltest.Stamped(name, segment(42, 1))) {
		t.Fatal("fetched after retries differs")
	}
	os.Remove(dest)

	// Cut off every time: fails after the retry layer's attempts — and only those:
	// attempts must not multiply with a retry loop of Fetch's own — not ErrNotArchived.
	fst = faulty.New(st, faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 5000})
	_, err := newArchive(t, retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: noWait}), "lz4").Fetch(ctx, name, dest)
	if err == nil || errors.Is(err, ErrNotArchived) || fst.Calls(faulty.Get) != 3 {
		t.Fatalf("persistent truncation: %v after %d gets", err, fst.Calls(faulty.Get))
	}
	assertEmptyDir(t, out)

	// A store that keeps failing to open objects is not "not archived" either.
	broken := retry.New(faulty.New(st, faulty.Rule{Op: faulty.Get}), retry.Config{MaxAttempts: 2,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if _, err := newArchive(t, broken, "lz4").Fetch(ctx, name, dest); err == nil || errors.Is(err, ErrNotArchived) {
		t.Fatalf("unreachable store: %v", err)
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("%s not empty: %v", dir, ents)
	}
}

func TestPushDoesNotRetryForeverOnAFailingStore(t *testing.T) {
	ctx := context.Background()
	fst := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put})
	st := retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	a := newArchive(t, st, "lz4")
	dir := dataDir(t, 42)
	_, err := a.Push(ctx, writeWAL(t, dir, "000000010000000000000001", segment(42, 1)), cluster(t, dir))
	if err == nil {
		t.Fatal("push succeeded on a store that fails every put")
	}
	if n := fst.Calls(faulty.Put); n != 3 {
		t.Fatalf("identity put attempted %d times, want 3", n)
	}
}

// A file missing from the repository is the end of the archive only for the cluster
// the repository belongs to: for the data directory of another cluster it is a wrong
// repository (repo.ErrForeignCluster), which must stop recovery.
func TestFetchOfAMissingFileFromAnotherClustersRepository(t *testing.T) {
	st := repoWith(t, "000000010000000000000009", nil) // bound to cluster 42
	for _, c := range []struct {
		dir  string
		want error
	}{
		{dataDir(t, 43), repo.ErrForeignCluster},
		{dataDir(t, 42), ErrNotArchived},
		{t.TempDir(), ErrNotArchived}, // not a data directory: nothing to compare
		{"", ErrNotArchived},
	} {
		a := newArchive(t, st, "lz4")
		a.DataDir = c.dir
		_, err := a.Fetch(context.Background(), "000000010000000000000002", filepath.Join(t.TempDir(), "RECOVERYXLOG"))
		if !errors.Is(err, c.want) {
			t.Errorf("DataDir %q: Fetch = %v, want %v", c.dir, err, c.want)
		}
	}
}

// A file in pg_wal under a segment's name whose content is another segment (PostgreSQL
// recycles old segment files under future names; a copy under the wrong name) is refused:
// stored, it would be wrong bytes in the archive, and the real segment would then be
// refused as a conflict.
func TestSegmentWhoseHeaderIsForAnotherPositionIsRefused(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := newArchive(t, st, "lz4")
	dir := dataDir(t, 42)
	recycled := waltest.Stamped("000000010000000000000002", segment(42, 1))
	_, err := a.Push(ctx, writeWAL(t, dir, "000000010000000000000009", recycled), cluster(t, dir))
	if !errors.Is(err, ErrNotThisSegment) {
		t.Fatalf("recycled segment: %v, want ErrNotThisSegment", err)
	}
	if _, err := st.Stat(ctx, "wal/0000000100000000/000000010000000000000009"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("recycled segment stored: %v", err)
	}
	// The real segment 9 is then archived.
	if _, err := a.Push(ctx, writeWAL(t, dir, "000000010000000000000009", segment(42, 9)), cluster(t, dir)); err != nil {
		t.Fatal(err)
	}
}
