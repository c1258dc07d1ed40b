package repo

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/wal"
)

const backupsPrefix = "backups/"

// manifestName is the object that makes a backup exist. It is written last.
const manifestName = "manifest"

// summaryName is a backup's summary: written just before the manifest, read when
// listing backups.
const summaryName = "summary"

// Key layout of backups. The engine goes through Repo's methods; these are for tests
// and tools that look at the raw objects.

// BackupPrefix is the key prefix of one backup's objects.
func BackupPrefix(name string) string { return backupsPrefix + name + "/" }

// PartKey names part n (1-based) of a backup.
func PartKey(backup string, n int) string {
	return fmt.Sprintf("%spart-%05d.tar", BackupPrefix(backup), n)
}

// ManifestKey names a backup's manifest.
func ManifestKey(backup string) string { return BackupPrefix(backup) + manifestName }

// SummaryKey names a backup's summary.
func SummaryKey(backup string) string { return BackupPrefix(backup) + summaryName }

// Summary is what is known of a backup without its file list: enough to list
// backups, choose one for a recovery target and show the recoverable window. It is
// stored on its own (small) and inside the manifest.
type Summary struct {
	Format        int       `json:"format"`
	Name          string    `json:"name"`
	SystemID      SystemID  `json:"system_identifier"`
	PGVersion     int       `json:"pg_version"`
	PGVersionNum  int       `json:"pg_version_num"`
	DataChecksums bool      `json:"data_checksums"`
	WALSegSize    uint64    `json:"wal_segment_size"`
	Timeline      uint32    `json:"timeline"`
	StartLSN      wal.LSN   `json:"start_lsn"`
	StopLSN       wal.LSN   `json:"stop_lsn"`
	StartWAL      string    `json:"start_wal"`
	StopWAL       string    `json:"stop_wal"`
	StartTime     time.Time `json:"start_time"`
	StopTime      time.Time `json:"stop_time"`
	NextXID       uint64    `json:"next_xid"` // first xid not yet assigned at stop
	DataDir       string    `json:"data_directory"`
	Compression   string    `json:"compression"`
	Size          int64     `json:"size"`        // bytes of file data
	StoredSize    int64     `json:"stored_size"` // bytes of parts in the repository
	FileCount     int       `json:"file_count"`  // files in the manifest
	PartCount     int       `json:"part_count"`  // len(Manifest.Parts)
	// Parent names the backup an incremental backup builds on (its manifest has
	// IncrementalFormat); empty for a full backup. The chain of parents ends at a full
	// backup, and a restore needs every backup of it.
	Parent string `json:"parent,omitempty"`
	// Encryption says how the backup's parts and manifest are encrypted; nil: they
	// are not.
	Encryption *Encryption `json:"encryption,omitempty"`
	// CorruptPages counts the pages that failed their data checksum when the backup
	// read them (clusters with data checksums), after a second read and the LSN check
	// (see Manifest.Corrupt); 0 when all passed or the cluster has no checksums.
	CorruptPages int `json:"corrupt_pages,omitempty"`
	// FromStandby says the backup was taken on a hot standby (its files read from the
	// standby's data directory); StopTimeline is then the timeline of its stop point,
	// which may follow Timeline when the standby followed a promotion meanwhile.
	FromStandby  bool   `json:"from_standby,omitempty"`
	StopTimeline uint32 `json:"stop_timeline,omitempty"`
}

