package restore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A backup part's plain bytes (the tar stream inside its envelope) are whatever the
// repository holds. Whatever they are, restore never panics and never writes outside
// its target; it either restores every file with exactly the backed-up bytes, or fails
// as ErrDamaged or corrupt, leaving no global/pg_control behind.
func FuzzRestorePart(f *testing.F) {
	ctx := context.Background()
	b := takeBackup(f, "none")
	list, _, err := repo.New(b.st, repo.Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 {
		f.Fatalf("ListBackups = %v, %v", list, err)
	}
	summary := list[0]
	partKey := repo.PartKey(summary.Name, 1)
	plain := func(st storage.Store, key string) []byte {
		rc, err := st.Get(ctx, key, 0, -1)
		if err != nil {
			f.Fatal(err)
		}
		defer func() { _ = rc.Close() }()
		r, err := envelope.NewReader(rc)
		if err != nil {
			f.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	orig := plain(b.st, partKey)
	f.Add(orig)
	f.Add(orig[:len(orig)/2])
	f.Add(append(append([]byte(nil), orig...), orig[:1024]...))
	f.Add(plain(b.st, repo.PartKey(summary.Name, 2)))
	codec, _ := compress.New("none", 0)
	f.Fuzz(func(t *testing.T, tarBytes []byte) {
		st := mem.New()
		if err := b.st.List(ctx, "", func(oi storage.ObjectInfo) error {
			rc, err := b.st.Get(ctx, oi.Key, 0, -1)
			if err != nil {
				return err
			}
			defer func() { _ = rc.Close() }()
			if oi.Key == partKey { // the part under test: the fuzzed tar stream, sealed
				var buf bytes.Buffer
				w, err := envelope.NewWriter(&buf, codec)
				if err != nil {
					return err
				}
				if _, err := w.Write(tarBytes); err != nil {
					return err
				}
				if err := w.Close(); err != nil {
					return err
				}
				return st.Put(ctx, oi.Key, &buf, storage.PutOptions{Size: int64(buf.Len())})
			}
			return st.Put(ctx, oi.Key, rc, storage.PutOptions{Size: oi.Size})
		}); err != nil {
			t.Fatal(err)
		}
		m, err := repo.New(st, repo.Options{}).OpenManifest(ctx, summary, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close() }()
		top := t.TempDir()
		target, spc := filepath.Join(top, "target"), filepath.Join(top, "ts")
		err = newRestorer(st, target, map[string]string{b.spcDir: spc}, nil).Run(ctx, m)
		if err != nil {
			if !errors.Is(err, ErrDamaged) && !errors.Is(err, repo.ErrCorrupt) {
				t.Fatalf("restore of a damaged part: %v, want ErrDamaged or corrupt", err)
			}
			if _, serr := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("a failed restore (%v) left global/pg_control", err)
			}
		}
		ents, rerr := os.ReadDir(top)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range ents {
			if e.Name() != "target" && e.Name() != "ts" {
				t.Fatalf("restore wrote %s beside its target", e.Name())
			}
		}
		if err == nil {
			for _, p := range []string{"global/1262", "base/1/1259", bigFile, "base/5/16384_fsm"} {
				want, _ := os.ReadFile(filepath.Join(b.dataDir, p))
				got, gerr := os.ReadFile(filepath.Join(target, p))
				if gerr != nil || !bytes.Equal(got, want) {
					t.Fatalf("restore succeeded, but %s differs from the backed-up file (%v)", p, gerr)
				}
			}
		}
	})
}
