package repo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// chunkSize is the unit PutWAL's memory comes in: a multiple of the codecs' blocks and
// of the page size.
const chunkSize = 256 << 10

// DefaultWALMemory is how much of one sealed WAL file PutWAL keeps in memory; the rest
// goes to a temporary file (see sealBuf). A segment of pgbench's WAL compresses with
// lz4 to 1.5–6 MiB, with zstd to 1–3 MiB; an incompressible one stays 16 MiB.
const DefaultWALMemory = 1 << 20

// WALBuffers lends PutWAL its memory, in chunks of chunkSize, for reuse across calls;
// safe for concurrent use. It keeps at most maxIdleChunks idle. The zero value is
// ready; a nil *WALBuffers allocates afresh.
type WALBuffers struct {
	mu   sync.Mutex
	idle [][]byte
}

// maxIdleChunks: what two segments in flight keep in memory (DefaultWALMemory each)
// plus their copy buffers.
const maxIdleChunks = 2 * (DefaultWALMemory/chunkSize + 1)

// chunk returns a chunk of chunkSize bytes: an idle one (whatever it held before is
// overwritten by its borrower, which reads only what it wrote) or a fresh one.
func (p *WALBuffers) chunk() []byte {
	if p == nil {
		return make([]byte, chunkSize)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return c
	}
	return make([]byte, chunkSize)
}

// release gives chunks back for reuse.
func (p *WALBuffers) release(chunks ...[]byte) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range chunks {
		if len(p.idle) < maxIdleChunks && cap(c) == chunkSize {
			p.idle = append(p.idle, c[:chunkSize])
		}
	}
}

// sealBuf holds a sealed object while it is written and until the store is done with
// it: its first bytes, up to memory (a multiple of chunkSize), in chunks borrowed
// from a WALBuffers; the rest in a temporary file with no name (TempFile, in $TMPDIR),
// so that the memory one WAL push takes stays bounded whatever the data compresses to.
// When no temporary file can be made, or writing to it fails (a full $TMPDIR), the
// bytes stay in memory: archiving must not stop for a full or read-only $TMPDIR. The
// object is read back (Reader) from the start as many times as the store needs to
// retry.
type sealBuf struct {
	pool         *WALBuffers
	memory       int64
	chunks       [][]byte
	mem          int64    // bytes in chunks
	file         *os.File // the bytes after the first mem, once spilled
	inFile       int64
	noFile       bool // a temporary file could not be made: memory only
	tmpDir       string
	onSpillError func(error)
}

func newSealBuf(pool *WALBuffers, memory int64, tmpDir string, onSpillError func(error)) *sealBuf {
	memory = max(chunkSize, memory/chunkSize*chunkSize)
	return &sealBuf{pool: pool, memory: memory, tmpDir: tmpDir, onSpillError: onSpillError}
}

// Len is the number of bytes written.
func (b *sealBuf) Len() int64 { return b.mem + b.inFile }

func (b *sealBuf) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && b.file == nil {
		if b.mem >= b.memory && !b.noFile {
			if err := b.spill(); err == nil {
				break
			}
		}
		i := int(b.mem % chunkSize)
		if i == 0 {
			b.chunks = append(b.chunks, b.pool.chunk())
		}
		room := chunkSize - i
		if !b.noFile {
			room = int(min(int64(room), b.memory-b.mem))
		}
		c := copy(b.chunks[len(b.chunks)-1][i:i+min(room, len(p))], p)
		b.mem += int64(c)
		n += c
		p = p[c:]
	}
	if len(p) > 0 {
		m, err := b.file.Write(p)
		b.inFile += int64(m)
		n += m
		if err != nil {
			// A full $TMPDIR lets the file be made (an inode, no block) and fails
			// its writes: the rest stays in memory, as when no file can be made.
			if uerr := b.unspill(err); uerr != nil {
				return n, fmt.Errorf("temporary file: %w (reading it back: %w)", err, uerr)
			}
			m, err := b.Write(p[m:])
			return n + m, err
		}
	}
	return n, nil
}

// unspill moves what the temporary file holds into memory, after the chunks (b.mem is
// then b.memory, a multiple of chunkSize), and drops the file: the bytes written after
// it failed with cause stay in memory.
func (b *sealBuf) unspill(cause error) error {
	for off := int64(0); off < b.inFile; {
		c := b.pool.chunk()
		k := min(int64(chunkSize), b.inFile-off)
		if n, err := b.file.ReadAt(c[:k], off); err != nil && (!errors.Is(err, io.EOF) || int64(n) != k) {
			b.pool.release(c)
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the file is shorter than what was written to it
			}
			return err
		}
		b.chunks = append(b.chunks, c)
		b.mem += k
		off += k
	}
	_ = b.file.Close() // a scratch copy, read back whole
	b.file = nil
	b.inFile = 0
	b.noFile = true
	if b.onSpillError != nil {
		b.onSpillError(cause)
	}
	return nil
}

// spill starts the temporary file; when it cannot, the rest stays in memory.
func (b *sealBuf) spill() error {
	f, err := TempFile(b.tmpDir, ".pgb-wal-*")
	if err != nil {
		b.noFile = true
		if b.onSpillError != nil {
			b.onSpillError(err)
		}
		return err
	}
	b.file = f
	return nil
}

// Close gives the chunks back and closes the temporary file (which, having no name,
// is gone with it). The buffer and its readers are not used afterwards.
func (b *sealBuf) Close() {
	b.pool.release(b.chunks...)
	b.chunks = nil
	if b.file != nil {
		_ = b.file.Close() // a scratch copy: what was stored is checked by the store
		b.file = nil
	}
}

// Reader reads the whole object from its start; it is an io.Seeker, so that a failed
// upload can be retried.
func (b *sealBuf) Reader() io.ReadSeeker { return &sealReader{b: b} }

type sealReader struct {
	b   *sealBuf
	off int64
}

func (r *sealReader) Read(p []byte) (int, error) {
	b := r.b
	size := b.Len()
	if r.off >= size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.off < b.mem {
		c := b.chunks[r.off/chunkSize]
		i := r.off % chunkSize
		end := min(chunkSize, b.mem-r.off/chunkSize*chunkSize)
		n := copy(p, c[i:end])
		r.off += int64(n)
		return n, nil
	}
	want := min(int64(len(p)), size-r.off)
	n, err := b.file.ReadAt(p[:want], r.off-b.mem)
	r.off += int64(n)
	if err != nil && (!errors.Is(err, io.EOF) || int64(n) != want) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file is shorter than what was written to it
		}
		return n, fmt.Errorf("temporary file: %w", err)
	}
	return n, nil
}

func (r *sealReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.b.Len()
	default:
		return 0, fmt.Errorf("seek: whence %d", whence)
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = offset
	return offset, nil
}