// Manifest describes one complete base backup: what PostgreSQL said about it, and
// every directory and file in it with its checksum and the part that holds it. The
// files are in Files, or, for a backup with many files, in List (see FileList):
// backup-push and restore never hold them all in memory.
type Manifest struct {
	Summary
	Label         string       `json:"backup_label"`
	TablespaceMap string       `json:"tablespace_map,omitempty"`
	Tablespaces   []Tablespace `json:"tablespaces,omitempty"`
	Parts         []Part       `json:"parts"`
	Dirs          []Dir        `json:"dirs"`
	Links         []Link       `json:"links,omitempty"`
	Files         []File       `json:"files"`

	// DataDirOwner is who owned the data directory at backup time: a restore as root
	// gives the files back to that user. Manifests of older pgb have none.
	DataDirOwner *Owner `json:"data_directory_owner,omitempty"`

	// Corrupt lists the pages counted in CorruptPages, by file, at most
	// MaxCorruptListed blocks in all.
	Corrupt []CorruptPages `json:"corrupt,omitempty"`

	// List, when set, holds the files instead of Files (written in manifest format 2).
	List *FileList `json:"-"`
}

// Close releases m.List.
func (m *Manifest) Close() error {
	if m == nil || m.List == nil {
		return nil
	}
	return m.List.Close()
}

