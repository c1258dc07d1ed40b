package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

const backupsPrefix = "backups/"

// ManifestName is the object that makes a backup exist. It is written last.
const manifestName = "manifest"

// BackupPrefix is the key prefix of one backup's objects.
func BackupPrefix(name string) string { return backupsPrefix + name + "/" }

// PartKey names part n (1-based) of a backup.
func PartKey(backup string, n int) string {
	return fmt.Sprintf("%spart-%05d.tar", BackupPrefix(backup), n)
}

// ManifestKey names a backup's manifest.
func ManifestKey(backup string) string { return BackupPrefix(backup) + manifestName }

// Manifest describes one complete base backup: what PostgreSQL said about it, and
// every directory and file in it with its checksum and the part that holds it.
type Manifest struct {
	Format        int          `json:"format"`
	Name          string       `json:"name"`
	SystemID      SystemID     `json:"system_identifier"`
	PGVersion     int          `json:"pg_version"`
	PGVersionNum  int          `json:"pg_version_num"`
	DataChecksums bool         `json:"data_checksums"`
	WALSegSize    uint64       `json:"wal_segment_size"`
	Timeline      uint32       `json:"timeline"`
	StartLSN      wal.LSN      `json:"start_lsn"`
	StopLSN       wal.LSN      `json:"stop_lsn"`
	StartWAL      string       `json:"start_wal"`
	StopWAL       string       `json:"stop_wal"`
	StartTime     time.Time    `json:"start_time"`
	StopTime      time.Time    `json:"stop_time"`
	NextXID       uint64       `json:"next_xid"` // first xid not yet assigned at stop
	Label         string       `json:"backup_label"`
	TablespaceMap string       `json:"tablespace_map,omitempty"`
	Tablespaces   []Tablespace `json:"tablespaces,omitempty"`
	DataDir       string       `json:"data_directory"`
	Compression   string       `json:"compression"`
	Size          int64        `json:"size"`        // bytes of file data
	StoredSize    int64        `json:"stored_size"` // bytes of parts in the repository
	Parts         []Part       `json:"parts"`
	Dirs          []Dir        `json:"dirs"`
	Links         []Link       `json:"links,omitempty"`
	Files         []File       `json:"files"`

	// DataDirOwner is who owned the data directory at backup time: a restore as root
	// gives the files back to that user. Manifests of older pgb have none.
	DataDirOwner *Owner `json:"data_directory_owner,omitempty"`
}

// Duration is how long the backup took.
func (m *Manifest) Duration() time.Duration { return m.StopTime.Sub(m.StartTime) }

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
}

// Sort orders directories and files by path, so manifests are stable.
func (m *Manifest) Sort() {
	sort.Slice(m.Dirs, func(i, j int) bool { return m.Dirs[i].Path < m.Dirs[j].Path })
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	sort.Slice(m.Links, func(i, j int) bool { return m.Links[i].Path < m.Links[j].Path })
}

// PutManifest writes a backup's manifest, making the backup exist. It never replaces
// an existing manifest. When one is already there with exactly this content, the
// write counts as done: a retried put whose first attempt was stored but lost its
// acknowledgement (S3, GCS) finds its own manifest. Other content fails with an error
// wrapping storage.ErrExist and leaves the stored manifest untouched.
func PutManifest(ctx context.Context, st storage.Store, m *Manifest) error {
	m.Format = FormatVersion
	key := ManifestKey(m.Name)
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	err = putEnvelope(ctx, st, key, js)
	if !errors.Is(err, storage.ErrExist) {
		return err
	}
	same, cerr := storedEquals(ctx, st, key, js)
	switch {
	case cerr != nil:
		return fmt.Errorf("%w; and the stored manifest could not be read to compare: %w", err, cerr)
	case !same:
		return fmt.Errorf("%w: another backup's manifest is stored under %s; it was left untouched", err, key)
	}
	return nil
}

// storedEquals reports whether the envelope stored under key decodes to exactly want.
// It reads at most one byte more than want.
func storedEquals(ctx context.Context, st storage.Store, key string, want []byte) (bool, error) {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return false, err
	}
	defer func() { _ = rc.Close() }() // read-only: the envelope check decides
	r, err := envelope.NewReader(rc)
	if err != nil {
		return false, err
	}
	defer func() { _ = r.Close() }() // read-only: the envelope check decides
	got, err := io.ReadAll(io.LimitReader(r, int64(len(want))+1))
	if err != nil {
		return false, err
	}
	if !bytes.Equal(got, want) {
		return false, nil
	}
	// The envelope's size and checksum are checked only at its end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return false, err
	}
	return true, nil
}

// putJSON stores v as compressed, checksummed JSON, only if absent.
func putJSON(ctx context.Context, st storage.Store, key string, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return putEnvelope(ctx, st, key, js)
}

// putEnvelope stores js zstd-compressed in an envelope, only if absent.
func putEnvelope(ctx context.Context, st storage.Store, key string, js []byte) error {
	codec, _ := compress.New("zstd", 0)
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, codec)
	if err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return st.Put(ctx, key, bytes.NewReader(buf.Bytes()), storage.PutOptions{IfAbsent: true, Size: int64(buf.Len())})
}

