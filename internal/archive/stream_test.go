package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/waltest"
)

// A segment wal-stream stored only as chunks is fetched as the bytes streamed from its
// start, zero-padded to the segment's size: chunks that overlap (a stream restarted
// from the segment's start) are used once, and a chunk past a hole is not used.
func TestFetchOfAStreamedSegmentGivesItsChunksZeroPadded(t *testing.T) {
	ctx := context.Background()
	for _, codec := range []string{"none", "zstd"} {
		st := mem.New()
		a := newArchive(t, st, codec)
		dir := dataDir(t, 42)
		a.DataDir = dir
		const name = "000000010000000000000007"
		seg := waltest.Stamped(name, segment(42, 7))
		f, _ := wal.Parse(name)
		if _, err := a.Repo.EnsureIdentity(ctx, repo.Identity{SystemID: 42, PGVersion: 15, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		for _, c := range [][2]int{{0, 100_000}, {100_000, 300_000}, {0, 200_000}, {500_000, 600_000}} {
			if err := a.Repo.PutWALChunk(ctx, f, int64(c[0]), seg[c[0]:c[1]]); err != nil {
				t.Fatal(err)
			}
		}
		// The same chunk again is an identical duplicate; other bytes under its offsets are not.
		if err := a.Repo.PutWALChunk(ctx, f, 0, seg[:100_000]); err != nil {
			t.Fatalf("%s: identical chunk again: %v", codec, err)
		}
		other := bytes.Clone(seg[:100_000])
		other[5000] ^= 1
		if err := a.Repo.PutWALChunk(ctx, f, 0, other); !errors.Is(err, repo.ErrChunkConflict) {
			t.Fatalf("%s: a different chunk under the same offsets: %v, want ErrChunkConflict", codec, err)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if _, err := a.Fetch(ctx, name, dest); err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		got, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, segSize)
		copy(want, seg[:300_000])
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: fetched %d bytes that are not the streamed 300000 bytes zero-padded to %d", codec, len(got), segSize)
		}
		// Chunks are never WAL files to those that list the archive.
		n := 0
		if err := a.Repo.ListWAL(ctx, func(repo.WALObject) error { n++; return nil }); err != nil || n != 0 {
			t.Fatalf("%s: ListWAL saw %d files (%v), want none", codec, n, err)
		}
		ss, err := a.Repo.ListStreamedSegments(ctx)
		if err != nil || len(ss) != 1 || ss[0].Name != name {
			t.Fatalf("%s: streamed segments %+v, %v", codec, ss, err)
		}
		// The whole segment, once stored, wins over its chunks.
		if _, err := a.Push(ctx, writeWAL(t, dir, name, seg), cluster(t, dir)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Fetch(ctx, name, dest); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
			t.Fatalf("%s: the whole segment was not preferred", codec)
		}
	}
}

// A damaged chunk, a chunk that vanished, or none from the segment's start: only the
// last is the end of the archive.
func TestADamagedStreamedChunkIsAnErrorNotTheEndOfTheArchive(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := newArchive(t, st, "none")
	a.DataDir = dataDir(t, 42)
	if _, err := a.Repo.EnsureIdentity(ctx, repo.Identity{SystemID: 42, PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	const name = "000000010000000000000009"
	seg := waltest.Stamped(name, segment(42, 9))
	f, _ := wal.Parse(name)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	// Only a chunk after a hole: nothing from the start.
	if err := a.Repo.PutWALChunk(ctx, f, 8192, seg[8192:16384]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Fetch(ctx, name, dest); !errors.Is(err, ErrNotArchived) {
		t.Fatalf("no chunk from the start: %v, want ErrNotArchived", err)
	}
	if err := a.Repo.PutWALChunk(ctx, f, 0, seg[:8192]); err != nil {
		t.Fatal(err)
	}
	cs, err := a.Repo.ListWALChunks(ctx, f)
	if err != nil || len(cs) != 2 {
		t.Fatalf("chunks %+v, %v", cs, err)
	}
	// Flip a byte of the first chunk's stored object.
	rc, err := st.Get(ctx, cs[0].Key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(rc)
	_ = rc.Close()
	raw := b.Bytes()
	raw[len(raw)/2] ^= 0xff
	if err := st.Delete(ctx, cs[0].Key); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, cs[0].Key, bytes.NewReader(raw), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Fetch(ctx, name, dest)
	if err == nil || errors.Is(err, ErrNotArchived) || !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("damaged chunk: %v, want ErrCorrupt and not ErrNotArchived", err)
	}
	if _, serr := os.Stat(dest); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a damaged chunk left %s behind", dest)
	}
	// Another cluster's chunks are refused like another cluster's segment.
	a.DataDir = dataDir(t, 43)
	if err := st.Delete(ctx, cs[0].Key); err != nil {
		t.Fatal(err)
	}
	if err := a.Repo.PutWALChunk(ctx, f, 0, seg[:8192]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Fetch(ctx, name, dest); !errors.Is(err, repo.ErrForeignCluster) {
		t.Fatalf("another cluster's chunks: %v, want ErrForeignCluster", err)
	}
	if !strings.Contains(cs[0].Key, ".stream/00000000-00002000") {
		t.Errorf("chunk key %s", cs[0].Key)
	}
}

func TestCoverFromStartTakesTheFewestChunksWithoutAHole(t *testing.T) {
	ch := func(s, e int64) repo.Chunk { return repo.Chunk{Start: s, End: e} }
	for _, tc := range []struct {
		in   []repo.Chunk
		end  int64
		used int
	}{
		{nil, 0, 0},
		{[]repo.Chunk{ch(10, 20)}, 0, 0},
		{[]repo.Chunk{ch(0, 10), ch(10, 20), ch(30, 40)}, 20, 2},
		{[]repo.Chunk{ch(0, 30), ch(0, 10), ch(10, 20), ch(20, 40)}, 40, 2},
		{[]repo.Chunk{ch(0, 10), ch(5, 25), ch(10, 20), ch(20, 30)}, 30, 3},
	} {
		c := repo.CoverFromStart(tc.in)
		if c.End != tc.end || len(c.Parts) != tc.used {
			t.Errorf("%v: cover to %d with %d parts, want %d with %d", tc.in, c.End, len(c.Parts), tc.end, tc.used)
		}
	}
}

// racingStore runs hook once, just before the first listing of a chunk directory:
// the moment between wal-fetch's OpenWAL (not there yet) and its ListWALChunks.
type racingStore struct {
	storage.Store
	hook func()
}

func (r *racingStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if strings.HasSuffix(prefix, ".stream/") && r.hook != nil {
		h := r.hook
		r.hook = nil
		h()
	}
	return r.Store.List(ctx, prefix, fn)
}

// The streamed segment completes while wal-fetch runs: the whole segment is stored,
// then its chunks removed, between fetch's look for the whole segment and its listing
// of the chunks. The segment is fetched: "not in the archive" (exit 1, the end of the
// archive for PostgreSQL) would end recovery before WAL the repository holds.
func TestAFetchRacingTheSegmentsCompletionGetsTheSegment(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	writer := newArchive(t, inner, "lz4") // the stream's view of the same store
	rs := &racingStore{Store: inner}
	a := newArchive(t, rs, "lz4")
	const name = "000000010000000000000007"
	seg := waltest.Stamped(name, segment(42, 7))
	f, _ := wal.Parse(name)
	if _, err := writer.Repo.EnsureIdentity(ctx, repo.Identity{SystemID: 42, PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := writer.Repo.PutWALChunk(ctx, f, 0, seg[:300_000]); err != nil {
		t.Fatal(err)
	}
	rs.hook = func() {
		if _, err := writer.PushData(ctx, f, seg, &Cluster{SystemID: 42, PGVersion: 15}); err != nil {
			t.Error(err)
		}
		cs, err := writer.Repo.ListWALChunks(ctx, f)
		if err == nil {
			err = writer.Repo.DeleteWALChunks(ctx, cs)
		}
		if err != nil {
			t.Error(err)
		}
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, err := a.Fetch(ctx, name, dest); err != nil {
		t.Fatalf("Fetch of a segment stored whole meanwhile: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
		t.Fatal("fetched bytes are not the segment")
	}
}
