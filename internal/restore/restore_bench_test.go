package restore

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/backup"
	"github.com/pgb-project/pgb/internal/benchdata"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
)

// BenchmarkRestore restores an lz4 backup from a filesystem repository into an empty
// directory: parts decoded and verified, every file written, checked against its
// crc32c and made durable (syncfs), with Concurrency workers. MB/s is of data directory
// bytes. "1file" is one 64 MiB relation segment (one part: the shape of a pgbench
// backup's biggest file), "mixed" four of 16 MiB and 64 of 64 KiB in 16 MiB parts;
// "pages" compress like pgbench's, "random" not at all.
func BenchmarkRestore(b *testing.B) {
	for _, data := range []string{"pages", "random"} {
		for _, shape := range []string{"1file", "mixed"} {
			for _, workers := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/workers=%d", data, shape, workers), func(b *testing.B) {
					benchRestore(b, data, shape, workers)
				})
			}
		}
	}
}

func benchRestore(b *testing.B, data, shape string, workers int) {
	ctx := context.Background()
	dataDir := b.TempDir()
	files := map[string]int{"base/5/16396": 64 << 20}
	if shape == "mixed" {
		files = map[string]int{}
		for i := range 4 {
			files[fmt.Sprintf("base/5/%d", 16400+i)] = 16 << 20
		}
		for i := range 64 {
			files[fmt.Sprintf("base/5/%d", 17000+i)] = 64 << 10
		}
	}
	tree := map[string][]byte{"PG_VERSION": []byte("15\n"), "global/pg_control": benchControl(b)}
	seed := uint64(1)
	for p, n := range files {
		tree[p] = benchdata.Pages(n)
		if data == "random" {
			tree[p] = benchdata.Random(seed, n)
			seed++
		}
	}
	writeTree(b, dataDir, tree)
	st, err := fs.New(filepath.Join(b.TempDir(), "repo"))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Put(ctx, "wal/0000000100000000/000000010000000000000002", strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
		b.Fatal(err)
	}
	codec, err := compress.New("lz4", 0)
	if err != nil {
		b.Fatal(err)
	}
	p := &backup.Pusher{
		Repo: repo.New(st, repo.Options{Codec: codec}), Src: &fakeSource{dataDir: dataDir}, Log: slog.New(slog.DiscardHandler),
		Opt: backup.Options{DataDir: dataDir, PartSize: 16 << 20, Concurrency: 2, ArchiveTimeout: 2 * time.Second},
		Now: func() time.Time { return time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC) },
	}
	m, err := p.Run(ctx)
	if err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(b.TempDir(), "restored")
	b.SetBytes(m.Size)
	b.ReportAllocs()
	for b.Loop() {
		r := &Restorer{Repo: repo.New(st, repo.Options{}), Log: slog.New(slog.DiscardHandler),
			Opt: Options{DataDir: target, Concurrency: workers}}
		if err := r.Run(ctx, m); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(target); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// benchControl is a pg_control for the fake source's cluster.
func benchControl(b *testing.B) []byte {
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl[0:], testSystemID)
	binary.LittleEndian.PutUint32(ctl[8:], 1300)
	binary.LittleEndian.PutUint32(ctl[12:], 202209061)
	binary.LittleEndian.PutUint64(ctl[32:], 0x2000060)
	binary.LittleEndian.PutUint64(ctl[40:], 0x2000028)
	binary.LittleEndian.PutUint32(ctl[48:], 1)
	if err := pg.SealControl(ctl); err != nil {
		b.Fatal(err)
	}
	return ctl
}
