package extract

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// found is a table as the copy has it at the target.
type found struct {
	Table
	OID         uint32
	Kind        string // relkind: r ordinary, p partitioned
	Persistence string // relpersistence: u unlogged
	Parents     []Table
	Children    []Table // inheritance children and partitions, direct ones
}

// lookTable is t as the copy has it at the target, or an error naming the target when
// it does not exist there or is not a table pgb extract can copy.
func lookTable(ctx context.Context, conn *pgx.Conn, t Table, db, target string) (found, error) {
	f := found{Table: t}
	err := conn.QueryRow(ctx, `SELECT c.oid, c.relkind::text, c.relpersistence::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).Scan(&f.OID, &f.Kind, &f.Persistence)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return f, fmt.Errorf("table %s does not exist in database %s at the target (%s): choose a point after it was created (pgb events --table NAME shows when it was dropped; unquoted names are folded to lower case)",
			t, QuoteIdent(db), target)
	case err != nil:
		return f, fmt.Errorf("look up table %s in the copy: %w", t, err)
	case f.Kind != "r" && f.Kind != "p":
		return f, fmt.Errorf("%s is not a table at the target (relkind %q): pgb extract copies ordinary and partitioned tables", t, f.Kind)
	case f.Persistence == "u":
		return f, fmt.Errorf("%s is an unlogged table: its rows are in no backup or WAL (a recovered copy holds it empty), pgb extract cannot bring them back", t)
	}
	if f.Parents, err = related(ctx, conn, `SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhrelid = $1 ORDER BY 1, 2`, f.OID); err != nil {
		return f, err
	}
	if f.Children, err = related(ctx, conn, `SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = $1 ORDER BY 1, 2`, f.OID); err != nil {
		return f, err
	}
	return f, nil
}

func related(ctx context.Context, conn *pgx.Conn, sql string, oid uint32) ([]Table, error) {
	rows, err := conn.Query(ctx, sql, oid)
	if err != nil {
		return nil, fmt.Errorf("look up the inheritance of a table in the copy: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Table])
}

// lookTables finds the --table(s) in the copy, and with a partitioned table its
// partitions (all levels: pg_dump copies a partitioned table's own definition only).
// Without --data-only, an inheritance parent's children must be given too (pg_dump
// copies the parent's own rows only); and with --into, the parent of a table given
// must be given too or exist in the live database (its dump attaches to or inherits
// from it).
func (x *extractor) lookTables(ctx context.Context, conn *pgx.Conn) ([]found, error) {
	target := describeTarget(x.opt.Drill.Target)
	var out []found
	given := map[Table]bool{}
	for _, t := range x.opt.Tables {
		given[t] = true
	}
	queue := append([]Table(nil), x.opt.Tables...)
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		f, err := lookTable(ctx, conn, t, x.db, target)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		if f.Kind != "p" {
			continue
		}
		for _, p := range f.Children {
			if !given[p] {
				given[p] = true
				queue = append(queue, p)
			}
		}
	}
	if x.opt.RenameTo != "" && len(out) > 1 {
		return nil, fmt.Errorf("--rename-to renames one table, and %s is partitioned: extract it under its own name (into another database, or with --dump)", x.opt.Tables[0])
	}
	if x.opt.DataOnly {
		return out, nil
	}
	for _, f := range out {
		if missing := notIn(f.Children, given); f.Kind == "r" && len(missing) > 0 {
			return nil, fmt.Errorf("%s has inheritance children at the target, %s, and pg_dump copies the parent's own rows only: give them with --table too (or --data-only to put back the parent's own rows); nothing was restored",
				f.Table, names(missing))
		}
	}
	return out, nil
}

// checkParents refuses, before loading, a table whose parent (partitioned table or
// inheritance parent) is neither given nor in the live database.
func (x *extractor) checkParents(ctx context.Context, live *pgx.Conn, tables []found) error {
	given := map[Table]bool{}
	for _, f := range tables {
		given[f.Table] = true
	}
	for _, f := range tables {
		for _, p := range notIn(f.Parents, given) {
			exists, err := relExists(ctx, live, p.Schema, p.Name)
			if err != nil {
				return fmt.Errorf("--into: %w", err)
			}
			if !exists {
				return fmt.Errorf("%s is a partition or inheritance child of %s, which the live database lacks: give --table %s (its partitions come with it); nothing was loaded",
					f.Table, p, p)
			}
		}
	}
	return nil
}

func notIn(ts []Table, set map[Table]bool) []Table {
	var out []Table
	for _, t := range ts {
		if !set[t] {
			out = append(out, t)
		}
	}
	return out
}

// policyRoles lists the roles the tables' row-level security policies name: the
// dump names them even with --no-owner.
func policyRoles(ctx context.Context, conn *pgx.Conn, oids []uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT pg_get_userbyid(r) FROM pg_policy p, unnest(p.polroles) r
		WHERE p.polrelid = ANY($1::oid[]) AND r <> 0 ORDER BY 1`, oids)
	if err != nil {
		return nil, fmt.Errorf("list the roles of the tables' policies in the copy: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// missingRoles are those of roles the live database lacks, quoted.
func missingRoles(ctx context.Context, live *pgx.Conn, roles []string) (string, error) {
	var missing []string
	if err := live.QueryRow(ctx, `SELECT coalesce(array_agg(r ORDER BY r), '{}') FROM unnest($1::text[]) r
		WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)`, roles).Scan(&missing); err != nil {
		return "", fmt.Errorf("--into: %w", err)
	}
	q := make([]string, len(missing))
	for i, r := range missing {
		q[i] = QuoteIdent(r)
	}
	return strings.Join(q, ", "), nil
}
