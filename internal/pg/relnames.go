package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DatabaseRelations is one database and its relations that have storage.
type DatabaseRelations struct {
	OID       uint32
	Name      string
	Relations []Relation
}

// Relation is a relation with storage (pg_class): oid, relation file
// (pg_relation_filenode), tablespace (0 for the database's default), schema,
// name and relkind.
type Relation struct {
	OID, Filenode, Tablespace uint32
	Schema, Name, Kind        string
}

// Database is a database that accepts connections.
type Database struct {
	OID  uint32
	Name string
}

// MaxRelations bounds what RelationNames reads over all databases.
const MaxRelations = 2_000_000

// RelationNames reads, for every database that accepts connections, the
// relation file of each permanent and unlogged relation: one query per
// database, each on its own short connection made with this session's
// settings. A database that cannot be connected to is left out and named in
// skipped with the reason; more than MaxRelations relations in all is an error.
func (c *Conn) RelationNames(ctx context.Context) (dbs []DatabaseRelations, skipped []string, err error) {
	list, err := c.Databases(ctx)
	if err != nil {
		return nil, nil, err
	}
	total := 0
	for _, d := range list {
		var rels []Relation
		err := c.EachRelation(ctx, d.Name, MaxRelations-total, func(r Relation) error {
			rels = append(rels, r)
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			skipped = append(skipped, fmt.Sprintf("%s: %v", d.Name, err))
			continue
		}
		total += len(rels)
		dbs = append(dbs, DatabaseRelations{OID: d.OID, Name: d.Name, Relations: rels})
	}
	return dbs, skipped, nil
}

// Databases lists the databases that accept connections, by oid.
func (c *Conn) Databases(ctx context.Context) ([]Database, error) {
	rows, err := c.c.Query(ctx, `SELECT oid::int8, datname FROM pg_database WHERE datallowconn ORDER BY oid`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	defer rows.Close()
	var dbs []Database
	for rows.Next() {
		var d Database
		var oid int64
		if err := rows.Scan(&oid, &d.Name); err != nil {
			return nil, err
		}
		d.OID = uint32(oid)
		dbs = append(dbs, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return dbs, nil
}

// EachRelation calls fn with each permanent and unlogged relation that has a relation
// file in database db, as PostgreSQL's rows arrive (nothing is held), over a short
// connection of its own made with this session's settings: it may run while the
// session runs other statements. More than limit relations is an error (after fn saw
// limit of them).
func (c *Conn) EachRelation(ctx context.Context, db string, limit int, fn func(Relation) error) error {
	cfg := c.c.Config() // a copy
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }() // read-only session
	rows, err := conn.Query(ctx, `SELECT c.oid::int8, pg_relation_filenode(c.oid)::int8, c.reltablespace::int8,
		n.nspname, c.relname, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relpersistence <> 't' AND pg_relation_filenode(c.oid) IS NOT NULL
		ORDER BY 2 LIMIT $1`, limit+1)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var r Relation
		var oid, node, spc int64
		if err := rows.Scan(&oid, &node, &spc, &r.Schema, &r.Name, &r.Kind); err != nil {
			return err
		}
		if n++; n > limit {
			return fmt.Errorf("more than %d relations in all databases", MaxRelations)
		}
		r.OID, r.Filenode, r.Tablespace = uint32(oid), uint32(node), uint32(spc)
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}
