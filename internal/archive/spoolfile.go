package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// A spooled file (the prefetch spool, pg_wal/pgb/fetch/NAME) is the WAL file's plain
// bytes followed by a record saying what they are, then a fixed footer:
//
//	WAL bytes (record.Size) | record (JSON) | "PGBSPL01" | record length (uint64 LE)
//
// The record and the bytes live in one file, made visible under its final name by one
// rename once complete: a file under a WAL name is whole or absent. Serving it truncates
// the record away and renames the bytes to DEST.
const (
	spoolMagic     = "PGBSPL01"
	spoolFooter    = len(spoolMagic) + 8
	maxSpoolRecord = 64 << 10
	// verifyBuffer is the read size of the checksum a serve computes: small enough for
	// the bytes read to be summed from the CPU cache, not from memory (a 1 MiB buffer
	// costs a third more CPU per 16 MiB segment, and a fresh process faults it in).
	verifyBuffer = 256 << 10
)

// RepoID names the repository a spooled file came from: its location and the fields of
// its identity document, so that a repository re-created at the same place (another
// cluster, or the same cluster's new repository) never serves another's files.
type RepoID struct {
	Location  string        `json:"location"`
	SystemID  repo.SystemID `json:"system_identifier"`
	PGVersion int           `json:"pg_version"`
	Created   time.Time     `json:"created"`
}

// RepoID reads the identity of the archive's repository (pgb.json, read once per Repo).
func (a *Archive) RepoID(ctx context.Context) (RepoID, error) {
	id, err := a.Repo.Identity(ctx)
	if err != nil {
		return RepoID{}, err
	}
	return RepoID{Location: a.Repo.String(), SystemID: id.SystemID, PGVersion: id.PGVersion, Created: id.Created}, nil
}

func (r RepoID) same(o RepoID) bool {
	return r.Location == o.Location && r.SystemID == o.SystemID && r.PGVersion == o.PGVersion && r.Created.Equal(o.Created)
}

// spoolRecord is what the prefetcher writes after a spooled file's bytes.
type spoolRecord struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Alg      byte   `json:"alg"`      // the stored object's checksum algorithm (envelope.Sum)
	Checksum string `json:"checksum"` // hex, all 32 bytes
	Repo     RepoID `json:"repo"`
}

func (r spoolRecord) sum() (repo.Sum, error) {
	b, err := hex.DecodeString(r.Checksum)
	if err != nil || len(b) != 32 {
		return repo.Sum{}, fmt.Errorf("bad checksum %.80q in its record", r.Checksum)
	}
	s := repo.Sum{Size: r.Size, Alg: r.Alg}
	copy(s.Checksum[:], b)
	return s, nil
}

// sumHash returns a hash computing the checksum of algorithm alg as the envelope
// records it (CRC-32C big-endian in the first 4 bytes, or SHA-256 in old objects).
func sumHash(alg byte) (hash.Hash, error) {
	switch alg {
	case 1:
		return crc32c.New(), nil
	case 0:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("unknown checksum algorithm %d", alg)
}

// appendSpoolRecord writes rec and the footer at the end of w.
func appendSpoolRecord(w io.Writer, rec spoolRecord) error {
	js, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	foot := make([]byte, spoolFooter)
	copy(foot, spoolMagic)
	binary.LittleEndian.PutUint64(foot[len(spoolMagic):], uint64(len(js)))
	_, err = w.Write(append(js, foot...))
	return err
}

// readSpoolRecord reads the record at the end of f, a file of size bytes, and checks
// that the size adds up. The file is untrusted (another process may have left it):
// the record is bounded and its fields are checked by the caller.
func readSpoolRecord(f *os.File, size int64) (spoolRecord, error) {
	if size < int64(spoolFooter) {
		return spoolRecord{}, errors.New("too short to hold a spool record")
	}
	foot := make([]byte, spoolFooter)
	if _, err := f.ReadAt(foot, size-int64(spoolFooter)); err != nil {
		return spoolRecord{}, err
	}
	if string(foot[:len(spoolMagic)]) != spoolMagic {
		return spoolRecord{}, errors.New("no spool record at its end")
	}
	n := binary.LittleEndian.Uint64(foot[len(spoolMagic):])
	if n == 0 || n > maxSpoolRecord || int64(n) > size-int64(spoolFooter) {
		return spoolRecord{}, fmt.Errorf("spool record of %d bytes", n)
	}
	js := make([]byte, n)
	if _, err := f.ReadAt(js, size-int64(spoolFooter)-int64(n)); err != nil {
		return spoolRecord{}, err
	}
	var rec spoolRecord
	if err := json.Unmarshal(js, &rec); err != nil {
		return spoolRecord{}, fmt.Errorf("spool record: %w", err)
	}
	if rec.Size != size-int64(spoolFooter)-int64(n) {
		return spoolRecord{}, fmt.Errorf("holds %d bytes of WAL, its record says %d", size-int64(spoolFooter)-int64(n), rec.Size)
	}
	return rec, nil
}

// TakeSpooled moves the verified spooled copy of the WAL segment name from the spool
// directory dir to dest, and reports whether it did. A copy is served only when its
// record names this file and this repository (RepoID) and its bytes have the size and
// checksum of the stored object they were decoded from; any other copy is removed
// (and logged) and false returned, so that the caller fetches from the repository
// itself. TakeSpooled never says a file is missing from the archive: false only means
// "not served from the spool".
//
// The copy is first claimed by a rename to a name of this process, so a prefetcher
// replacing or removing the file meanwhile cannot change what is verified and served.
func (a *Archive) TakeSpooled(ctx context.Context, dir, name, dest string) (repo.Sum, bool) {
	f, err := wal.Parse(name)
	if err != nil || f.Kind != wal.Segment {
		return repo.Sum{}, false
	}
	claimed := filepath.Join(dir, name+".taken."+strconv.Itoa(os.Getpid()))
	if err := os.Rename(filepath.Join(dir, name), claimed); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.Log.Warn("prefetch spool: cannot take a spooled file; fetching from the repository", "file", name, "err", err)
		}
		return repo.Sum{}, false
	}
	defer func() { _ = os.Remove(claimed) }() // served (renamed away) or refused: the claimed name goes
	// The repository's identity is read while the bytes are summed (on an object store
	// a request: its latency hides behind the checksum), and compared before serving.
	// A refused copy cancels the read: the direct fetch that follows has the repository
	// to itself, and no goroutine outlives the call.
	idCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ids := make(chan repoIDResult, 1)
	go func() {
		id, err := a.RepoID(idCtx)
		ids <- repoIDResult{id, err}
	}()
	var got *repoIDResult
	repoID := func() repoIDResult {
		if got == nil {
			r := <-ids
			got = &r
		}
		return *got
	}
	sum, err := a.serveClaimed(claimed, name, dest, func() (RepoID, error) {
		r := repoID()
		return r.id, r.err
	})
	if err != nil {
		cancel()
		repoID()
	}
	switch {
	case errors.Is(err, errNoRepoID):
		// The repository's own answer decides: the direct fetch reports this error.
		return repo.Sum{}, false
	case err != nil:
		a.Log.Warn("prefetch spool: spooled copy not served; fetching from the repository", "file", name, "err", err)
		return repo.Sum{}, false
	}
	return sum, true
}

