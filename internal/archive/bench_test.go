package archive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/fs"
	"github.com/pgb-project/pgb/internal/waltest"
)

// variants are the benchmarks' codecs, each also encrypted (age, one recipient).
func variants() []string {
	var out []string
	for _, c := range compress.Names() {
		out = append(out, c, c+"+age")
	}
	return out
}

// benchArchive is newArchive for a variant: codec, or codec+age.
func benchArchive(b *testing.B, st storage.Store, variant string) *Archive {
	codec, enc := strings.CutSuffix(variant, "+age")
	a := newArchive(b, st, codec)
	if enc {
		a.Repo = repo.New(st, repo.Options{Codec: a.Repo.Codec(), Keys: benchKeys(b), EncryptNew: true})
	}
	return a
}

// benchKeys are keys that write and read.
func benchKeys(b *testing.B) *crypt.Keys {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	mac, _ := crypt.ParseMACKey(crypt.NewMACKey())
	r := id.Recipient()
	return crypt.New([]age.Recipient{r}, []string{r.String()}, []age.Identity{id}, mac)
}

// BenchmarkPush pushes a 16 MiB segment into a filesystem repository (fsync included)
// with each codec, unencrypted and encrypted. MB/s is of WAL bytes.
func BenchmarkPush(b *testing.B) {
	for _, codec := range variants() {
		b.Run(codec, func(b *testing.B) {
			ctx := context.Background()
			st, err := fs.New(filepath.Join(b.TempDir(), "repo"))
			if err != nil {
				b.Fatal(err)
			}
			a := benchArchive(b, st, codec)
			dir := waltest.DataDir(b, 42)
			cl := cluster(b, dir)
			seg := waltest.Segment(42, 1)
			paths := make([]string, 8)
			for i := range paths {
				paths[i] = waltest.WriteWAL(b, dir, fmt.Sprintf("0000000100000000%08X", i+1), append([]byte(nil), seg...))
			}
			b.SetBytes(waltest.SegSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if i > 0 && i%len(paths) == 0 { // a fresh repository, so every push stores
					st, _ = fs.New(filepath.Join(b.TempDir(), fmt.Sprint("repo", i)))
					a.Repo = benchArchive(b, st, codec).Repo
				}
				b.StartTimer()
				res, err := a.Push(ctx, paths[i%len(paths)], cl)
				if err != nil || res.Duplicate {
					b.Fatal(res, err)
				}
				if i == 0 {
					b.ReportMetric(float64(res.Stored)/float64(res.Size), "ratio")
				}
			}
		})
	}
}

// BenchmarkFetch fetches, verifies and durably writes a 16 MiB segment, unencrypted and
// encrypted.
func BenchmarkFetch(b *testing.B) {
	for _, codec := range variants() {
		b.Run(codec, func(b *testing.B) {
			ctx := context.Background()
			st, err := fs.New(filepath.Join(b.TempDir(), "repo"))
			if err != nil {
				b.Fatal(err)
			}
			a := benchArchive(b, st, codec)
			dir := waltest.DataDir(b, 42)
			const name = "000000010000000000000001"
			if _, err := a.Push(ctx, waltest.WriteWAL(b, dir, name, waltest.Segment(42, 1)), cluster(b, dir)); err != nil {
				b.Fatal(err)
			}
			dest := filepath.Join(b.TempDir(), "RECOVERYXLOG")
			b.SetBytes(waltest.SegSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := a.Fetch(ctx, name, dest); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			os.Remove(dest)
		})
	}
}

// BenchmarkTakeSpooled serves a spooled 16 MiB segment (lz4, filesystem repository):
// what a wal-fetch served by the prefetcher does besides starting up (the claim, the
// repository check, the checksum of every byte, the truncation, the rename and the
// directory sync). Spooling the next copy is not timed.
func BenchmarkTakeSpooled(b *testing.B) {
	ctx := context.Background()
	st, err := fs.New(filepath.Join(b.TempDir(), "repo"))
	if err != nil {
		b.Fatal(err)
	}
	a := newArchive(b, st, "lz4")
	dir := waltest.DataDir(b, 42)
	const name = "000000010000000000000001"
	if _, err := a.Push(ctx, waltest.WriteWAL(b, dir, name, waltest.Segment(42, 1)), cluster(b, dir)); err != nil {
		b.Fatal(err)
	}
	spool := b.TempDir()
	p := &Prefetcher{Archive: a, Dir: spool, Timeout: time.Minute}
	id, err := a.RepoID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	dest := filepath.Join(b.TempDir(), "RECOVERYXLOG")
	var cpu time.Duration // user+sys: wall time on a shared machine is mostly waiting
	b.SetBytes(waltest.SegSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if found, err := p.spoolOne(ctx, name, id); err != nil || !found {
			b.Fatal(found, err)
		}
		_ = os.Remove(dest) // PostgreSQL removes RECOVERYXLOG before it runs restore_command
		c0 := cpuTime()
		b.StartTimer()
		if _, ok := a.TakeSpooled(ctx, spool, name, dest); !ok {
			b.Fatal("not served")
		}
		b.StopTimer()
		cpu += cpuTime() - c0
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU time (user+sys) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // never fails with these arguments
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
