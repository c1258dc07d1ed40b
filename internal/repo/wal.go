package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

const walPrefix = "wal/"

// WALKey is where an archived WAL file lives: segments, partial segments and backup
// history files under wal/<timeline+log>/, timeline history files at wal/<name>.
func WALKey(f wal.File) string {
	if f.Kind == wal.History {
		return walPrefix + f.Name
	}
	return walPrefix + f.Name[:16] + "/" + f.Name
}

// walLogPrefix is the key prefix of one timeline's log: 256 segments of 16 MiB.
func walLogPrefix(tli, log uint32) string { return fmt.Sprintf("%s%08X%08X/", walPrefix, tli, log) }

// WALPut says what PutWAL stored.
type WALPut struct {
	Key    string // where, for messages
	Stored int64  // bytes in the repository
	Sum    Sum    // size and checksum of the plain bytes
}

// ErrChangedSize means a file did not yield the size it was announced with.
var ErrChangedSize = errors.New("changed size while being read")

// PutWAL seals the size bytes src yields and stores them as the WAL file f, only if
// the repository holds nothing under that name. It returns once the object is
// durable. When an object is already there the error wraps storage.ErrExist and the
// WALPut still carries the Sum of src, so the caller can compare (WALSum, OpenWAL).
//
// The whole sealed object is built in memory first (a compressed segment is a few
// MiB), so a failed upload can be retried from the start. With Options.Buffers the
// memory is borrowed from there and given back once the store is done with it.
func (r *Repo) PutWAL(ctx context.Context, f wal.File, src io.Reader, size int64) (WALPut, error) {
	// Room for the worst case (incompressible data), so the buffer is never copied while
	// it grows. A fresh one from make, unlike bytes.Buffer.Grow, leaves its pages
	// untouched: only the compressed bytes cost page faults.
	need := int(size + size/64 + Overhead + 64<<10)
	sealed := r.buffers.get(need)
	defer r.buffers.put(sealed)
	copyBuf := r.buffers.get(copyBufSize)
	defer r.buffers.put(copyBuf)
	buf := bytes.NewBuffer(sealed[:0])
	ew, err := r.seal(buf, r.codec)
	if err != nil {
		return WALPut{}, err
	}
	// onlyReader hides a WriterTo (*os.File's copies in 32 KiB pieces).
	n, err := io.CopyBuffer(ew, onlyReader{src}, copyBuf[:copyBufSize])
	if err != nil {
		return WALPut{}, err
	}
	if err := ew.Close(); err != nil {
		return WALPut{}, err
	}
	if n != size {
		return WALPut{}, fmt.Errorf("%w (%d, now %d bytes)", ErrChangedSize, size, n)
	}
	res := WALPut{Key: WALKey(f), Stored: int64(buf.Len()), Sum: ew.Sum()}
	// The store is done with the reader once Put returns (retries included): only then
	// does the deferred put hand the buffer to the next segment.
	err = r.st.Put(ctx, res.Key, bytes.NewReader(buf.Bytes()), storage.PutOptions{IfAbsent: true, Size: int64(buf.Len())})
	return res, err
}

// copyBufSize is what PutWAL reads at a time: a multiple of the codecs' blocks, small
// enough that the copy costs little resident memory.
const copyBufSize = 256 << 10

// WALBuffers lends PutWAL its buffers for reuse across calls; safe for concurrent use.
// It keeps at most a few idle buffers: as many as were in use at once, up to
// maxIdleBuffers. The zero value is ready; a nil *WALBuffers allocates afresh.
type WALBuffers struct {
	mu   sync.Mutex
	idle [][]byte
}

const maxIdleBuffers = 8

// get returns a buffer of length n: an idle one large enough (whatever it held before
// is overwritten by its borrower, which uses only what it wrote), or a fresh one.
func (p *WALBuffers) get(n int) []byte {
	if p == nil {
		return make([]byte, n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1 // the smallest that fits: a copy buffer must not take a segment's
	for i, b := range p.idle {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.idle[best])) {
			best = i
		}
	}
	if best < 0 {
		return make([]byte, n)
	}
	b := p.idle[best]
	p.idle = slices.Delete(p.idle, best, best+1)
	return b[:n]
}

