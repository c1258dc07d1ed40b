package compress

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
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

// BenchmarkCompressWAL compresses whole WAL segments as wal-push does (one writer per
// segment; concurrency 2 is what wal-push passes on a 2-core machine) and reports the
// compression ratio next to the speed: MB/s is uncompressed bytes per second of one
// core's work only when concurrency is 1.
func BenchmarkCompressWAL(b *testing.B) {
	segs := walSegments(b)
	var total int64
	for _, s := range segs {
		total += int64(len(s))
	}
	cases := []struct {
		name        string
		codec       string
		level, conc int
	}{
		{"lz4", "lz4", 0, 1},
		{"lz4-conc2", "lz4", 0, 2},
		{"zstd", "zstd", 0, 1},
		{"zstd-conc2", "zstd", 0, 2},
		{"zstd-1", "zstd", 1, 1},
		{"zstd-3", "zstd", 3, 1},
		{"zstd-3-conc2", "zstd", 3, 2},
		{"zstd-7", "zstd", 7, 1},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c, err := New(tc.codec, tc.level)
			if err != nil {
				b.Fatal(err)
			}
			c = WithConcurrency(c, tc.conc)
			var out countWriter
			b.SetBytes(total)
			b.ReportAllocs()
			cpu := cpuTime(b)
			for b.Loop() {
				out = 0
				for _, s := range segs {
					w, err := c.NewWriter(&out)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(w, bytes.NewReader(s)); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(total)/float64(out), "ratio")
			// CPU time, not wall-clock: the figure that counts on a shared machine.
			b.ReportMetric(float64(total*int64(b.N))/(1<<20)/(cpuTime(b)-cpu).Seconds(), "MiB/cpu-s")
		})
	}
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
