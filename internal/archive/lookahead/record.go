// Package lookahead ships WAL segments ahead of PostgreSQL's archive_command calls.
//
// A background archiver (one per data directory, holding a lock in the push spool
// pg_wal/pgb/push) compresses and uploads the segments PostgreSQL has marked ready
// (pg_wal/archive_status/*.ready), a few at once, and after each durable put writes a
// record: this segment, this version of the file, is durable in this repository. The
// wal-push call PostgreSQL then makes for the segment finds the record, checks that it
// still holds (the same file, the same repository, the object there with its recorded
// size) and exits 0 without reading the segment.
//
// Write order: the object is durable in the repository before its record is written;
// a record is written atomically (temp file, fsync, rename, directory fsync). A record
// that is missing, unreadable, for another file or another repository is never trusted:
// the segment is pushed again, which finds an identical object and succeeds.
package lookahead

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// File names in the push spool.
const (
	recordSuffix = ".ok"  // <segment>.ok: the segment is durable in the repository
	errorSuffix  = ".err" // <segment>.err: the archiver failed to ship it; one line
	lockName     = "archiver.lock"
	calledName   = "called" // the segment PostgreSQL last called wal-push for
	logName      = "archiver.log"
	// maxRecord bounds what is read of a record or an error record: both are a few
	// hundred bytes; anything longer is damaged and not trusted.
	maxRecord = 4 << 10
	// recordVersion is the record layout written; another is not trusted.
	recordVersion = 1
)

// RepoID names one repository as it was when a record was written: where it is, and
// the identity document it held. A repository wiped and created again has another
// creation time: its records do not count.
type RepoID struct {
	Location  string        `json:"location"`
	SystemID  repo.SystemID `json:"system_identifier"`
	PGVersion int           `json:"pg_version"`
	Created   time.Time     `json:"created"`
}

// MakeRepoID is the RepoID of a repository at location with identity id.
func MakeRepoID(location string, id repo.Identity) RepoID {
	return RepoID{Location: location, SystemID: id.SystemID, PGVersion: id.PGVersion, Created: id.Created}
}

// Equal reports whether two RepoIDs name the same repository.
func (r RepoID) Equal(o RepoID) bool {
	return r.Location == o.Location && r.SystemID == o.SystemID && r.PGVersion == o.PGVersion && r.Created.Equal(o.Created)
}

// Source identifies one version of a file: PostgreSQL recycles a segment file by
// renaming it and writing it over, so the name alone says nothing.
type Source struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
}

// SourceOf is the Source of a file from its FileInfo (os.Stat or (*os.File).Stat).
func SourceOf(fi os.FileInfo) (Source, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return Source{}, fmt.Errorf("%s: not a regular file", fi.Name())
	}
	return Source{Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(), MtimeNS: fi.ModTime().UnixNano()}, nil //nolint:unconvert // Dev's type differs between platforms
}

// StatSource is the Source of the file at path.
func StatSource(path string) (Source, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Source{}, err
	}
	return SourceOf(fi)
}

// Record says that one WAL segment is durable in one repository.
type Record struct {
	Version int       `json:"version"`
	Segment string    `json:"segment"`
	Source  Source    `json:"source"`
	Repo    RepoID    `json:"repository"`
	Stored  int64     `json:"stored_size"` // bytes of the object in the repository
	Sum     string    `json:"sum"`         // size and checksum of the segment's bytes, for people
	Written time.Time `json:"written"`
}

// Spool is the push spool directory, pg_wal/pgb/push (spool.Open(dataDir, "push")).
type Spool string

func (s Spool) path(name string) string { return filepath.Join(string(s), name) }

// segmentName checks that name is a plain WAL segment name, the only kind of file the
// spool keeps records of (a name from a directory listing is untrusted input).
func segmentName(name string) bool {
	f, err := wal.Parse(name)
	return err == nil && f.Kind == wal.Segment
}

// WriteRecord writes r atomically and durably.
func (s Spool) WriteRecord(r Record) error {
	if !segmentName(r.Segment) {
		return fmt.Errorf("lookahead: %q is not a WAL segment name", r.Segment)
	}
	r.Version = recordVersion
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.writeFile(r.Segment+recordSuffix, append(b, '\n'))
}

func (s Spool) writeFile(name string, b []byte) error {
	f, err := atomicfile.Create(s.path(name), 0o600)
	if err != nil {
		return fmt.Errorf("lookahead: %w", err)
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("lookahead: write %s: %w", f.Name(), err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("lookahead: %w", err)
	}
	return nil
}

// ErrNoRecord means the spool holds no (readable) record of a segment.
var ErrNoRecord = errors.New("no record")

// ReadRecord reads the record of segment. A missing, damaged, oversized or foreign
// record is an error wrapping ErrNoRecord.
func (s Spool) ReadRecord(segment string) (Record, error) {
	b, err := s.readSmall(segment + recordSuffix)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %s%s is damaged: %w", ErrNoRecord, segment, recordSuffix, err)
	}
	if r.Version != recordVersion || r.Segment != segment {
		return Record{}, fmt.Errorf("%w: %s%s is for %q, version %d", ErrNoRecord, segment, recordSuffix, r.Segment, r.Version)
	}
	return r, nil
}

