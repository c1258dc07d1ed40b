// Package archive ships WAL files between PostgreSQL and the repository: Push for
// archive_command, Fetch for restore_command.
package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/catalog"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// ErrConflict means the repository holds a different file under the same WAL name.
var ErrConflict = errors.New("repository holds different content under this WAL name")

// Archive pushes and fetches WAL files.
type Archive struct {
	Store storage.Store
	Codec compress.Codec
	Log   *slog.Logger
	// FetchAttempts bounds how often a fetch whose body failed mid-stream is started
	// again (opening the object is retried by the store wrapper itself).
	FetchAttempts int
	// DataDir, when set, is the directory Fetch runs for (restore_command runs in the
	// data directory). When it holds global/pg_control, a file the repository lacks is
	// the end of the archive only if the repository belongs to that cluster.
	DataDir string
}

// Cluster identifies the cluster a WAL file comes from.
type Cluster struct {
	SystemID  catalog.SystemID
	PGVersion int
}

// ClusterFromDataDir reads the identity of the cluster in dataDir.
func ClusterFromDataDir(dataDir string) (Cluster, error) {
	c, err := pg.ReadControl(dataDir)
	if err != nil {
		return Cluster{}, err
	}
	v, err := pg.MajorVersion(dataDir, c)
	if err != nil {
		return Cluster{}, err
	}
	return Cluster{SystemID: catalog.SystemID(c.SystemID), PGVersion: v}, nil
}

// PushResult says what Push did.
type PushResult struct {
	File       wal.File
	Key        string
	Size       int64 // bytes of the WAL file
	Stored     int64 // bytes in the repository
	Duplicate  bool  // the repository already held identical content
	Duration   time.Duration
	Compressed string
}

