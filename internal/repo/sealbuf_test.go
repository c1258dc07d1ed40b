package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/benchdata"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/wal"

	"golang.org/x/sys/unix"
)

// Whatever the sizes of the writes, reads and seeks, a sealBuf reads back exactly what
// was written to it, across the memory it keeps and the file it spills to.
func TestSealBufReadsBackWhatWasWrittenAcrossMemoryAndFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name   string
		size   int
		memory int64
		tmpDir string
	}{
		{"in memory", 3*chunkSize - 5, 4 * chunkSize, ""},
		{"spilled", 5*chunkSize + 17, 2 * chunkSize, t.TempDir()},
		{"memory only, no temporary file", 5*chunkSize + 17, chunkSize, filepath.Join(t.TempDir(), "missing")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := benchdata.Random(uint64(tc.size), tc.size)
			var spillErr error
			b := newSealBuf(&WALBuffers{}, tc.memory, tc.tmpDir, func(err error) { spillErr = err })
			defer b.Close()
			for rest := want; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(3*chunkSize/2))
				if m, err := b.Write(rest[:n]); err != nil || m != n {
					t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
				}
				rest = rest[n:]
			}
			if b.Len() != int64(len(want)) {
				t.Fatalf("Len = %d, want %d", b.Len(), len(want))
			}
			inMemory := int64(len(b.chunks)) * chunkSize
			switch tc.name {
			case "spilled":
				if b.file == nil || inMemory > tc.memory || b.mem != tc.memory {
					t.Fatalf("%d bytes in %d chunks, file %v: want %d in memory, the rest in the file", b.mem, len(b.chunks), b.file, tc.memory)
				}
			case "memory only, no temporary file":
				if b.file != nil || b.mem != int64(len(want)) || spillErr == nil {
					t.Fatalf("file %v, %d bytes in memory, spill error %v: want everything in memory and the error reported", b.file, b.mem, spillErr)
				}
			default:
				if b.file != nil || spillErr != nil {
					t.Fatalf("spilled (%v) below its memory", spillErr)
				}
			}
			for round := range 3 { // read whole, as a retried upload does, from the start each time
				r := b.Reader()
				if round > 0 {
					if _, err := r.Seek(int64(rng.IntN(tc.size)), io.SeekStart); err != nil {
						t.Fatal(err)
					}
					if pos, err := r.Seek(0, io.SeekStart); err != nil || pos != 0 {
						t.Fatalf("Seek(0) = %d, %v", pos, err)
					}
				}
				var got bytes.Buffer
				buf := make([]byte, 2*chunkSize)
				for {
					n, err := r.Read(buf[:1+rng.IntN(len(buf)-1)])
					got.Write(buf[:n])
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("round %d: read back %d bytes that differ from the %d written", round, got.Len(), len(want))
				}
			}
			// A seek into the middle reads from there.
			r := b.Reader()
			off := int64(tc.size) - chunkSize - 3
			if _, err := r.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(rest, want[off:]) {
				t.Fatalf("after Seek(%d): %d bytes, %v", off, len(rest), err)
			}
		})
	}
}

// A segment that does not compress keeps no more than WALMemory in memory; the rest
// spills to a temporary file; it is stored whole, and an upload that fails half-way
// is retried from the start with the same bytes.
func TestPushingAnIncompressibleSegmentSpillsAndRetriesWholeBytes(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx := context.Background()
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2 << 20
	want := benchdata.Random(9, size)
	f, err := wal.Parse("000000010000000000000007")
	if err != nil {
		t.Fatal(err)
	}
	inner := mem.New()
	fst := faulty.New(inner, faulty.Rule{Op: faulty.Put, Fault: faulty.Truncate, Offset: size - 1000, Count: 1})
	st := retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	bufs := &WALBuffers{}
	rp := New(st, Options{Codec: codec, Buffers: bufs, WALMemory: chunkSize})
	put, err := rp.PutWAL(ctx, f, bytes.NewReader(want), size)
	if err != nil {
		t.Fatal(err)
	}
	if fst.Faults(faulty.Put) != 1 || fst.Calls(faulty.Put) != 2 {
		t.Fatalf("%d puts, %d failed: want the failed one retried", fst.Calls(faulty.Put), fst.Faults(faulty.Put))
	}
	if put.Stored <= size {
		t.Fatalf("stored %d bytes of an incompressible %d", put.Stored, size)
	}
	if n := len(bufs.idle); n > 2 {
		t.Fatalf("%d chunks of memory used for a push with WALMemory one chunk, want the sealing chunk and the copy buffer", n)
	}
	assertStoredWAL(t, inner, f, want)
}