// readSmall reads the spool file name, never through a symbolic link, and at most
// maxRecord bytes of it.
func (s Spool) readSmall(name string) ([]byte, error) {
	f, err := os.OpenFile(s.path(name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoRecord
		}
		return nil, fmt.Errorf("%w: %w", ErrNoRecord, err)
	}
	defer func() { _ = f.Close() }() // read-only
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNoRecord, name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoRecord, err)
	}
	if len(b) > maxRecord {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrNoRecord, name, maxRecord)
	}
	return b, nil
}

// MarkCalled notes that PostgreSQL has called wal-push for segment, so that the
// archiver knows how far ahead of the calls it is (see Archiver.Concurrency). Best
// effort and not durable: a lost or damaged mark only costs the archiver its measure.
// The name is written in place, all of it at once (24 bytes at offset 0, never a
// truncation a reader could see in between).
func (s Spool) MarkCalled(segment string) error {
	if !segmentName(segment) {
		return fmt.Errorf("lookahead: %q is not a WAL segment name", segment)
	}
	f, err := os.OpenFile(s.path(calledName), os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return fmt.Errorf("lookahead: %w", err)
	}
	_, err = f.WriteAt([]byte(segment), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lookahead: %w", err)
	}
	return nil
}

// LastCalled returns the segment MarkCalled last noted, "" when none is (or the mark
// is damaged).
func (s Spool) LastCalled() string {
	b, err := s.readSmall(calledName)
	if err != nil || len(b) != len("000000010000000000000001") || !segmentName(string(b)) {
		return ""
	}
	return string(b)
}

// RemoveRecord removes the record of segment, if any.
func (s Spool) RemoveRecord(segment string) error { return s.remove(segment + recordSuffix) }

func (s Spool) remove(name string) error {
	if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lookahead: %w", err)
	}
	return nil
}

// WriteError records that shipping segment failed with err, as one line.
func (s Spool) WriteError(segment string, err error) error {
	if !segmentName(segment) {
		return fmt.Errorf("lookahead: %q is not a WAL segment name", segment)
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > maxRecord-1 {
		msg = msg[:maxRecord-1]
	}
	return s.writeFile(segment+errorSuffix, []byte(msg+"\n"))
}

// ReadError returns the archiver's error for segment; ok is false when there is none.
func (s Spool) ReadError(segment string) (msg string, ok bool) {
	b, err := s.readSmall(segment + errorSuffix)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// HasError reports whether an error record for segment exists.
func (s Spool) HasError(segment string) bool {
	_, err := os.Lstat(s.path(segment + errorSuffix))
	return err == nil
}

// ClearError removes the error record of segment, if any.
func (s Spool) ClearError(segment string) error { return s.remove(segment + errorSuffix) }

// LockPath is the archiver's lock file.
func (s Spool) LockPath() string { return s.path(lockName) }

// LogPath is the archiver's log file.
func (s Spool) LogPath() string { return s.path(logName) }

// RecordPush records a push that returned durable: res from archive.Push of the
// segment, through rp. The stored size is the object's own when the repository
// already held the segment (written perhaps with another codec): one Stat.
func (s Spool) RecordPush(ctx context.Context, rp *repo.Repo, res archive.PushResult) (Record, error) {
	stored := res.Stored
	if res.Duplicate {
		var err error
		if stored, err = rp.StatWAL(ctx, res.File); err != nil {
			return Record{}, fmt.Errorf("%s: %w", res.File.Name, err)
		}
	}
	id, err := rp.Identity(ctx) // cached by the push
	if err != nil {
		return Record{}, err
	}
	src, err := SourceOf(res.Source)
	if err != nil {
		return Record{}, err
	}
	rec := Record{Segment: res.File.Name, Source: src, Repo: MakeRepoID(rp.Destination(), id), Stored: stored,
		Sum: fmt.Sprintf("%d bytes, %s", res.Size, res.Compressed), Written: time.Now().UTC()}
	return rec, s.WriteRecord(rec)
}

// OpenLog opens the archiver's log file for appending. One that has grown past limit
// is moved aside (replacing the previous one) first, and the writer stops writing
// once limit bytes were written: the log of a detached process stays bounded.
func (s Spool) OpenLog(limit int64) (io.WriteCloser, error) {
	p := s.LogPath()
	if fi, err := os.Lstat(p); err == nil && fi.Size() > limit {
		_ = os.Rename(p, p+".1") // best effort: the new log starts empty either way
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lookahead: %w", err)
	}
	return &boundedWriter{f: f, left: limit}, nil
}

type boundedWriter struct {
	f    *os.File
	left int64
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.left <= 0 {
		return len(p), nil // dropped: the log is full
	}
	n := int64(len(p))
	if n > w.left {
		n = w.left
	}
	w.left -= n
	if _, err := w.f.Write(p[:n]); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *boundedWriter) Close() error { return w.f.Close() }
