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

// MaxRelations bounds what RelationNames reads over all databases.
const MaxRelations = 2_000_000

// RelationNames reads, for every database that accepts connections, the
// relation file of each permanent and unlogged relation: one query per
// database, each on its own short connection made with this session's
// settings. A database that cannot be connected to is left out and named in
// skipped with the reason; more than MaxRelations relations in all is an error.
func (c *Conn) RelationNames(ctx context.Context) (dbs []DatabaseRelations, skipped []string, err error) {
	rows, err := c.c.Query(ctx, `SELECT oid::int8, datname FROM pg_database WHERE datallowconn ORDER BY oid`)
	if err != nil {
		return nil, nil, fmt.Errorf("list databases: %w", err)
	}
	for rows.Next() {
		var d DatabaseRelations
		var oid int64
		if err := rows.Scan(&oid, &d.Name); err != nil {
			rows.Close()
			return nil, nil, err
		}
		d.OID = uint32(oid)
		dbs = append(dbs, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list databases: %w", err)
	}
	total := 0
	out := dbs[:0]
	for _, d := range dbs {
		rels, err := c.relationsOf(ctx, d.Name, MaxRelations-total)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			skipped = append(skipped, fmt.Sprintf("%s: %v", d.Name, err))
			continue
		}
		total += len(rels)
		d.Relations = rels
		out = append(out, d)
	}
	return out, skipped, nil
}

func (c *Conn) relationsOf(ctx context.Context, db string, limit int) ([]Relation, error) {
	cfg := c.c.Config().Copy()
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(ctx) }() // read-only session
	rows, err := conn.Query(ctx, `SELECT c.oid::int8, pg_relation_filenode(c.oid)::int8, c.reltablespace::int8,
		n.nspname, c.relname, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relpersistence <> 't' AND pg_relation_filenode(c.oid) IS NOT NULL
		ORDER BY 2 LIMIT $1`, limit+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rels []Relation
	for rows.Next() {
		var r Relation
		var oid, node, spc int64
		if err := rows.Scan(&oid, &node, &spc, &r.Schema, &r.Name, &r.Kind); err != nil {
			return nil, err
		}
		r.OID, r.Filenode, r.Tablespace = uint32(oid), uint32(node), uint32(spc)
		rels = append(rels, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(rels) > limit {
		return nil, fmt.Errorf("more than %d relations in all databases", MaxRelations)
	}
	return rels, nil
}
