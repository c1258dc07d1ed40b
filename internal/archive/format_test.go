package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// sha256Object is plain in the envelope pgb wrote before commit 7dad72f: version 1, no
// compression, and the trailer "PGBT" | 4 zero bytes | size | SHA-256 (the envelope
// package's tests check this layout against objects that old code wrote).
func sha256Object(plain []byte) []byte {
	obj := append([]byte("PGB\x00\x01\x00\x00\x00"), plain...)
	trailer := make([]byte, 16, 48)
	copy(trailer, "PGBT")
	binary.LittleEndian.PutUint64(trailer[8:], uint64(len(plain)))
	sum := sha256.Sum256(plain)
	return append(obj, append(trailer, sum[:]...)...)
}

// A repository written before the CRC-32C trailer: a segment pushed again with the same
// content is a duplicate (the trailers' checksums cannot be compared, the bytes can),
// other content is still a conflict, and fetch returns the stored segment.
func TestPushAndFetchOverASegmentWithAnOldSHA256Trailer(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := newArchive(t, st, "lz4")
	dir := dataDir(t, 42)
	const name = "000000010000000000000007"
	key := "wal/0000000100000000/" + name
	seg := segment(42, 7)
	p := writeWAL(t, dir, name, seg)
	if _, err := a.Push(ctx, p, cluster(t, dir)); err != nil { // binds the repository
		t.Fatal(err)
	}
	if err := st.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	old := sha256Object(seg)
	if err := st.Put(ctx, key, bytes.NewReader(old), storage.PutOptions{IfAbsent: true, Size: int64(len(old))}); err != nil {
		t.Fatal(err)
	}

	res, err := a.Push(ctx, p, cluster(t, dir))
	if err != nil || !res.Duplicate {
		t.Fatalf("push of identical content: %+v, %v; want a duplicate", res, err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, err := a.Fetch(ctx, name, dest); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
		t.Fatalf("fetched segment differs from the stored one (%v)", err)
	}
	writeWAL(t, dir, name, segment(42, 8))
	if _, err := a.Push(ctx, p, cluster(t, dir)); !errors.Is(err, ErrConflict) {
		t.Fatalf("push of other content: %v; want ErrConflict", err)
	}
	if !bytes.Equal(get(t, st, key), old) {
		t.Fatal("stored object changed")
	}
}
