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
}

// Duration is how long the backup took.
func (m *Manifest) Duration() time.Duration { return m.StopTime.Sub(m.StartTime) }

// Tablespace is a user tablespace in a backup.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
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
	defer rc.Close()
	r, err := envelope.NewReader(rc)
	if err != nil {
		return false, err
	}
	defer r.Close()
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

// getJSON reads what putJSON wrote.
func getJSON(ctx context.Context, st storage.Store, key string, v any) error {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	r, err := envelope.NewReader(rc)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
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
	var m Manifest
	if err := getJSON(ctx, st, ManifestKey(name), &m); err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
		}
		return nil, fmt.Errorf("read manifest of backup %s: %w", name, err)
	}
	if m.Format > FormatVersion {
		return nil, fmt.Errorf("backup %s has format %d; this pgb understands up to %d: upgrade pgb", name, m.Format, FormatVersion)
	}
	return &m, nil
}

// ListBackups returns every complete backup (those with a manifest), oldest first.
func ListBackups(ctx context.Context, st storage.Store) ([]*Manifest, error) {
	var names []string
	err := st.List(ctx, backupsPrefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, backupsPrefix)
		if name, ok := strings.CutSuffix(rest, "/"+manifestName); ok && !strings.Contains(name, "/") {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	out := make([]*Manifest, 0, len(names))
	for _, n := range names {
		m, err := ReadManifest(ctx, st, n)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StopLSN < out[j].StopLSN })
	return out, nil
}
