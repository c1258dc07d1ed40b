package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// sealed stores plain under key as pgb would, zstd-compressed.
func sealed(t *testing.T, r *Repo, key string, plain []byte) {
	t.Helper()
	var buf bytes.Buffer
	c, _ := compress.New("zstd", 0)
	w, err := r.seal(&buf, c, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.st.Put(context.Background(), key, &buf, storage.PutOptions{Size: int64(buf.Len())}); err != nil {
		t.Fatal(err)
	}
}

// A part, or a WAL file, that decodes to more than its manifest entry or its kind
// allows (a decompression bomb: 32 MiB of zeros are a few KiB of zstd) fails as
// ErrCorrupt once past that size, before its trailer is reached.
func TestOversizedObjectsAreRefusedWhileTheyAreRead(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	bomb := make([]byte, 32<<20)
	sealed(t, r, PartKey("b", 1), bomb)
	for _, tc := range []struct {
		part Part
		ok   bool
	}{
		{Part{N: 1, Files: 1, Size: 8192}, false},
		{Part{N: 1, Files: 1, Size: 32 << 20}, true},
	} {
		o, err := r.OpenPart(ctx, "b", tc.part)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, o)
		_ = o.Close()
		switch {
		case tc.ok && err != nil:
			t.Errorf("part %+v: %v", tc.part, err)
		case !tc.ok && (!errors.Is(err, ErrCorrupt) || n > tc.part.Size+2*maxTarOverhead):
			t.Errorf("part %+v: %d bytes, err %v; want ErrCorrupt within its limit", tc.part, n, err)
		}
	}

	f, _ := wal.Parse("00000002.history")
	sealed(t, r, WALKey(f), bomb)
	o, err := r.OpenWAL(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = o.Close() }()
	if n, err := io.Copy(io.Discard, o); !errors.Is(err, ErrCorrupt) || n > wal.MaxHistorySize {
		t.Errorf("a 32 MiB history file: %d bytes, err %v; want ErrCorrupt within %d bytes", n, err, wal.MaxHistorySize)
	}
}