// put gives b back for reuse.
func (p *WALBuffers) put(b []byte) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) < maxIdleBuffers {
		p.idle = append(p.idle, b[:cap(b)])
	}
}

type onlyReader struct{ io.Reader }

// OpenWAL opens the archived WAL file f for verified reading. A file the repository
// lacks is an error wrapping storage.ErrNotExist.
func (r *Repo) OpenWAL(ctx context.Context, f wal.File) (*Object, error) {
	return r.open(ctx, WALKey(f))
}

// StatWAL returns the stored size of the archived WAL file f: one Stat (a HEAD on S3),
// nothing read. A file the repository lacks is an error wrapping storage.ErrNotExist.
func (r *Repo) StatWAL(ctx context.Context, f wal.File) (int64, error) {
	o, err := r.st.Stat(ctx, WALKey(f))
	if err != nil {
		return 0, err
	}
	return o.Size, nil
}

// WALSum is the size and checksum of the archived WAL file f, from one ranged read of
// its trailer.
func (r *Repo) WALSum(ctx context.Context, f wal.File) (Sum, error) {
	return r.readTrailer(ctx, WALKey(f))
}

// WALObject is one archived WAL file.
type WALObject struct {
	wal.File
	Key    string    // for messages
	Size   int64     // bytes stored
	Stored time.Time // when it was stored, as the store reports it
}

// ListWAL calls fn for every archived WAL file, in key order: per timeline and log,
// files come in WAL order. Objects under wal/ that are not where pgb puts a WAL file
// of their name are skipped.
func (r *Repo) ListWAL(ctx context.Context, fn func(WALObject) error) error {
	return r.listWAL(ctx, walPrefix, fn)
}

// ListWALRange is ListWAL for the files of timeline tli whose log (the middle eight
// hex digits of a segment name) lies in [fromLog, toLog]: one listing per log, never
// the whole archive. Timeline history files are not included (ReadHistory).
func (r *Repo) ListWALRange(ctx context.Context, tli, fromLog, toLog uint32, fn func(WALObject) error) error {
	for log := fromLog; log <= toLog; log++ {
		if err := r.listWAL(ctx, walLogPrefix(tli, log), fn); err != nil {
			return err
		}
		if log == ^uint32(0) {
			break
		}
	}
	return nil
}

func (r *Repo) listWAL(ctx context.Context, prefix string, fn func(WALObject) error) error {
	return r.st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		f, err := wal.Parse(o.Key[strings.LastIndexByte(o.Key, '/')+1:])
		if err != nil || o.Key != WALKey(f) {
			return nil
		}
		return fn(WALObject{File: f, Key: o.Key, Size: o.Size, Stored: o.ModTime})
	})
}

// ReadHistory reads the archived history file of timeline tli, at most
// wal.MaxHistorySize bytes of it: more is an error wrapping wal.ErrBadHistory.
func (r *Repo) ReadHistory(ctx context.Context, tli uint32) ([]byte, error) {
	key := WALKey(wal.File{Name: fmt.Sprintf("%08X.history", tli), Kind: wal.History, Timeline: tli})
	o, err := r.open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	b, err := io.ReadAll(io.LimitReader(o, wal.MaxHistorySize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(b) > wal.MaxHistorySize {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", key, wal.ErrBadHistory, wal.MaxHistorySize)
	}
	return b, nil
}

// ErrWALTimeout means a WAL file did not reach the repository in time.
var ErrWALTimeout = errors.New("WAL file did not reach the repository in time")

// WaitForWAL polls until the WAL file f is in the repository, for at most timeout.
func (r *Repo) WaitForWAL(ctx context.Context, f wal.File, timeout time.Duration) error {
	return r.WaitForWALUntil(ctx, f, timeout, nil)
}

// WaitForWALUntil is WaitForWAL that also gives up as soon as probe (if not nil)
// returns an error, which it returns: probe tells when the file can no longer arrive,
// such as archive_command failing for it.
func (r *Repo) WaitForWALUntil(ctx context.Context, f wal.File, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := r.st.Stat(ctx, WALKey(f))
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrNotExist) {
			return fmt.Errorf("look for %s: %w", f.Name, err)
		}
		if probe != nil {
			if err := probe(ctx); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s after %s", ErrWALTimeout, f.Name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
