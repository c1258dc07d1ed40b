package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgb-project/pgb/internal/storage"
)

// relMapName is a backup's relation names: which relation each relation file
// (relfilenode) held when the backup was taken, so pgb events can name what a
// transaction dropped. Written before the summary and the manifest; optional.
const relMapName = "relmap"

// RelMapKey names a backup's relation map.
func RelMapKey(backup string) string { return BackupPrefix(backup) + relMapName }

// RelMapFormat is the version of the relation map this pgb writes.
const RelMapFormat = 1

// relMapLimit bounds what a relation map may decode to: about 100 bytes of JSON
// per relation, so some two million relations.
const relMapLimit = 256 << 20

// RelMap is the relation names of a cluster at backup time.
type RelMap struct {
	Format    int           `json:"format"`
	Databases []RelDatabase `json:"databases"`
}

// RelDatabase is one database and its relations that have storage.
type RelDatabase struct {
	OID       uint32     `json:"oid"`
	Name      string     `json:"name"`
	Relations []Relation `json:"relations"`
}

// Relation is one relation with storage: its pg_class oid, its relation file
// (pg_relation_filenode), tablespace (0: the database's default), schema, name
// and relkind (r table, i index, S sequence, t TOAST table, m materialized view).
type Relation struct {
	OID        uint32 `json:"oid"`
	Filenode   uint32 `json:"filenode"`
	Tablespace uint32 `json:"tablespace,omitempty"`
	Schema     string `json:"schema"`
	Name       string `json:"name"`
	Kind       string `json:"kind"`
}

// ErrNoRelMap means a backup has no relation map (taken by an older pgb, or
// names could not be read at backup time).
var ErrNoRelMap = errors.New("no relation names recorded")

// PutRelMap records the relation names of a backup in progress: before its
// summary and manifest, which stay last. A retried write that finds exactly
// this map stored counts as done.
func (r *Repo) PutRelMap(ctx context.Context, backup string, m *RelMap) error {
	m.Format = RelMapFormat
	return r.putOrSame(ctx, RelMapKey(backup), m, "relation map")
}

// ReadRelMap reads a backup's relation names: ErrNoRelMap when it has none,
// an error wrapping ErrCorrupt when the map is damaged or larger than pgb
// allows, ErrNewerFormat when a newer pgb wrote it.
func (r *Repo) ReadRelMap(ctx context.Context, backup string) (*RelMap, error) {
	var m RelMap
	err := r.getJSON(ctx, RelMapKey(backup), &m, relMapLimit, "a relation map is about 100 bytes per relation")
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return nil, fmt.Errorf("backup %s: %w", backup, ErrNoRelMap)
	case err != nil:
		return nil, fmt.Errorf("relation map of backup %s: %w", backup, err)
	case m.Format > RelMapFormat:
		return nil, fmt.Errorf("relation map of backup %s: %w: format %d, this pgb understands up to %d: upgrade pgb",
			backup, ErrNewerFormat, m.Format, RelMapFormat)
	}
	return &m, nil
}
