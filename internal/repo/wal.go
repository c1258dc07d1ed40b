package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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
	// Trailer is what the object's trailer records (WALSum reads it back): Sum, or for
	// an encrypted object its keyed tag.
	Trailer Sum
}

// ErrChangedSize means a file did not yield the size it was announced with.
var ErrChangedSize = errors.New("changed size while being read")

// PutWAL seals the size bytes src yields and stores them as the WAL file f, only if
// the repository holds nothing under that name. It returns once the object is
// durable. When an object is already there the error wraps storage.ErrExist and the
// WALPut still carries the Sum of src, so the caller can compare (WALSum, OpenWAL).
//
// The whole sealed object is built before it is stored, so that a failed upload can
// be retried from the start: its first Options.WALMemory bytes in memory (borrowed
// from Options.Buffers when set), the rest in a temporary file with no name in
// $TMPDIR. A push's memory stays bounded whatever its segment compresses to.
func (r *Repo) PutWAL(ctx context.Context, f wal.File, src io.Reader, size int64) (WALPut, error) {
	sealed := newSealBuf(r.buffers, r.walMemory, "", func(err error) {
		// Not an error (the push goes on, in memory), but it takes up to a segment's
		// worth of memory per push: say so, once per push.
		r.log.Warn("sealing the WAL file in memory: its temporary file failed (is $TMPDIR full or read-only?)", "file", f.Name, "error", err)
	})
	defer sealed.Close()
	copyBuf := r.buffers.chunk()
	defer r.buffers.release(copyBuf)
	if err := r.sealing(ctx, WALKey(f)); err != nil {
		return WALPut{}, err
	}
	ew, err := r.seal(sealed, r.codec, WALKey(f))
	if err != nil {
		return WALPut{}, err
	}
	// onlyReader hides a WriterTo (*os.File's copies in 32 KiB pieces).
	n, err := io.CopyBuffer(ew, onlyReader{src}, copyBuf)
	if err != nil {
		return WALPut{}, err
	}
	if err := ew.Close(); err != nil {
		return WALPut{}, err
	}
	if n != size {
		return WALPut{}, fmt.Errorf("%w (%d, now %d bytes)", ErrChangedSize, size, n)
	}
	res := WALPut{Key: WALKey(f), Stored: sealed.Len(), Sum: ew.Sum(), Trailer: ew.Trailer()}
	if Encrypts(res.Key) {
		if err := r.registerRecipients(ctx); err != nil {
			return res, err
		}
	}
	// The store is done with the reader once Put returns (retries included): only then
	// does the deferred Close hand the memory to the next segment.
	err = r.st.Put(ctx, res.Key, sealed.Reader(), storage.PutOptions{IfAbsent: true, Size: sealed.Len()})
	return res, err
}

type onlyReader struct{ io.Reader }

// OpenWAL opens the archived WAL file f for verified reading. A file the repository
// lacks is an error wrapping storage.ErrNotExist.
//
// Reading fails as ErrCorrupt as soon as the object decodes to more than a file of its
// kind can hold (maxWALFileSize): a hostile object cannot fill the disk before its
// trailer is reached.
func (r *Repo) OpenWAL(ctx context.Context, f wal.File) (*Object, error) {
	o, err := r.open(ctx, WALKey(f))
	if err != nil {
		return nil, err
	}
	o.er.SetLimit(maxWALFileSize(f.Kind))
	return o, nil
}

// maxWALFileSize is the most a WAL file of kind k may hold: a segment (or partial
// segment) at most PostgreSQL's largest segment size, 1 GiB; a history or backup
// history file wal.MaxHistorySize.
func maxWALFileSize(k wal.Kind) int64 {
	if k == wal.Segment || k == wal.Partial {
		return 1 << 30
	}
	return wal.MaxHistorySize
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
// its trailer: for an encrypted object its keyed tag (compare with WALPut.Trailer).
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
		if w, ok := walObjectAt(o); ok {
			return fn(w)
		}
		return nil
	})
}

// walObjectAt is the WAL file stored as o; ok is false for any other object under wal/
// (not where pgb puts a WAL file of its name, or a streamed chunk).
func walObjectAt(o storage.ObjectInfo) (w WALObject, ok bool) {
	f, err := wal.Parse(o.Key[strings.LastIndexByte(o.Key, '/')+1:])
	if err != nil || o.Key != WALKey(f) {
		return WALObject{}, false
	}
	return WALObject{File: f, Key: o.Key, Size: o.Size, Stored: o.ModTime}, true
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
	delay := firstWALPoll
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
		case <-time.After(delay):
		}
		delay = min(2*delay, lastWALPoll)
	}
}

// WaitForWAL's polls: the first soon after the call, as the file usually arrives within
// milliseconds (a backup-push waits for its stop segment, which PostgreSQL's
// archive_command ships right after pg_backup_stop), then doubling up to every 100 ms.
const (
	firstWALPoll = 5 * time.Millisecond
	lastWALPoll  = 100 * time.Millisecond
)
