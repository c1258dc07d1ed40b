package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// AmcheckSample bounds the btree indexes the amcheck extension checks per database
// when pg_amcheck is not installed: a random sample, so that nightly drills cover
// every index over time.
const AmcheckSample = 200

// amcheck checks the copy's indexes with amcheck, as far as it can:
//   - pg_amcheck next to the server binaries: every database on a promoted copy
//     (installing the extension where it is missing); on a copy paused at a target,
//     read-only, the databases where the amcheck extension was already installed;
//   - else the amcheck extension itself: bt_index_check on a random sample of at most
//     AmcheckSample btree indexes per database (the same databases as above);
//   - else nothing, and a warning saying why.
//
// The check's name says which was run and on what.
func (d *drill) amcheck(ctx context.Context, bin string, dbs []string, add func(string, error, string)) {
	if ctx.Err() != nil {
		return
	}
	writable := d.rep.Reached.Promoted
	installed, available, err := d.amcheckInstalled(ctx, dbs)
	if err != nil {
		add("amcheck", err, "")
		return
	}
	var use []string
	for _, db := range dbs {
		if installed[db] != "" || (writable && available) {
			use = append(use, db)
		}
	}
	if len(use) == 0 {
		why := "the amcheck extension is not available to the server (install PostgreSQL's contrib modules next to " + bin + ")"
		if !writable {
			why = "the copy is paused at the target, read-only, and no database has the amcheck extension installed"
		}
		d.rep.Warnings = append(d.rep.Warnings, "amcheck not run: "+why)
		return
	}
	on := fmt.Sprintf("%d databases", len(use))
	if len(use) < len(dbs) {
		on = fmt.Sprintf("%d of %d databases, those with amcheck installed", len(use), len(dbs))
	}
	p := filepath.Join(bin, "pg_amcheck")
	if _, err := os.Stat(p); err == nil {
		args := []string{"-h", d.scratch, "-p", strconv.Itoa(d.srv.Port), "-U", d.user}
		for _, db := range use {
			args = append(args, "-d", quotePattern(db))
		}
		if writable {
			args = append(args, "--install-missing")
		}
		cmd := exec.CommandContext(ctx, p, args...) //nolint:gosec // found next to the server
		out, err := cmd.CombinedOutput()
		name := "pg_amcheck on " + on
		if err != nil {
			add(name, fmt.Errorf("%w: %s", err, tail(string(out), 300)), "")
			return
		}
		add(name, nil, "no corruption found")
		return
	}
	d.rep.Warnings = append(d.rep.Warnings, fmt.Sprintf(
		"pg_amcheck not found in %s: the amcheck extension checked a sample of at most %d btree indexes per database, and no table", bin, AmcheckSample))
	checked, total := 0, 0
	for _, db := range use {
		n, m, err := d.btIndexCheck(ctx, db, installed[db], writable)
		checked, total = checked+n, total+m
		if err != nil {
			add(fmt.Sprintf("amcheck bt_index_check in database %s", db), err, "")
			return
		}
	}
	add(fmt.Sprintf("amcheck bt_index_check on %d of %d btree indexes in %s", checked, total, on), nil, "no corruption found")
}

// amcheckInstalled is, per database, the schema the amcheck extension is installed
// in ("" when it is not), and whether the server could install it.
func (d *drill) amcheckInstalled(ctx context.Context, dbs []string) (map[string]string, bool, error) {
	installed := map[string]string{}
	available := false
	for _, db := range dbs {
		c, err := pgx.Connect(ctx, d.srv.DSN(d.user, db))
		if err != nil {
			return nil, false, fmt.Errorf("database %s: %w", db, err)
		}
		var schema *string
		err = c.QueryRow(ctx, `SELECT (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
			WHERE e.extname = 'amcheck'), EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck')`).Scan(&schema, &available)
		_ = c.Close(context.Background())
		if err != nil {
			return nil, false, fmt.Errorf("database %s: %w", db, err)
		}
		if schema != nil {
			installed[db] = *schema
		}
	}
	return installed, available, nil
}

// btIndexCheck runs bt_index_check on a random sample of db's btree indexes,
// installing the extension first when the copy is writable and it is missing.
// Unlogged indexes are empty after recovery and unreadable during it: skipped.
func (d *drill) btIndexCheck(ctx context.Context, db, schema string, writable bool) (checked, total int, err error) {
	c, err := pgx.Connect(ctx, d.srv.DSN(d.user, db))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = c.Close(context.Background()) }()
	if schema == "" {
		if !writable {
			return 0, 0, errors.New("the amcheck extension is not installed")
		}
		if _, err := c.Exec(ctx, "CREATE EXTENSION amcheck"); err != nil {
			return 0, 0, fmt.Errorf("CREATE EXTENSION amcheck in the copy: %w", err)
		}
		if err := c.QueryRow(ctx, `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
			WHERE e.extname = 'amcheck'`).Scan(&schema); err != nil {
			return 0, 0, err
		}
	}
	const candidates = `FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
		WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence = 'p'`
	if err := c.QueryRow(ctx, "SELECT count(*) "+candidates).Scan(&total); err != nil {
		return 0, 0, err
	}
	rows, err := c.Query(ctx, "SELECT c.oid::regclass::text, c.oid "+candidates+" ORDER BY random() LIMIT $1", AmcheckSample)
	if err != nil {
		return 0, 0, err
	}
	type index struct {
		Name string
		OID  uint32
	}
	sample, err := pgx.CollectRows(rows, pgx.RowToStructByPos[index])
	if err != nil {
		return 0, total, err
	}
	check := "SELECT " + pgx.Identifier{schema, "bt_index_check"}.Sanitize() + "($1::oid::regclass)"
	for _, ix := range sample {
		if _, err := c.Exec(ctx, check, ix.OID); err != nil {
			return checked, total, fmt.Errorf("index %s: %w", ix.Name, err)
		}
		checked++
	}
	return checked, total, nil
}

// quotePattern is name as a pg_amcheck (psql-style) pattern that matches it alone:
// double-quoted, so that *, ?, . and capitals are literal.
func quotePattern(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
