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
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// ErrConflict means the repository holds a different file under the same WAL name.
var ErrConflict = errors.New("repository holds different content under this WAL name")

// Archive pushes and fetches WAL files.
type Archive struct {
	Repo *repo.Repo
	Log  *slog.Logger
	// DataDir, when set, is the directory Fetch runs for (restore_command runs in the
	// data directory). When it holds global/pg_control, a file the repository lacks is
	// the end of the archive only if the repository belongs to that cluster.
	DataDir string
}

// Cluster identifies the cluster a WAL file comes from.
type Cluster struct {
	SystemID  repo.SystemID
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
	return Cluster{SystemID: repo.SystemID(c.SystemID), PGVersion: v}, nil
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
	// Source is what fstat said of the file that was read, before it was read: which
	// file (device, inode) and which version of it (size, modification time).
	Source os.FileInfo
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
	res, err := a.store(ctx, f, cl, "wal-push", io.MultiReader(bytes.NewReader(head[:n]), in), fi.Size(),
		func(stored io.Reader) error { return sameContent(stored, path) })
	if errors.Is(err, repo.ErrChangedSize) {
		return PushResult{}, fmt.Errorf("%s %w", path, err)
	}
	if err != nil {
		return PushResult{}, err
	}
	res.Source = fi
	res.Duration = time.Since(start)
	return res, nil
}

