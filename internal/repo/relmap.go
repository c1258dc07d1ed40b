package repo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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
//
// The map is encoded as it is stored, one relation at a time: a cluster with hundreds
// of thousands of relations never has its map's JSON in memory as well.
func (r *Repo) PutRelMap(ctx context.Context, backup string, m *RelMap) error {
	m.Format = RelMapFormat
	return r.PutRelMapFrom(ctx, backup, m)
}

// RelMapSource yields a relation map one relation at a time, so that one can be stored
// without being built in memory (see PutRelMapFrom). A *RelMap is one.
type RelMapSource interface {
	DatabaseCount() int
	// Database returns database i's oid, name and number of relations.
	Database(i int) (oid uint32, name string, relations int)
	// Relation returns relation j of database i.
	Relation(i, j int) Relation
}

// DatabaseCount implements RelMapSource.
func (m *RelMap) DatabaseCount() int { return len(m.Databases) }

// Database implements RelMapSource.
func (m *RelMap) Database(i int) (uint32, string, int) {
	d := &m.Databases[i]
	return d.OID, d.Name, len(d.Relations)
}

// Relation implements RelMapSource.
func (m *RelMap) Relation(i, j int) Relation { return m.Databases[i].Relations[j] }

// PutRelMapFrom is PutRelMap for a map that src yields, in format RelMapFormat.
func (r *Repo) PutRelMapFrom(ctx context.Context, backup string, src RelMapSource) error {
	return r.putStreamOrSame(ctx, RelMapKey(backup), func(w io.Writer) error { return writeRelMap(w, src) }, "relation map")
}

// RelMapWriter is what a relation map stream writes to (see PutRelMapStream): a
// database, then its relations, then the next database.
type RelMapWriter interface {
	Database(oid uint32, name string) error
	Relation(Relation) error
}

// PutRelMapStream is PutRelMap for a map that stream writes as it reads it, database
// by database (from PostgreSQL's rows), so that it is never held whole. stream may be
// called a second time: a retried write that finds a map stored compares it with what
// stream writes again.
func (r *Repo) PutRelMapStream(ctx context.Context, backup string, stream func(RelMapWriter) error) error {
	return r.putStreamOrSame(ctx, RelMapKey(backup), func(w io.Writer) error {
		rw := &relMapStreamWriter{bw: bufio.NewWriterSize(w, 64<<10)}
		_, _ = fmt.Fprintf(rw.bw, `{"format":%d,"databases":[`, RelMapFormat) // a bufio.Writer keeps its first error for Flush
		if err := stream(rw); err != nil {
			return err
		}
		if rw.dbs > 0 {
			_, _ = rw.bw.WriteString("]}")
		}
		_, _ = rw.bw.WriteString("]}")
		return rw.bw.Flush()
	}, "relation map")
}

// relMapStreamWriter writes a relation map as json.Marshal writes a RelMap.
type relMapStreamWriter struct {
	bw        *bufio.Writer
	dbs, rels int // written so far; rels in the current database
}

func (w *relMapStreamWriter) Database(oid uint32, name string) error {
	b, err := json.Marshal(name)
	if err != nil {
		return err
	}
	if w.dbs > 0 {
		_, _ = w.bw.WriteString("]},")
	}
	w.dbs++
	w.rels = 0
	_, err = fmt.Fprintf(w.bw, `{"oid":%d,"name":%s,"relations":[`, oid, b)
	return err
}

func (w *relMapStreamWriter) Relation(rel Relation) error {
	if w.dbs == 0 {
		return errors.New("relation map: a relation before any database")
	}
	b, err := json.Marshal(&rel)
	if err != nil {
		return err
	}
	if w.rels > 0 {
		_ = w.bw.WriteByte(',')
	}
	w.rels++
	_, err = w.bw.Write(b)
	return err
}

// writeRelMap writes src as JSON, as json.Marshal would write its RelMap (an empty
// list as []).
func writeRelMap(w io.Writer, src RelMapSource) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	_, _ = fmt.Fprintf(bw, `{"format":%d,"databases":[`, RelMapFormat) // a bufio.Writer keeps its first error for Flush
	for i := range src.DatabaseCount() {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		oid, dbName, n := src.Database(i)
		name, err := json.Marshal(dbName)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(bw, `{"oid":%d,"name":%s,"relations":[`, oid, name)
		for j := range n {
			if j > 0 {
				_ = bw.WriteByte(',')
			}
			rel := src.Relation(i, j)
			b, err := json.Marshal(&rel)
			if err != nil {
				return err
			}
			_, _ = bw.Write(b)
		}
		_, _ = bw.WriteString("]}")
	}
	_, _ = bw.WriteString("]}")
	return bw.Flush()
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
