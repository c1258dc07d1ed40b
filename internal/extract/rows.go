package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// column is a stored column: its name and type as format_type writes it.
type column struct{ Name, Type string }

// storedColumns lists the table's columns that hold data (not dropped, not
// generated), in order.
func storedColumns(ctx context.Context, conn *pgx.Conn, t Table) ([]column, error) {
	rows, err := conn.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, t.Schema, t.Name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[column])
}

// sameColumns says how the copy's columns differ from the live table's ("" : not).
func sameColumns(copyCols, liveCols []column) string {
	want := map[string]string{}
	for _, c := range copyCols {
		want[c.Name] = c.Type
	}
	var diff []string
	for _, c := range liveCols {
		switch typ, ok := want[c.Name]; {
		case !ok:
			diff = append(diff, fmt.Sprintf("%s %s only in the live table", QuoteIdent(c.Name), c.Type))
		case typ != c.Type:
			diff = append(diff, fmt.Sprintf("%s is %s at the target, %s in the live table", QuoteIdent(c.Name), typ, c.Type))
		}
		delete(want, c.Name)
	}
	for _, c := range copyCols {
		if _, ok := want[c.Name]; ok {
			diff = append(diff, fmt.Sprintf("%s %s only at the target", QuoteIdent(c.Name), c.Type))
		}
	}
	return strings.Join(diff, ", ")
}

func columnList(cols []column, prefix string) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = prefix + QuoteIdent(c.Name)
	}
	return strings.Join(s, ", ")
}

// loadRows is --data-only --into: in one transaction of the live database, each
// table's rows at the target go into a temporary table (COPY from the copy, streamed),
// and from there into the live table those rows it lacks: the multiset difference on
// whole rows (a row the live table holds twice and the copy three times comes back
// once), inserted with ON CONFLICT DO NOTHING, so that a row whose key (or other
// unique value) the live table holds with other values is left alone and counted.
func (x *extractor) loadRows(ctx context.Context, cp *pgx.Conn, as []Table) error {
	live, err := pgx.Connect(ctx, x.opt.Into)
	if err != nil {
		return fmt.Errorf("--into: connect to the live database: %w", err)
	}
	defer func() { _ = live.Close(context.Background()) }()
	cols := make([][]column, len(as))
	for i, t := range as {
		if ok, err := relExists(ctx, live, t.Schema, t.Name); err != nil || !ok {
			if err != nil {
				return fmt.Errorf("--into: %w", err)
			}
			return fmt.Errorf("--data-only: table %s does not exist in the live database, so its rows have nowhere to go: leave out --data-only to recreate it; nothing was loaded", t)
		}
		cc, err := storedColumns(ctx, cp, t)
		if err != nil {
			return fmt.Errorf("list the columns of %s in the copy: %w", t, err)
		}
		lc, err := storedColumns(ctx, live, t)
		if err != nil {
			return fmt.Errorf("--into: list the columns of %s: %w", t, err)
		}
		if d := sameColumns(cc, lc); d != "" {
			return fmt.Errorf("--data-only: the columns of %s differ between the target and the live table (%s): its rows cannot be matched; load the copy beside it with --rename-to NEW and move the rows yourself; nothing was loaded", t, d)
		}
		cols[i] = cc
	}
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if x.opt.LoadTimeout > 0 {
		lctx, cancel = context.WithTimeout(ctx, x.opt.LoadTimeout)
	}
	defer cancel()
	tx, err := live.Begin(lctx)
	if err != nil {
		return fmt.Errorf("%w: begin: %w; nothing was loaded", ErrLoad, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var xid uint64
	if err := tx.QueryRow(lctx, "SELECT pg_catalog.txid_current()").Scan(&xid); err != nil {
		return fmt.Errorf("%w: %w; nothing was loaded", ErrLoad, err)
	}
	for i, t := range as {
		if err := x.loadTableRows(lctx, cp, tx, i, t, cols[i]); err != nil {
			return fmt.Errorf("%w: %s: %w; the load ran in one transaction, its COMMIT was not sent: nothing was loaded", ErrLoad, t, x.loadCause(ctx, lctx, err))
		}
	}
	if err := tx.Commit(lctx); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return fmt.Errorf("%w: COMMIT: %w; the load was rolled back: nothing was loaded", ErrLoad, err)
		}
		return x.unclearEnd(ctx, xid, "its COMMIT did not return: "+x.loadCause(ctx, lctx, err).Error(), ctx.Err() == nil && lctx.Err() == nil)
	}
	x.res.Loaded = true
	x.event("loaded the rows of %s missing from the live database in one transaction", names(as))
	return nil
}

// loadCause is err, or what stopped the load: a signal or --load-timeout.
func (x *extractor) loadCause(ctx, lctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return errors.New("pgb was interrupted during the load")
	case lctx.Err() != nil:
		return fmt.Errorf("the load did not end within --load-timeout %s (a COMMIT waiting for a synchronous standby? a lock?)", x.opt.LoadTimeout)
	}
	return err
}

// loadTableRows copies table t's rows at the target into temporary table i, and
// inserts those the live table lacks.
func (x *extractor) loadTableRows(ctx context.Context, cp *pgx.Conn, tx pgx.Tx, i int, t Table, cols []column) error {
	tmp := QuoteIdent(fmt.Sprintf("pgb_extract_%d", i))
	list := columnList(cols, "")
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMPORARY TABLE %s ON COMMIT DROP AS SELECT %s FROM ONLY %s WITH NO DATA", tmp, list, t)); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		_, err := cp.PgConn().CopyTo(ctx, pw, fmt.Sprintf("COPY (SELECT %s FROM ONLY %s) TO STDOUT", list, t))
		_ = pw.CloseWithError(err)
		sent <- err
	}()
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, pr, fmt.Sprintf("COPY %s (%s) FROM STDIN", tmp, list))
	_ = pr.CloseWithError(errors.New("the load stopped"))
	if serr := <-sent; serr != nil && err == nil {
		err = fmt.Errorf("read the rows in the copy: %w", serr)
	}
	if err != nil {
		return err
	}
	total := tag.RowsAffected()
	key := `ROW(` + list + `)::text`
	var want, inserted int64
	err = tx.QueryRow(ctx, fmt.Sprintf(`WITH l AS (SELECT %[1]s AS k, count(*) AS c FROM ONLY %[2]s GROUP BY 1),
		s AS (SELECT %[3]s, %[1]s AS "pgb extract key", row_number() OVER (PARTITION BY %[1]s) AS "pgb extract n" FROM %[4]s),
		want AS (SELECT s.* FROM s LEFT JOIN l ON l.k = s."pgb extract key" WHERE s."pgb extract n" > coalesce(l.c, 0)),
		ins AS (INSERT INTO %[2]s (%[3]s) OVERRIDING SYSTEM VALUE SELECT %[3]s FROM want ON CONFLICT DO NOTHING RETURNING 1)
		SELECT (SELECT count(*) FROM want), (SELECT count(*) FROM ins)`, key, t, list, tmp)).Scan(&want, &inserted)
	if err != nil {
		return err
	}
	r := &x.res.Tables[i]
	r.Rows, r.Inserted, r.Present, r.LeftAlone = total, inserted, total-want, want-inserted
	x.event("%s: %d rows at the target, %d of them not in the live table, %d inserted", t, total, want, inserted)
	return nil
}