type repoIDResult struct {
	id  RepoID
	err error
}

// errNoRepoID is serveClaimed's error when the repository's identity could not be read.
var errNoRepoID = errors.New("the repository's identity could not be read")

// serveClaimed verifies the claimed spool file for name and moves its WAL bytes to dest.
// repoID returns the identity of the repository the file must come from; it is called
// once, after the bytes are summed, unless an earlier check refused the file.
func (a *Archive) serveClaimed(claimed, name, dest string, repoID func() (RepoID, error)) (repo.Sum, error) {
	fl, err := os.OpenFile(claimed, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return repo.Sum{}, err
	}
	defer func() { _ = fl.Close() }() // closed again after the explicit Close below: harmless
	fi, err := fl.Stat()
	if err != nil {
		return repo.Sum{}, err
	}
	if !fi.Mode().IsRegular() {
		return repo.Sum{}, errors.New("not a regular file")
	}
	rec, err := readSpoolRecord(fl, fi.Size())
	if err != nil {
		return repo.Sum{}, err
	}
	switch {
	case rec.Name != name:
		return repo.Sum{}, fmt.Errorf("its record names %.40q", rec.Name)
	case rec.Size < minSegSize || rec.Size > maxSegSize || rec.Size&(rec.Size-1) != 0:
		return repo.Sum{}, fmt.Errorf("its record gives a segment size of %d bytes", rec.Size)
	}
	sum, err := rec.sum()
	if err != nil {
		return repo.Sum{}, err
	}
	h, err := sumHash(sum.Alg)
	if err != nil {
		return repo.Sum{}, err
	}
	if _, err := io.CopyBuffer(h, io.NewSectionReader(fl, 0, rec.Size), make([]byte, verifyBuffer)); err != nil {
		return repo.Sum{}, err
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum.Checksum[:len(got)]) {
		return repo.Sum{}, fmt.Errorf("checksum mismatch: its bytes have %s, the stored object %s", hex.EncodeToString(got), sum.Hex())
	}
	want, err := repoID()
	if err != nil {
		return repo.Sum{}, fmt.Errorf("%w: %w", errNoRepoID, err)
	}
	if !rec.Repo.same(want) {
		return repo.Sum{}, fmt.Errorf("it came from another repository (%s, system %s, created %s), not %s (system %s, created %s)",
			rec.Repo.Location, rec.Repo.SystemID, rec.Repo.Created.Format(time.RFC3339Nano), want.Location, want.SystemID, want.Created.Format(time.RFC3339Nano))
	}
	// The bytes were fsynced by the prefetcher; the truncation is metadata, made durable
	// with the rename by the directory sync below (one journal commit, not two).
	if err := fl.Truncate(rec.Size); err != nil {
		return repo.Sum{}, err
	}
	if err := fl.Close(); err != nil {
		return repo.Sum{}, err
	}
	if err := os.Rename(claimed, dest); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return repo.Sum{}, err
		}
		return sum, copyFile(claimed, dest, rec.Size)
	}
	return sum, atomicfile.SyncDir(filepath.Dir(dest))
}

// copyFile copies the first n bytes of src to dest atomically and durably (dest on
// another filesystem than the spool).
func copyFile(src, dest string, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }() // read-only
	out, err := atomicfile.Create(dest, 0o600)
	if err != nil {
		return err
	}
	defer out.Abort()
	if _, err := io.Copy(out, io.LimitReader(in, n)); err != nil {
		return err
	}
	return out.Commit()
}