// A $TMPDIR that is full still lets a temporary file be made (it takes an inode, no
// block): the writes to it fail, with ENOSPC. The push must then go on in memory, as
// when no file can be made, rather than fail every time: archiving must not stop for
// a full /tmp. /dev/full stands for such a file.
func TestSealBufKeepsTheBytesInMemoryWhenTheTemporaryFileIsFull(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_RDWR, 0)
	if err != nil {
		t.Skip(err)
	}
	want := benchdata.Random(11, 5*chunkSize+17)
	var spillErr error
	b := newSealBuf(&WALBuffers{}, 2*chunkSize, t.TempDir(), func(err error) { spillErr = err })
	defer b.Close()
	if n, err := b.Write(want[:2*chunkSize]); err != nil || n != 2*chunkSize {
		t.Fatalf("Write = %d, %v", n, err)
	}
	b.file = full // what spill made of a full $TMPDIR
	for rest := want[2*chunkSize:]; len(rest) > 0; {
		k := min(len(rest), 100<<10)
		if n, err := b.Write(rest[:k]); err != nil || n != k {
			t.Fatalf("Write(%d bytes) into a full temporary file = %d, %v: want the bytes kept in memory", k, n, err)
		}
		rest = rest[k:]
	}
	if spillErr == nil {
		t.Error("the full temporary file was not reported")
	}
	if b.Len() != int64(len(want)) {
		t.Fatalf("Len = %d, want %d", b.Len(), len(want))
	}
	got, err := io.ReadAll(b.Reader())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v) that differ from the %d written", len(got), err, len(want))
	}
}

// The same through PutWAL, with a temporary file that takes some of the segment
// before its file system is full (a file size limit stands for that): the segment is
// stored whole, not refused.
func TestPushingASegmentWhenTMPDIRFillsUpStoresItWhole(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	// Room for 300 KiB in any file this process writes, for the length of the push.
	lim := old
	lim.Cur = 300 << 10
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	ctx := context.Background()
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2 << 20
	want := benchdata.Random(12, size)
	f, err := wal.Parse("000000010000000000000009")
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	rp := New(st, Options{Codec: codec, Buffers: &WALBuffers{}, WALMemory: chunkSize})
	_, err = rp.PutWAL(ctx, f, bytes.NewReader(want), size)
	restore()
	if err != nil {
		t.Fatalf("PutWAL with a temporary file that filled up: %v", err)
	}
	assertStoredWAL(t, st, f, want)
}

