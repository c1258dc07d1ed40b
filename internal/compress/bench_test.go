package compress

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pgb-project/pgb/internal/benchdata"
)

// walSegments returns real WAL to benchmark on: the segments in $PGB_BENCH_WAL (a
// directory such as a pg_wal or an archive copy of one, 16 MiB segments), else the
// three 1 MiB PostgreSQL 15 segments committed under internal/wal/testdata/pg15.
func walSegments(tb testing.TB) [][]byte {
	tb.Helper()
	if dir := os.Getenv("PGB_BENCH_WAL"); dir != "" {
		names, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			tb.Fatal(err)
		}
		sort.Strings(names)
		seg := regexp.MustCompile(`^[0-9A-F]{24}$`)
		var segs [][]byte
		for _, n := range names {
			if !seg.MatchString(filepath.Base(n)) {
				continue
			}
			b, err := os.ReadFile(n)
			if err != nil {
				tb.Fatal(err)
			}
			segs = append(segs, b)
			if len(segs) == 16 {
				break
			}
		}
		if len(segs) == 0 {
			tb.Fatalf("PGB_BENCH_WAL=%s holds no WAL segment", dir)
		}
		return segs
	}
	names, err := filepath.Glob("../wal/testdata/pg15/0000*.zst")
	if err != nil || len(names) == 0 {
		tb.Fatalf("no WAL test data (%v)", err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer dec.Close()
	var segs [][]byte
	for _, n := range names {
		z, err := os.ReadFile(n)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := dec.DecodeAll(z, nil)
		if err != nil {
			tb.Fatal(err)
		}
		segs = append(segs, b)
	}
	return segs
}

// zstdCase is one way of writing zstd. before is the writer pgb used up to issue 11:
// klauspost's window (8 MiB at level 3) with WithLowerEncoderMem, and a new encoder for
// every stream; the others go through the codec.
type zstdCase struct {
	name        string
	codec       string
	level, conc int
	before      bool
}

var compressCases = []zstdCase{
	{name: "lz4", codec: "lz4"},
	{name: "zstd-before", codec: "zstd", before: true},
	{name: "zstd", codec: "zstd"},
	{name: "zstd-conc2", codec: "zstd", conc: 2},
	{name: "zstd-1", codec: "zstd", level: 1},
	{name: "zstd-7", codec: "zstd", level: 7},
}

// newWriter returns a writer of tc into w.
func (tc zstdCase) newWriter(tb testing.TB, c Codec, w io.Writer) io.WriteCloser {
	if tc.before {
		enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
		if err != nil {
			tb.Fatal(err)
		}
		return enc
	}
	zw, err := c.NewWriter(w)
	if err != nil {
		tb.Fatal(err)
	}
	return zw
}

// runStreams compresses every stream with its own writer, as pgb does with WAL
// segments and backup parts, writing each through write; it reports the ratio and the
// CPU seconds (user+system, every goroutine: the figure that counts on a shared
// machine) per GiB of input next to the usual wall-clock figures.
func runStreams(b *testing.B, tc zstdCase, streams [][]byte, long bool, write func(io.Writer, []byte) error) {
	var total int64
	for _, s := range streams {
		total += int64(len(s))
	}
	c, err := New(tc.codec, tc.level)
	if err != nil {
		b.Fatal(err)
	}
	c = WithConcurrency(c, tc.conc)
	if long {
		c = ForLongStreams(c)
	}
	var out countWriter
	b.SetBytes(total)
	b.ReportAllocs()
	cpu := cpuTime(b)
	for b.Loop() {
		out = 0
		for _, s := range streams {
			w := tc.newWriter(b, c, &out)
			if err := write(w, s); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(total)/float64(out), "ratio")
	b.ReportMetric((cpuTime(b)-cpu).Seconds()/(float64(total)*float64(b.N)/(1<<30)), "cpu-s/GiB")
}

// BenchmarkCompressWAL compresses whole WAL segments as wal-push does: one writer per
// segment, fed 256 KiB at a time (repo.PutWAL's copy buffer); concurrency 2 is what a
// one-shot wal-push passes on a 2-core machine, the look-ahead archiver passes 1.
func BenchmarkCompressWAL(b *testing.B) {
	segs := walSegments(b)
	for _, tc := range compressCases {
		b.Run(tc.name, func(b *testing.B) { runStreams(b, tc, segs, false, writeChunks) })
	}
}

// BenchmarkCompressPart compresses a backup part as backup-push writes one (with
// ForLongStreams; zstd-window2M is without, the window WAL segments get): a tar
// stream (512-byte headers, file data in 256 KiB writes) of the relation files in
// $PGB_BENCH_REL (a directory, such as a data directory's base/, up to 1 GiB), else of
// 64 MiB of benchdata pages; and a part of 64 MiB of random bytes, which do not
// compress at all.
func BenchmarkCompressPart(b *testing.B) {
	files := relFiles(b)
	random := []benchFile{{"base/5/16384.1", benchdata.Random(11, 64<<20)}}
	for _, data := range []struct {
		name  string
		files []benchFile
	}{{"rel", files}, {"random", random}} {
		plain := tarOf(b, data.files)
		for _, tc := range compressCases {
			b.Run(data.name+"/"+tc.name, func(b *testing.B) {
				runStreams(b, tc, [][]byte{plain}, true, func(w io.Writer, _ []byte) error { return writeTar(w, data.files) })
			})
		}
		b.Run(data.name+"/zstd-window2M", func(b *testing.B) {
			runStreams(b, zstdCase{codec: "zstd"}, [][]byte{plain}, false, func(w io.Writer, _ []byte) error { return writeTar(w, data.files) })
		})
	}
}

// BenchmarkZstdCLI runs libzstd's command-line tool (skipped where there is none) on
// the same bytes as BenchmarkCompressWAL and BenchmarkCompressPart: one process per
// iteration compressing every WAL segment as its own frame (zstd's files-to-stdout
// mode), or the tar stream of the part. It reports the child's CPU seconds per GiB and
// the ratio, to set pgb's figures against libzstd's (pgBackRest's library) in one run.
func BenchmarkZstdCLI(b *testing.B) {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Skip("no zstd command")
	}
	dir := b.TempDir()
	var walNames []string
	for i, s := range walSegments(b) {
		n := filepath.Join(dir, fmt.Sprintf("wal%03d", i))
		if err := os.WriteFile(n, s, 0o600); err != nil {
			b.Fatal(err)
		}
		walNames = append(walNames, n)
	}
	part := filepath.Join(dir, "part.tar")
	if err := os.WriteFile(part, tarOf(b, relFiles(b)), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, lvl := range []string{"-1", "-3"} {
		for _, in := range []struct {
			name  string
			files []string
		}{{"wal", walNames}, {"rel", []string{part}}} {
			b.Run(in.name+"/zstd"+lvl, func(b *testing.B) {
				var total int64
				for _, n := range in.files {
					fi, err := os.Stat(n)
					if err != nil {
						b.Fatal(err)
					}
					total += fi.Size()
				}
				var out countWriter
				var cpu time.Duration
				b.SetBytes(total)
				for b.Loop() {
					out = 0
					cmd := exec.Command("zstd", append([]string{"-q", "-c", lvl, "--no-check"}, in.files...)...)
					cmd.Stdout = &out
					if err := cmd.Run(); err != nil {
						b.Fatal(err)
					}
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				b.ReportMetric(float64(total)/float64(out), "ratio")
				b.ReportMetric(cpu.Seconds()/(float64(total)*float64(b.N)/(1<<30)), "cpu-s/GiB")
			})
		}
	}
}

func writeChunks(w io.Writer, s []byte) error {
	for p := s; len(p) > 0; {
		k := min(len(p), 256<<10)
		if _, err := w.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

type benchFile struct {
	name string
	data []byte
}

// relFiles returns the regular files under $PGB_BENCH_REL, in name order, up to 1 GiB
// in all, else 64 MiB of benchdata pages as one file.
func relFiles(tb testing.TB) []benchFile {
	tb.Helper()
	dir := os.Getenv("PGB_BENCH_REL")
	if dir == "" {
		return []benchFile{{"base/5/16397", benchdata.Pages(64 << 20)}}
	}
	var files []benchFile
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || total >= 1<<30 {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		total += int64(len(b))
		files = append(files, benchFile{p, b})
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatalf("PGB_BENCH_REL=%s holds no file", dir)
	}
	return files
}

// writeTar writes files to w as backup-push writes a part.
func writeTar(w io.Writer, files []benchFile) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Size: int64(len(f.data)), Mode: 0o600, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if err := writeChunks(tw, f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func tarOf(tb testing.TB, files []benchFile) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := writeTar(&buf, files); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkDecompressWAL reads back what the default zstd writer wrote.
func BenchmarkDecompressWAL(b *testing.B) {
	segs := walSegments(b)
	c, err := New("zstd", 0)
	if err != nil {
		b.Fatal(err)
	}
	var packed [][]byte
	var total int64
	for _, s := range segs {
		packed = append(packed, compressAll(b, c, s))
		total += int64(len(s))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range packed {
			r, err := c.NewReader(bytes.NewReader(p))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
			_ = r.Close()
		}
	}
}

func compressAll(tb testing.TB, c Codec, plain []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
