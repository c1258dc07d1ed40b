package restore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/pagemap"
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

// An incremental backup's entry of a file (its page map, then its pages) is whatever
// the repository holds, and so are the sizes its manifest gives. Whatever they are,
// writing the pages never panics, never makes the file larger than its size in the
// backup restored, never writes beside it, and fails as ErrDamaged or corrupt on
// anything that does not add up.
func FuzzPatchFile(f *testing.F) {
	const b = pagemap.BlockSize
	seed := func(size int64, blocks ...uint32) []byte {
		l := pagemap.Layer{Size: size, Map: pagemap.Of(blocks...)}
		enc, err := l.Map.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		return append(enc, bytes.Repeat([]byte{7}, int(l.Stored()))...)
	}
	f.Add(seed(3*b, 0, 2), int64(3*b), int64(2*b), int64(3*b), uint8(0))
	f.Add(seed(b+100, 1), int64(b+100), int64(b), int64(2*b), uint8(1))
	f.Add(seed(0), int64(0), int64(4*b), int64(0), uint8(2))
	f.Fuzz(func(t *testing.T, entry []byte, size, prev, final int64, mapLen uint8) {
		if size < 0 || size > 64*b || final < 0 || final > 64*b {
			return // the manifest's checks bound sizes before a restore gets here
		}
		top := t.TempDir()
		dir := filepath.Join(top, "target")
		if err := os.MkdirAll(filepath.Join(dir, "base/5"), 0o700); err != nil {
			t.Fatal(err)
		}
		ml := int64(mapLen)
		if ml == 0 || ml > int64(len(entry)) {
			ml = int64(len(entry))
		}
		fl := &repo.File{Path: "base/5/16384", Size: size, MapLen: ml, Stored: int64(len(entry)), CRC: crc32c.Hex(crc32c.Checksum(entry))}
		p := &filePlan{size: final, from: 0, deltas: 1 << 1, prev: []int64{0, prev}}
		p.lay = newLayered(p)
		r := &Restorer{Opt: Options{DataDir: dir}}
		var done atomic.Int64
		// The older copy the pages go onto: prev bytes (when the manifest's checks
		// would let such a size through).
		base := make([]byte, min(max(prev, 0), 64*b))
		whole := &repo.File{Path: fl.Path, Size: int64(len(base)), CRC: crc32c.Hex(crc32c.Checksum(base))}
		if err := r.fillFile(bytes.NewReader(base), whole, p, nil, make([]byte, 4*b), &done); err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("the whole copy: %v", err)
			}
			return
		}
		err := r.patchFile(bytes.NewReader(entry), fl, p, 1, nil, make([]byte, 4*b), &done)
		if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, repo.ErrCorrupt) {
			t.Fatalf("patch from a hostile entry: %v, want ErrDamaged or corrupt", err)
		}
		if fi, serr := os.Stat(filepath.Join(dir, "base/5/16384")); serr == nil && fi.Size() != final {
			t.Fatalf("the file has %d bytes, its size in the backup restored is %d", fi.Size(), final)
		}
		ents, rerr := os.ReadDir(top)
		if rerr != nil || len(ents) != 1 {
			t.Fatalf("patch wrote beside its target: %v, %v", ents, rerr)
		}
	})
}