// PushData archives data as the WAL file f, exactly as Push archives a file of that
// name and content: what pgb wal-stream stores of a segment it has received whole, and
// of a timeline history file. A segment must belong to cluster (not nil).
func (a *Archive) PushData(ctx context.Context, f wal.File, data []byte, cluster *Cluster) (PushResult, error) {
	start := time.Now()
	cl, err := checkOrigin(f, data[:min(len(data), wal.LongHeaderSize)], int64(len(data)), cluster)
	if err != nil {
		return PushResult{}, fmt.Errorf("%s: %w", f.Name, err)
	}
	res, err := a.store(ctx, f, cl, "wal-stream", bytes.NewReader(data), int64(len(data)), func(stored io.Reader) error {
		return sameReader(stored, bytes.NewReader(data), int64(len(data)))
	})
	if err != nil {
		return PushResult{}, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// store puts the size bytes of src as f into the repository of cluster cl (by names
// the command, for a new repository's pgb.json). When an
// object is already there, same compares its decoded content with what src held.
func (a *Archive) store(ctx context.Context, f wal.File, cl Cluster, by string, src io.Reader, size int64, same func(io.Reader) error) (PushResult, error) {
	if _, err := a.Repo.EnsureIdentity(ctx, repo.Identity{
		SystemID: cl.SystemID, PGVersion: cl.PGVersion, Created: time.Now().UTC(),
		CreatedBy: "pgb", FirstWrite: by + " " + f.Name,
	}); err != nil {
		return PushResult{}, err
	}
	put, err := a.Repo.PutWAL(ctx, f, src, size)
	res := PushResult{File: f, Key: put.Key, Size: put.Sum.Size, Stored: put.Stored, Compressed: a.Repo.Codec().Name()}
	if errors.Is(err, repo.ErrChangedSize) {
		return PushResult{}, err
	}
	if errors.Is(err, storage.ErrExist) {
		err = a.compareExisting(ctx, f, put.Trailer, same)
		res.Duplicate = err == nil
	}
	if err != nil {
		return PushResult{}, fmt.Errorf("archive %s: %w", f.Name, err)
	}
	return res, nil
}

// ErrNotThisSegment means a file's content is not the WAL segment its name says: its
// first page header is for another position in the WAL. Storing it under that name would
// put wrong bytes in the archive and then refuse the real segment as a conflict.
var ErrNotThisSegment = errors.New("not the WAL segment its name says")

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
	if start := wal.LSN(f.SegmentNumber(uint64(h.SegSize)) * uint64(h.SegSize)); h.PageAddr != start {
		return Cluster{}, fmt.Errorf("%w: its first page is for WAL at %s, but segment %s starts at %s "+
			"(a recycled segment file, or one copied under another name); PostgreSQL's archive_command only passes segments it has completed",
			ErrNotThisSegment, h.PageAddr, f.SegmentName(), start)
	}
	if cluster == nil {
		if h.MajorGuess == 0 {
			return Cluster{}, fmt.Errorf("cannot tell the PostgreSQL version from the segment (page magic %#x): set --pgdata", h.Magic)
		}
		return Cluster{SystemID: repo.SystemID(h.SystemID), PGVersion: h.MajorGuess}, nil
	}
	if repo.SystemID(h.SystemID) != cluster.SystemID {
		return Cluster{}, fmt.Errorf("%w: segment was written by cluster %d, but the data directory is cluster %s",
			repo.ErrForeignCluster, h.SystemID, cluster.SystemID)
	}
	return *cluster, nil
}

// compareExisting decides whether the object already stored for f holds the same
// content as the file at path, whose trailer would be sum. The trailer (one ranged
// read) settles most cases. Encrypted objects carry a keyed tag: two tags under the
// same MAC key decide without decoding (a writer holds no identity to decode with).
// Otherwise, when size and checksum match (or the checksums cannot be compared: an
// older algorithm, a tag under another MAC key, one side encrypted), the stored object
// is decoded and compared byte for byte, so a checksum collision can never hide a
// conflict.
func (a *Archive) compareExisting(ctx context.Context, f wal.File, sum repo.Sum, same func(io.Reader) error) error {
	stored, err := a.Repo.WALSum(ctx, f)
	if err != nil {
		// Not a conflict (yet): the stored object could not be read. A retry compares.
		return fmt.Errorf("the repository already holds %s, and its trailer could not be read to compare it with this file: %w", f.Name, err)
	}
	// A tag decides only for a writer that cannot decrypt: its CRCs are no defence
	// against bytes crafted to match, so a host that can compare the bytes does.
	if stored.Same(sum) && !a.Repo.CanDecrypt() {
		a.Log.Info("already archived with identical content", "file", f.Name)
		return nil
	}
	if stored.MayEqual(sum) {
		err = a.sameBytes(ctx, f, same)
		if err == nil {
			a.Log.Info("already archived with identical content", "file", f.Name)
			return nil
		}
		if !errors.Is(err, errContentDiffers) && !errors.Is(err, repo.ErrNoKey) && !errors.Is(err, repo.ErrWrongKey) {
			// Not a conflict (yet): the stored object could not be read. A retry compares.
			return fmt.Errorf("the repository already holds %s, and it could not be read to compare it with this file: %w", f.Name, err)
		}
		if errors.Is(err, repo.ErrNoKey) || errors.Is(err, repo.ErrWrongKey) {
			return fmt.Errorf("%w: stored %s, this file %s; the stored object is encrypted and cannot be compared here: "+
				"give this host the encryption-mac-key the object was written with, or an encryption-identity-file that decrypts it; it is left untouched",
				ErrConflict, stored, sum)
		}
	}
	return fmt.Errorf("%w: stored %s, this file %s; "+
		"the stored object is left untouched (two clusters archiving into one repository, or a timeline problem)",
		ErrConflict, stored, sum)
}

// sameBytes decodes the stored object and compares it, with same, with what was to be
// stored.
func (a *Archive) sameBytes(ctx context.Context, f wal.File, same func(io.Reader) error) error {
	o, err := a.Repo.OpenWAL(ctx, f)
	if err != nil {
		return err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	return same(o)
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
// error wraps repo.ErrNoIdentity instead.
//
// Fetch reads the object once: the store underneath retries what is worth retrying,
// a broken body included (resumed from its first unread byte), so a failure here is
// final.
func (a *Archive) Fetch(ctx context.Context, name, dest string) (repo.Sum, error) {
	f, err := wal.Parse(name)
	if err != nil {
		return repo.Sum{}, err
	}
	sum, opened, err := a.fetch(ctx, f, dest)
	if !opened && errors.Is(err, storage.ErrNotExist) {
		return repo.Sum{}, a.notArchived(ctx, name)
	}
	if err != nil {
		return repo.Sum{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	return sum, nil
}

// systemID is the system identifier of the cluster in DataDir, which fetched segments
// must carry; 0 (no check) without one.
func (a *Archive) systemID() uint64 {
	if a.DataDir == "" {
		return 0
	}
	c, err := pg.ReadControl(a.DataDir)
	if err != nil {
		return 0 // not a data directory, or unreadable: the WAL's own checks remain
	}
	return c.SystemID
}

// notArchived is the error for name, which the repository lacks: ErrNotArchived (the
// end of the archive) only when the repository exists and, with DataDir a data
// directory, belongs to its cluster; otherwise an error wrapping repo.ErrNoIdentity
// or repo.ErrForeignCluster, which must stop recovery.
func (a *Archive) notArchived(ctx context.Context, name string) error {
	id, err := a.Repo.Identity(ctx)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	if a.DataDir != "" {
		c, err := pg.ReadControl(a.DataDir)
		switch {
		case errors.Is(err, pg.ErrNotDataDir): // no cluster to compare with
		case err != nil:
			return fmt.Errorf("fetch %s: not in the repository, and cannot check that the repository belongs to the cluster in %s: %w", name, a.DataDir, err)
		case repo.SystemID(c.SystemID) != id.SystemID:
			return fmt.Errorf("%s is not in this repository, and that is not the end of the archive: %w: it belongs to cluster %s, the data directory %s is cluster %d: wrong --repo in restore_command",
				name, repo.ErrForeignCluster, id.SystemID, a.DataDir, c.SystemID)
		}
	}
	return fmt.Errorf("%s: %w", name, ErrNotArchived)
}

// fetch reads f into dest. opened says whether the object was there: only a file that
// could not be opened at all is missing from the archive. One that vanishes while being
// read (its resumption finding nothing) is a failed read, never the end of the archive.
func (a *Archive) fetch(ctx context.Context, f wal.File, dest string) (sum repo.Sum, opened bool, err error) {
	o, err := a.Repo.OpenWAL(ctx, f)
	if errors.Is(err, storage.ErrNotExist) && f.Kind == wal.Segment {
		// Not stored whole: maybe streamed. The stream may complete the segment (and
		// remove its chunks) or merge chunks (removing the merged ones) while this
		// reads: then the segment, or the chunks, are looked for again before either
		// answer stands.
		// "Not streamed" is looked at once more (the usual end of the archive costs one
		// listing and one look more), a chunk vanishing mid-read twice more.
		for try := 0; errors.Is(err, storage.ErrNotExist); try++ {
			sum, opened, serr := a.fetchStreamed(ctx, f, dest)
			again := errors.Is(serr, repo.ErrVanished) || (try == 0 && errors.Is(serr, repo.ErrNotStreamed))
			if try == 2 || !again {
				return sum, opened, serr
			}
			o, err = a.Repo.OpenWAL(ctx, f)
		}
	}
	if err != nil {
		return repo.Sum{}, false, err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	if err := a.copyTo(dest, o, f, o.Key()); err != nil {
		return repo.Sum{}, true, err
	}
	return o.Sum(), true, nil
}

// fetchStreamed reads a segment that pgb wal-stream has stored only as chunks (the
// segment it is writing, or was when the primary was lost): the streamed bytes,
// zero-padded to the segment's size, as PostgreSQL's own WAL receiver leaves it.
// Recovery replays to the last streamed byte and stops there. No chunk from the
// segment's start is "not there" (opened is false).
func (a *Archive) fetchStreamed(ctx context.Context, f wal.File, dest string) (sum repo.Sum, opened bool, err error) {
	s, err := a.Repo.OpenStreamedWAL(ctx, f)
	if err != nil {
		return repo.Sum{}, !errors.Is(err, storage.ErrNotExist), err
	}
	defer func() { _ = s.Close() }() // read-only: each chunk's envelope check decides
	if err := a.copyTo(dest, s, f, f.Name+" (streamed)"); err != nil {
		return repo.Sum{}, true, err
	}
	a.Log.Info("served a segment from streamed chunks, zero-padded after the last streamed byte",
		"file", f.Name, "streamed_bytes", s.End, "segment_bytes", s.SegSize)
	return repo.Sum{Size: s.SegSize}, true, nil
}

// copyTo writes the WAL file r (of kind f, named what for errors) to dest atomically.
func (a *Archive) copyTo(dest string, r io.Reader, f wal.File, what string) error {
	out, err := atomicfile.Create(dest, 0o600)
	if err != nil {
		return err
	}
	defer out.Abort()
	if err := copyWAL(out, r, f, make([]byte, 1<<20), a.systemID()); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return out.Commit()
}