// EachFile calls fn with every file of m: those in m.Files, or part by part (in the
// order of each part) those in m.List. The file is valid only during the call.
func (m *Manifest) EachFile(fn func(*File) error) error {
	if m.List == nil {
		for i := range m.Files {
			if err := fn(&m.Files[i]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range m.List.Parts() {
		if err := m.List.Each(n, fn); err != nil {
			return err
		}
	}
	return nil
}

// EachFileOfPart calls fn with every file part n holds, in the order of its tar
// stream (m.Files of a format 1 manifest are in path order; their parts hold them in
// that order too).
func (m *Manifest) EachFileOfPart(n int, fn func(*File) error) error {
	if m.List != nil {
		return m.List.Each(n, fn)
	}
	for i := range m.Files {
		if m.Files[i].Part == n {
			if err := fn(&m.Files[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Duration is how long the backup took.
func (m *Summary) Duration() time.Duration { return m.StopTime.Sub(m.StartTime) }

// CorruptPages are the blocks of one file whose data checksum failed when the backup
// read them: block numbers within the file (not the relation fork).
type CorruptPages struct {
	Path   string   `json:"path"`
	Blocks []uint32 `json:"blocks"`
}

// MaxCorruptListed bounds the blocks Manifest.Corrupt lists: a cluster with a damaged
// disk can have millions; the count in Summary.CorruptPages goes on.
const MaxCorruptListed = 1000

// Tablespace is a user tablespace in a backup.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
}

// Owner is an OS user and group, by number and by name.
type Owner struct {
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// Part is one tar stream of a backup.
type Part struct {
	N      int   `json:"n"`
	Files  int   `json:"files"`
	Size   int64 `json:"size"`   // bytes of file data in the part (tar headers not counted)
	Stored int64 `json:"stored"` // bytes in the repository
	// FileOffsets says that the part's files carry their Offset (manifests of older
	// pgb have none).
	FileOffsets bool `json:"file_offsets,omitempty"`
}

// Dir is a directory to recreate, relative to the data directory ("/"-separated;
// tablespace contents are under pg_tblspc/<oid>/).
type Dir struct {
	Path string `json:"path"`
	Mode uint32 `json:"mode"`
}

// Link is a symbolic link other than a tablespace's.
type Link struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// File is one regular file of a backup.
type File struct {
	Path  string    `json:"path"`
	Size  int64     `json:"size"`
	Mode  uint32    `json:"mode"`
	MTime time.Time `json:"mtime"`
	CRC   string    `json:"crc32c"` // of the bytes as stored
	Part  int       `json:"part"`
	// Offset is where the file's tar header starts in its part's plain (decoded) tar
	// stream, when the part has FileOffsets: one file can be read without the files
	// before it.
	Offset int64 `json:"offset,omitempty"`

	// In an incremental backup (Summary.Parent set), a file is one of three kinds:
	//   - Part 0 (Unchanged): no part of this backup holds it; its content is the
	//     parent's file of the same path, which has the same Size. CRC repeats the
	//     parent entry's.
	//   - MapLen set (Delta): its tar entry holds a page map (an encoded pagemap.Map)
	//     of MapLen bytes, then the blocks of the file it lists in block order: Stored
	//     bytes in all, CRC their checksum. Every other block is the parent's. Size is
	//     the file's.
	//   - neither: stored whole, as in a full backup.
	MapLen int64 `json:"map_len,omitempty"`
	Stored int64 `json:"stored,omitempty"`
}

// Unchanged says that f's content is its parent backup's (incremental backups).
func (f *File) Unchanged() bool { return f.Part == 0 }

// Delta says that f's tar entry holds a page map and the blocks it lists.
func (f *File) Delta() bool { return f.MapLen > 0 }

// TarSize is how many bytes f's tar entry holds.
func (f *File) TarSize() int64 {
	if f.Delta() {
		return f.Stored
	}
	return f.Size
}

// MaxMapLen bounds the page map of a file of size bytes: every run of blocks takes at
// most 10 bytes, and there are at most as many runs as blocks.
func MaxMapLen(size int64) int64 { return 16 + 10*pagemap.Blocks(size) }

// ReadLayer reads the page map at the start of f's tar entry (a Delta entry, checked
// when the manifest was read) from r, and returns the layer it describes, its pages
// the rest of the entry. The map must lie within the file and account for the
// entry's size.
func (f *File) ReadLayer(r io.Reader) (pagemap.Layer, error) {
	if !f.Delta() || f.MapLen > MaxMapLen(f.Size) {
		return pagemap.Layer{}, fmt.Errorf("%s: %w: no page map, or one too large", f.Path, ErrCorrupt)
	}
	enc := make([]byte, f.MapLen)
	if _, err := io.ReadFull(r, enc); err != nil {
		return pagemap.Layer{}, fmt.Errorf("%s: its page map: %w", f.Path, err)
	}
	m, err := pagemap.Decode(enc, uint32(min(pagemap.Blocks(f.Size), pagemap.MaxBlocks)))
	if err != nil {
		return pagemap.Layer{}, fmt.Errorf("%s: its page map: %w: %w", f.Path, ErrCorrupt, err)
	}
	l := pagemap.Layer{Size: f.Size, Map: m}
	if got := f.MapLen + l.Stored(); got != f.Stored {
		return pagemap.Layer{}, fmt.Errorf("%s: %w: its page map and pages take %d bytes, its entry says %d", f.Path, ErrCorrupt, got, f.Stored)
	}
	if err := l.Check(f.Size); err != nil {
		return pagemap.Layer{}, fmt.Errorf("%s: %w: %w", f.Path, ErrCorrupt, err)
	}
	l.Pages = io.LimitReader(r, f.Stored-f.MapLen)
	return l, nil
}

// Sort orders directories and files by path, so manifests are stable.
func (m *Manifest) Sort() {
	sort.Slice(m.Dirs, func(i, j int) bool { return m.Dirs[i].Path < m.Dirs[j].Path })
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	sort.Slice(m.Links, func(i, j int) bool { return m.Links[i].Path < m.Links[j].Path })
}

// ErrNoBackup means no complete backup has that name.
var ErrNoBackup = errors.New("no such backup")

// ErrDamagedBackup marks a backup whose manifest exists but cannot be used: it does
// not decode, fails its checksum, or is not a manifest of that backup. Such a backup
// (and one of a newer format, ErrNewerFormat) is skipped, never silently: ListBackups
// reports it.
var ErrDamagedBackup = errors.New("damaged")

// ErrNewerFormat means a repository object was written by a newer pgb: a newer
// manifest format, or a newer envelope (the envelope's own sentinel).
var ErrNewerFormat = envelope.ErrNewerFormat

// DamagedBackup is a backup that ListBackups skipped, and why.
type DamagedBackup struct {
	Name string
	Err  error // wraps ErrDamagedBackup or ErrNewerFormat
}
