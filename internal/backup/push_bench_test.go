package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgb-project/pgb/internal/benchdata"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/fs"
)

// BenchmarkCopyFiles streams a data directory into lz4 tar parts in a filesystem
// repository (fsync included), as backup-push copies between pg_backup_start and
// pg_backup_stop: the walk's order, Concurrency workers, the crc32c of every file.
// MB/s is of data directory bytes. "1file" is one 64 MiB relation segment, the shape
// that leaves one worker alone at the end of a pgbench backup; "mixed" four of 16 MiB
// and 64 of 64 KiB. "pages" compress like pgbench's, "random" not at all.
func BenchmarkCopyFiles(b *testing.B) {
	shapes := []struct {
		name  string
		files map[string]int
	}{
		{"1file", map[string]int{"base/5/16396": 64 << 20}},
		{"mixed", mixedShape()},
	}
	for _, data := range []string{"pages", "random"} {
		for _, sh := range shapes {
			for _, workers := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/workers=%d", data, sh.name, workers), func(b *testing.B) {
					benchCopyFiles(b, data, sh.files, workers)
				})
			}
		}
	}
}

func mixedShape() map[string]int {
	files := map[string]int{}
	for i := range 4 {
		files[fmt.Sprintf("base/5/%d", 16400+i)] = 16 << 20
	}
	for i := range 64 {
		files[fmt.Sprintf("base/5/%d", 17000+i)] = 64 << 10
	}
	return files
}

func benchCopyFiles(b *testing.B, data string, shape map[string]int, workers int) {
	ctx := context.Background()
	dir := b.TempDir()
	var total int64
	seed := uint64(1)
	for p, n := range shape {
		content := benchdata.Pages(n)
		if data == "random" {
			content = benchdata.Random(seed, n)
			seed++
		}
		abs := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(abs, content, 0o600); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	st, err := fs.New(filepath.Join(b.TempDir(), "repo"))
	if err != nil {
		b.Fatal(err)
	}
	codec, err := compress.New("lz4", 0)
	if err != nil {
		b.Fatal(err)
	}
	p := &Pusher{Repo: repo.New(st, repo.Options{Codec: codec}), Opt: Options{PartSize: 1 << 30, Concurrency: workers}}
	t, err := walk(dir, nil, os.Open)
	if err != nil {
		b.Fatal(err)
	}
	defer t.close()
	b.SetBytes(total)
	b.ReportAllocs()
	var stored int64
	for i := 0; b.Loop(); i++ {
		m := &repo.Manifest{Summary: repo.Summary{Name: fmt.Sprintf("b%d", i)}, List: testList(b)}
		if err := p.copyFiles(ctx, t, m, os.Open, nil, nil); err != nil {
			b.Fatal(err)
		}
		_ = m.Close()
		stored = m.StoredSize
		b.StopTimer()
		if _, err := p.Repo.RemoveIncompleteBackup(ctx, m.Name); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/float64(stored), "ratio")
}

// testList is an empty file list in a temporary directory of tb, closed at its end.
func testList(tb testing.TB) *repo.FileList {
	tb.Helper()
	l, err := repo.NewFileList(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}
