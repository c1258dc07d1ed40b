package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// object encodes what write writes as an envelope with codec.
func object(t *testing.T, codec string, write func(w io.Writer)) []byte {
	t.Helper()
	c, err := compress.New(codec, 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ew, err := envelope.NewWriter(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	write(ew)
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mustWrite writes b to w or fails the test.
func mustWrite(t *testing.T, w io.Writer, b []byte) {
	t.Helper()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

// zeros writes n zero bytes to w.
func zeros(t *testing.T, w io.Writer, n int64) {
	t.Helper()
	chunk := make([]byte, 1<<20)
	for n > 0 {
		m := min(n, int64(len(chunk)))
		mustWrite(t, w, chunk[:m])
		n -= m
	}
}

// repoWith is a repository bound to cluster 42 that holds obj under the WAL key of name.
func repoWith(t *testing.T, name string, obj []byte) storage.Store {
	t.Helper()
	ctx := context.Background()
	st := mem.New()
	dir := dataDir(t, 42)
	if _, err := newArchive(t, st, "lz4").Push(ctx, writeWAL(t, dir, "000000010000000000000001", segment(42, 1)), cluster(t, dir)); err != nil {
		t.Fatal(err)
	}
	key := "wal/" + name
	if len(name) >= 24 {
		key = "wal/" + name[:16] + "/" + name
	}
	if err := st.Put(ctx, key, bytes.NewReader(obj), storage.PutOptions{Size: int64(len(obj))}); err != nil {
		t.Fatal(err)
	}
	return st
}

// wal-fetch refuses, before writing DEST, an object whose decoded size cannot be the
// WAL file asked for, even when its trailer agrees with it: a segment larger or
// smaller than its header's segment size, decompression bombs, oversized history files.
func TestFetchRefusesObjectsOfImpossibleSize(t *testing.T) {
	head := segment(42, 9)[:8192] // a valid long page header: a 16 MiB segment of cluster 42
	for _, tc := range []struct {
		name, file, codec string
		write             func(w io.Writer)
	}{
		{"segment 8 KiB too long", "000000010000000000000009", "lz4", func(w io.Writer) { mustWrite(t, w, segment(42, 9)); mustWrite(t, w, head) }},
		{"segment 8 KiB short", "000000010000000000000009", "lz4", func(w io.Writer) { mustWrite(t, w, segment(42, 9)[:segSize-8192]) }},
		{"zstd bomb", "000000010000000000000009", "zstd", func(w io.Writer) { mustWrite(t, w, head); zeros(t, w, 256<<20) }},
		{"lz4 bomb", "000000010000000000000009", "lz4", func(w io.Writer) { mustWrite(t, w, head); zeros(t, w, 256<<20) }},
		{"partial bomb", "000000010000000000000009.partial", "zstd", func(w io.Writer) { mustWrite(t, w, head); zeros(t, w, 256<<20) }},
		{"segment without a header", "000000010000000000000009", "zstd", func(w io.Writer) { zeros(t, w, segSize) }},
		{"history bomb", "00000002.history", "zstd", func(w io.Writer) { zeros(t, w, 64<<20) }},
		{"backup file bomb", "000000010000000000000009.00000028.backup", "zstd", func(w io.Writer) { zeros(t, w, 16<<20) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := repoWith(t, tc.file, object(t, tc.codec, tc.write))
			out := t.TempDir()
			_, err := newArchive(t, st, "lz4").Fetch(context.Background(), tc.file, filepath.Join(out, "RECOVERYXLOG"))
			if !errors.Is(err, envelope.ErrCorrupt) {
				t.Errorf("Fetch = %v, want ErrCorrupt", err)
			}
			assertEmptyDir(t, out)
		})
	}
}

// countingStore counts the bytes read from Get bodies.
type countingStore struct {
	storage.Store
	read atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, n: &s.read}, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// The duplicate check of wal-push reads the stored object only as far as the local
// file goes (plus one byte): a stored object whose trailer matches but whose body
// decodes to far more is a conflict, found without reading it all into memory.
func TestDuplicateCheckReadsNoMoreThanTheLocalFile(t *testing.T) {
	ctx := context.Background()
	dir := dataDir(t, 42)
	const name = "000000010000000000000006"
	seg := segment(42, 6)
	p := writeWAL(t, dir, name, seg)
	good := object(t, "none", func(w io.Writer) { mustWrite(t, w, seg) })
	long := object(t, "none", func(w io.Writer) { mustWrite(t, w, seg); zeros(t, w, 64<<20) })
	// The long body with the good trailer: the trailer check alone cannot tell.
	forged := append(append([]byte(nil), long[:len(long)-envelope.TrailerSize]...), good[len(good)-envelope.TrailerSize:]...)
	inner := repoWith(t, name, forged)
	st := &countingStore{Store: inner}
	_, err := newArchive(t, st, "lz4").Push(ctx, p, cluster(t, dir))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Push = %v, want ErrConflict", err)
	}
	if n := st.read.Load(); n > segSize+4<<20 {
		t.Errorf("the duplicate check read %d MiB of a stored object for a %d MiB file", n>>20, segSize>>20)
	}
	if !bytes.Equal(get(t, inner, "wal/0000000100000000/"+name), forged) {
		t.Error("the stored object changed")
	}
}

// A repository that never answers ends a fetch at the command's deadline, with an
// error that names it and is not "not archived".
func TestFetchFromAHungStoreEndsAtTheDeadline(t *testing.T) {
	fst := faulty.New(mem.New(), faulty.Rule{Op: faulty.Get, Fault: faulty.Hang})
	ctx, cancel := WithDeadline(context.Background(), 10*time.Millisecond)
	defer cancel()
	out := t.TempDir()
	_, err := newArchive(t, fst, "lz4").Fetch(ctx, "000000010000000000000001", filepath.Join(out, "RECOVERYXLOG"))
	err = Explain(ctx, err)
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrNotArchived) || !strings.Contains(err.Error(), "wal-timeout") {
		t.Fatalf("Fetch = %v, want ErrTimeout naming wal-timeout", err)
	}
	assertEmptyDir(t, out)
}

// wal-fetch and restore's history parser share one size limit: a .history file
// wal-fetch delivers is one restore can read, and one byte more is refused by both.
func TestFetchHistoryLimitIsTheParsersLimit(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
	}{{wal.MaxHistorySize, true}, {wal.MaxHistorySize + 1, false}} {
		body := bytes.Repeat([]byte("#"), tc.size)
		st := repoWith(t, "00000002.history", object(t, "zstd", func(w io.Writer) { mustWrite(t, w, body) }))
		out := t.TempDir()
		_, err := newArchive(t, st, "lz4").Fetch(context.Background(), "00000002.history", filepath.Join(out, "00000002.history"))
		_, perr := wal.ParseHistory(2, body)
		if (err == nil) != tc.ok || (perr == nil) != tc.ok {
			t.Errorf("%d bytes: Fetch = %v, ParseHistory = %v; want both to accept: %v", tc.size, err, perr, tc.ok)
		}
		if !tc.ok {
			assertEmptyDir(t, out)
		}
	}
}