// A sealBuf's reader seeks and reads as a bytes.Reader over the same bytes does, with
// every whence (an SDK finds a body's length with io.SeekEnd; the retry wrapper notes
// where it starts with io.SeekCurrent), past the end, and with empty reads.
func TestSealReaderSeeksAndReadsLikeABytesReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	want := benchdata.Random(13, 3*chunkSize+100)
	b := newSealBuf(&WALBuffers{}, chunkSize, t.TempDir(), nil)
	defer b.Close()
	if _, err := b.Write(want); err != nil {
		t.Fatal(err)
	}
	if b.file == nil {
		t.Fatal("not spilled")
	}
	got, ref := b.Reader(), bytes.NewReader(want)
	buf1, buf2 := make([]byte, chunkSize+7), make([]byte, chunkSize+7)
	for step := range 2000 {
		if rng.IntN(2) == 0 {
			whence := rng.IntN(3)
			off := int64(rng.IntN(len(want)+200)) - 100
			if whence != io.SeekStart {
				off = int64(rng.IntN(2*chunkSize)) - chunkSize
			}
			p1, e1 := got.Seek(off, whence)
			p2, e2 := ref.Seek(off, whence)
			if (e1 == nil) != (e2 == nil) || (e2 == nil && p1 != p2) {
				t.Fatalf("step %d: Seek(%d, %d) = %d, %v; a bytes.Reader says %d, %v", step, off, whence, p1, e1, p2, e2)
			}
			continue
		}
		k := rng.IntN(len(buf1))
		if rng.IntN(10) == 0 {
			k = 0
		}
		n1, e1 := io.ReadFull(got, buf1[:k])
		n2, e2 := io.ReadFull(ref, buf2[:k])
		if n1 != n2 || !errors.Is(e1, e2) || !bytes.Equal(buf1[:n1], buf2[:n2]) {
			t.Fatalf("step %d: ReadFull(%d bytes) = %d, %v; a bytes.Reader says %d, %v", step, k, n1, e1, n2, e2)
		}
		if k == 0 { // a lone empty Read
			n1, e1 = got.Read(buf1[:0])
			n2, e2 = ref.Read(buf2[:0])
			if n1 != n2 || (e1 == nil) != (e2 == nil) {
				t.Fatalf("step %d: Read(empty) = %d, %v; a bytes.Reader says %d, %v", step, n1, e1, n2, e2)
			}
		}
	}
}

// slowStore reads a Put's body in small pieces, yielding in between, so that pushes
// sharing WALBuffers overlap while their stores read.
type slowStore struct{ storage.Store }

func (s slowStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	return s.Store.Put(ctx, key, slowReader{r}, opts)
}

type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	runtime.Gosched()
	return s.r.Read(p[:min(len(p), 8<<10)])
}

func (s slowReader) Seek(off int64, whence int) (int64, error) {
	return s.r.(io.Seeker).Seek(off, whence)
}

// Pushes that run at once, as the look-ahead archiver's do, share WALBuffers: each
// stores exactly its own bytes, through a retry that reads its object again, however
// their stores' reading interleaves with the others' sealing. A chunk given back while
// its store still reads it would carry another segment's bytes.
func TestConcurrentPushesSharingBuffersStoreTheirOwnBytes(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx := context.Background()
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	inner := mem.New()
	var rules []faulty.Rule
	for i := range 8 {
		f, _ := wal.Parse(fmt.Sprintf("0000000100000000000000%02X", i+1))
		rules = append(rules, faulty.Rule{Op: faulty.Put, Key: WALKey(f), Fault: faulty.Truncate, Offset: 300 << 10, Count: 1})
	}
	st := retry.New(faulty.New(slowStore{inner}, rules...), retry.Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	bufs := &WALBuffers{}
	contents := make([][]byte, 8)
	for i := range contents {
		if i%2 == 0 {
			contents[i] = benchdata.Random(uint64(100+i), size) // spills
		} else {
			contents[i] = bytes.Repeat([]byte{byte(i)}, size) // a chunk or less
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(contents))
	for i := range contents {
		wg.Go(func() {
			f, _ := wal.Parse(fmt.Sprintf("0000000100000000000000%02X", i+1))
			rp := New(st, Options{Codec: codec, Buffers: bufs, WALMemory: 2 * chunkSize})
			_, errs[i] = rp.PutWAL(ctx, f, bytes.NewReader(contents[i]), size)
		})
	}
	wg.Wait()
	for i, want := range contents {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		f, _ := wal.Parse(fmt.Sprintf("0000000100000000000000%02X", i+1))
		assertStoredWAL(t, inner, f, want)
	}
}

// assertStoredWAL fails the test unless st holds the WAL file f with the plain bytes want.
func assertStoredWAL(t *testing.T, st storage.Store, f wal.File, want []byte) {
	t.Helper()
	o, err := New(st, Options{}).OpenWAL(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	_ = o.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: read back %d bytes (%v) that differ from the %d pushed", f.Name, len(got), err, len(want))
	}
}