// ErrTooLarge means a repository document decodes to more than pgb allows for it: it
// is damaged or hostile (a small compressed object can decode to gigabytes), and
// reading on would exhaust memory.
var ErrTooLarge = errors.New("larger than pgb allows")

// Limits on what a repository document may decode to. Reading stops at the limit, so
// memory stays bounded whatever an object claims.
const (
	// A manifest may decode to manifestRatio times its stored size, at least
	// manifestFloor and never more than manifestCap. Each file's entry carries its
	// CRC-32C, which does not compress: measured, 100,000 files of data compress
	// about 6:1 and 100,000 empty files (identical CRC and mtime) 64:1, while a
	// decompression bomb needs thousands to one. manifestCap holds some four million
	// files at 256 bytes of JSON each.
	manifestRatio = 128
	manifestFloor = 64 << 20
	manifestCap   = 1 << 30
	// A restore point, the lock and pgb.json are a few hundred bytes.
	smallDocLimit = 1 << 20
)

// manifestLimit is how far a manifest stored in storedSize bytes may decode.
func manifestLimit(storedSize int64) int64 {
	if storedSize < 0 || storedSize > manifestCap/manifestRatio {
		return manifestCap
	}
	return max(manifestFloor, storedSize*manifestRatio)
}

// readLimited reads r to its end, failing with ErrTooLarge past limit bytes.
func readLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is %w: it decodes to more than %s", what, ErrTooLarge, sizeText(limit))
	}
	return b, nil
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// getJSON reads what putJSON wrote, decoding at most limit bytes of JSON; more is
// ErrTooLarge, which also wraps envelope.ErrCorrupt (the object is damaged).
func getJSON(ctx context.Context, st storage.Store, key string, v any, limit int64, why string) error {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }() // read-only: the envelope check decides
	r, err := envelope.NewReader(rc)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer func() { _ = r.Close() }() // read-only: the envelope check decides
	b, err := readLimited(r, limit, key)
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w (%s): %w", err, why, envelope.ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w: %w", key, envelope.ErrCorrupt, err)
	}
	return nil
}

// ErrNoBackup means no complete backup has that name.
var ErrNoBackup = errors.New("no such backup")

// ReadManifest reads one backup's manifest.
func ReadManifest(ctx context.Context, st storage.Store, name string) (*Manifest, error) {
	info, err := st.Stat(ctx, ManifestKey(name))
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
		}
		return nil, fmt.Errorf("read manifest of backup %s: %w", name, err)
	}
	return readManifest(ctx, st, name, info.Size)
}

// readManifest reads a manifest stored in storedSize bytes.
func readManifest(ctx context.Context, st storage.Store, name string, storedSize int64) (*Manifest, error) {
	var m Manifest
	limit := manifestLimit(storedSize)
	why := fmt.Sprintf("pgb allows a manifest %dx its stored size of %s, at least %s and at most %s",
		manifestRatio, sizeText(storedSize), sizeText(manifestFloor), sizeText(manifestCap))
	if err := getJSON(ctx, st, ManifestKey(name), &m, limit, why); err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
		}
		if errors.Is(err, ErrNewerFormat) {
			return nil, fmt.Errorf("backup %s: %w", name, err)
		}
		if errors.Is(err, envelope.ErrCorrupt) {
			return nil, fmt.Errorf("manifest of backup %s is %w: %w", name, ErrDamagedBackup, err)
		}
		return nil, fmt.Errorf("read manifest of backup %s: %w", name, err)
	}
	if m.Format > FormatVersion {
		return nil, fmt.Errorf("backup %s is %w: it has format %d, this pgb understands up to %d: upgrade pgb", name, ErrNewerFormat, m.Format, FormatVersion)
	}
	if m.Name != name {
		return nil, fmt.Errorf("manifest of backup %s is %w: it describes backup %q", name, ErrDamagedBackup, m.Name)
	}
	return &m, nil
}

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

// ListBackups returns every complete backup (those with a manifest), oldest first, and
// apart from them the backups whose manifest is damaged (see ErrDamagedBackup): one
// damaged backup must not make the others unusable. A storage error (unreachable,
// timeout, denied) is not damage: it fails the listing.
func ListBackups(ctx context.Context, st storage.Store) ([]*Manifest, []DamagedBackup, error) {
	var found []storage.ObjectInfo
	err := st.List(ctx, backupsPrefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, backupsPrefix)
		if name, ok := strings.CutSuffix(rest, "/"+manifestName); ok && !strings.Contains(name, "/") {
			o.Key = name
			found = append(found, o)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list backups: %w", err)
	}
	out := make([]*Manifest, 0, len(found))
	var damaged []DamagedBackup
	for _, o := range found {
		n := o.Key
		m, err := readManifest(ctx, st, n, o.Size)
		switch {
		case err == nil:
			out = append(out, m)
		case errors.Is(err, ErrNoBackup):
			// deleted since the listing: not there any more
		case errors.Is(err, ErrDamagedBackup), errors.Is(err, ErrNewerFormat):
			damaged = append(damaged, DamagedBackup{Name: n, Err: err})
		default:
			return nil, nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StopLSN < out[j].StopLSN })
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].Name < damaged[j].Name })
	return out, damaged, nil
}