// Push archives the WAL file at path for cluster. It returns only once the object is
// durable in the repository, or the repository already held identical content.
// cluster may be nil when the data directory is unknown: then a segment's own header
// says which cluster wrote it, and other files are refused.
//
// The file is streamed through the codec into memory (a compressed segment is a few
// MiB), so that a failed upload can be retried from the start.
func (a *Archive) Push(ctx context.Context, path string, cluster *Cluster) (PushResult, error) {
	start := time.Now()
	f, err := wal.Parse(filepath.Base(path))
	if err != nil {
		return PushResult{}, err
	}
	in, err := os.Open(path)
	if err != nil {
		return PushResult{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer func() { _ = in.Close() }() // read-only: a Close error cannot lose data
	fi, err := in.Stat()
	if err != nil {
		return PushResult{}, fmt.Errorf("read %s: %w", path, err)
	}
	head := make([]byte, wal.LongHeaderSize)
	n, err := io.ReadFull(in, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return PushResult{}, fmt.Errorf("read %s: %w", path, err)
	}
	cl, err := checkOrigin(f, head[:n], fi.Size(), cluster)
	if err != nil {
		return PushResult{}, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := catalog.EnsureIdentity(ctx, a.Store, catalog.Identity{
		SystemID: cl.SystemID, PGVersion: cl.PGVersion, Created: time.Now().UTC(),
		CreatedBy: "pgb", FirstWrite: "wal-push " + f.Name,
	}); err != nil {
		return PushResult{}, err
	}

	// Room for the worst case (incompressible data), so the buffer is never copied while
	// it grows. make, unlike bytes.Buffer.Grow, leaves fresh pages untouched: only the
	// compressed bytes cost page faults.
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+fi.Size()/64+envelope.Overhead+64<<10))
	ew, err := envelope.NewWriter(buf, a.Codec)
	if err != nil {
		return PushResult{}, err
	}
	if _, err := ew.Write(head[:n]); err != nil {
		return PushResult{}, err
	}
	size := int64(n)
	// onlyReader hides *os.File's WriterTo, which would copy in 32 KiB pieces.
	if m, err := io.CopyBuffer(ew, onlyReader{in}, make([]byte, 1<<20)); err != nil {
		return PushResult{}, fmt.Errorf("read %s: %w", path, err)
	} else {
		size += m
	}
	if err := ew.Close(); err != nil {
		return PushResult{}, err
	}
	if size != fi.Size() {
		return PushResult{}, fmt.Errorf("%s changed size while being read (%d, now %d bytes)", path, fi.Size(), size)
	}
	res := PushResult{File: f, Key: catalog.WALKey(f), Size: size, Stored: int64(buf.Len()), Compressed: a.Codec.Name()}

	err = a.Store.Put(ctx, res.Key, bytes.NewReader(buf.Bytes()), storage.PutOptions{IfAbsent: true, Size: int64(buf.Len())})
	if errors.Is(err, storage.ErrExist) {
		err = a.compareExisting(ctx, res.Key, ew.Sum(), path)
		res.Duplicate = err == nil
	}
	if err != nil {
		return PushResult{}, fmt.Errorf("archive %s: %w", f.Name, err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

type onlyReader struct{ io.Reader }

// checkOrigin works out which cluster wrote the file and refuses files that do not
// belong to the given cluster. head is the start of the file, size its length.
func checkOrigin(f wal.File, head []byte, size int64, cluster *Cluster) (Cluster, error) {
	if f.Kind != wal.Segment && f.Kind != wal.Partial {
		if cluster == nil {
			return Cluster{}, fmt.Errorf("cannot tell which cluster this %s belongs to: set --pgdata (or run from the data directory, as archive_command does)", f.Kind)
		}
		return *cluster, nil
	}
	h, err := wal.ParseSegmentHeader(head)
	if err != nil {
		return Cluster{}, fmt.Errorf("not a valid WAL segment: %w", err)
	}
	if int64(h.SegSize) != size {
		return Cluster{}, fmt.Errorf("WAL segment is %d bytes but its header says %d: incomplete copy?", size, h.SegSize)
	}
	if cluster == nil {
		if h.MajorGuess == 0 {
			return Cluster{}, fmt.Errorf("cannot tell the PostgreSQL version from the segment (page magic %#x): set --pgdata", h.Magic)
		}
		return Cluster{SystemID: catalog.SystemID(h.SystemID), PGVersion: h.MajorGuess}, nil
	}
	if catalog.SystemID(h.SystemID) != cluster.SystemID {
		return Cluster{}, fmt.Errorf("%w: segment was written by cluster %d, but the data directory is cluster %s",
			catalog.ErrForeignCluster, h.SystemID, cluster.SystemID)
	}
	return *cluster, nil
}

// compareExisting decides whether the object already stored under key holds the same
// content as the file at path, whose sum is sum. The trailer (one ranged read) settles
// most cases; when size and checksum match (or the stored trailer has an older
// checksum algorithm), the stored object is decoded and compared byte for byte, so a
// checksum collision can never hide a conflict.
func (a *Archive) compareExisting(ctx context.Context, key string, sum envelope.Sum, path string) error {
	stored, err := readTrailer(ctx, a.Store, key)
	if err != nil {
		return fmt.Errorf("%w; and its trailer could not be read to compare: %w", ErrConflict, err)
	}
	if stored.MayEqual(sum) {
		if err = a.sameBytes(ctx, key, path); err == nil {
			a.Log.Info("already archived with identical content", "key", key)
			return nil
		}
	}
	return fmt.Errorf("%w: stored %s, this file %s; "+
		"the stored object is left untouched (two clusters archiving into one repository, or a timeline problem)",
		ErrConflict, stored, sum)
}

// sameBytes decodes the stored object and compares it with the file, as a stream
// that reads at most one byte more than the file holds.
func (a *Archive) sameBytes(ctx context.Context, key, path string) error {
	rc, err := a.Store.Get(ctx, key, 0, -1)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }() // read-only: the envelope check decides
	er, err := envelope.NewReader(rc)
	if err != nil {
		return err
	}
	defer func() { _ = er.Close() }() // read-only: the envelope check decides
	return sameContent(er, path)
}

func readTrailer(ctx context.Context, st storage.Store, key string) (envelope.Sum, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return envelope.Sum{}, err
	}
	if info.Size < envelope.Overhead {
		return envelope.Sum{}, fmt.Errorf("%w: %s is %d bytes", envelope.ErrCorrupt, key, info.Size)
	}
	rc, err := st.Get(ctx, key, info.Size-envelope.TrailerSize, envelope.TrailerSize)
	if err != nil {
		return envelope.Sum{}, err
	}
	defer func() { _ = rc.Close() }() // read-only: ParseTrailer checks what was read
	t := make([]byte, envelope.TrailerSize)
	if _, err := io.ReadFull(rc, t); err != nil {
		return envelope.Sum{}, fmt.Errorf("read trailer of %s: %w", key, err)
	}
	return envelope.ParseTrailer(t)
}

// ErrTimeout means a WAL command ran out of its overall deadline (WithDeadline).
var ErrTimeout = errors.New("WAL command deadline exceeded")

// WithDeadline bounds a whole wal-push or wal-fetch, opening the repository and every
// retry included, by d. Explain then names the deadline in the command's error.
func WithDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: gave up after %s (wal-timeout)", ErrTimeout, d))
}

// Explain adds the reason ctx ended to err when it was WithDeadline's deadline, so
// that the message says which setting to change rather than a bare "context deadline
// exceeded".
func Explain(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ErrTimeout) {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrTimeout) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// ErrNotArchived means the repository does not hold the requested WAL file: for
// PostgreSQL, the end of the archive.
var ErrNotArchived = errors.New("not in the archive")

// Fetch restores the WAL file name into dest: written to a temp file beside dest,
// decompressed, checked against its checksum, synced, then renamed. A file that is
// not archived gives an error wrapping ErrNotArchived and writes nothing. When the
// repository itself is missing or uninitialised that is not "end of archive": the
// error wraps catalog.ErrNoIdentity instead.
func (a *Archive) Fetch(ctx context.Context, name, dest string) (envelope.Sum, error) {
	f, err := wal.Parse(name)
	if err != nil {
		return envelope.Sum{}, err
	}
	key := catalog.WALKey(f)
	attempts := max(a.FetchAttempts, 1)
	for i := 1; ; i++ {
		sum, err := a.fetchOnce(ctx, f, key, dest)
		if err == nil {
			return sum, nil
		}
		if errors.Is(err, storage.ErrNotExist) {
			return envelope.Sum{}, a.notArchived(ctx, name)
		}
		if !retryBody(err) || i >= attempts || ctx.Err() != nil {
			return envelope.Sum{}, fmt.Errorf("fetch %s: %w", name, err)
		}
		a.Log.Warn("fetch failed, retrying", "file", name, "attempt", i, "error", err)
	}
}

// notArchived is the error for name, which the repository lacks: ErrNotArchived (the
// end of the archive) only when the repository exists and, with DataDir a data
// directory, belongs to its cluster; otherwise an error wrapping catalog.ErrNoIdentity
// or catalog.ErrForeignCluster, which must stop recovery.
func (a *Archive) notArchived(ctx context.Context, name string) error {
	id, err := catalog.ReadIdentity(ctx, a.Store)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	if a.DataDir != "" {
		c, err := pg.ReadControl(a.DataDir)
		switch {
		case errors.Is(err, pg.ErrNotDataDir): // no cluster to compare with
		case err != nil:
			return fmt.Errorf("fetch %s: not in the repository, and cannot check that the repository belongs to the cluster in %s: %w", name, a.DataDir, err)
		case catalog.SystemID(c.SystemID) != id.SystemID:
			return fmt.Errorf("%s is not in this repository, and that is not the end of the archive: %w: it belongs to cluster %s, the data directory %s is cluster %d: wrong --repo in restore_command",
				name, catalog.ErrForeignCluster, id.SystemID, a.DataDir, c.SystemID)
		}
	}
	return fmt.Errorf("%s: %w", name, ErrNotArchived)
}

// retryBody says whether a failed fetch is worth starting over: storage hiccups while
// streaming the body are, verified corruption and local disk errors are not.
func retryBody(err error) bool {
	var pe *os.PathError
	return !errors.Is(err, envelope.ErrCorrupt) && !errors.As(err, &pe) && !errors.Is(err, context.Canceled)
}

func (a *Archive) fetchOnce(ctx context.Context, f wal.File, key, dest string) (envelope.Sum, error) {
	rc, err := a.Store.Get(ctx, key, 0, -1)
	if err != nil {
		return envelope.Sum{}, err
	}
	defer func() { _ = rc.Close() }() // read-only: the envelope check decides
	er, err := envelope.NewReader(rc)
	if err != nil {
		return envelope.Sum{}, fmt.Errorf("%s: %w", key, err)
	}
	defer func() { _ = er.Close() }() // read-only: the envelope check decides
	out, err := atomicfile.Create(dest, 0o600)
	if err != nil {
		return envelope.Sum{}, err
	}
	defer out.Abort()
	if err := copyWAL(out, er, f, make([]byte, 1<<20)); err != nil {
		return envelope.Sum{}, fmt.Errorf("%s: %w", key, err)
	}
	if err := out.Commit(); err != nil {
		return envelope.Sum{}, err
	}
	return er.Sum(), nil
}
