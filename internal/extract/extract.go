// Package extract gets tables back as they were at a recovery target, without rolling
// the live database back: it recovers a throwaway copy to the target on the drill's
// machinery (internal/drill), dumps the tables there with the copy's own pg_dump, and
// loads the dump into the live database in one transaction or writes it to a file.
package extract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/drill"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
)

// ErrLoad means the tables were recovered and dumped, but the load into the live
// database failed or did not end cleanly. The load runs in one transaction; the
// error says whether it was rolled back (nothing was loaded), committed, or is
// unknown.
var ErrLoad = errors.New("load into the live database")

// Options are what an extract does.
type Options struct {
	Tables   []Table
	Database string // the database the tables are in ("" : postgres)
	Into     string // connection string of the live database to load into
	Dump     string // or the file to write the dump to (never an existing one)
	RenameTo string // the name the (one) table gets, its indexes and sequences with it
	DataOnly bool   // the rows only, into the existing live table
	NoOwner  bool   // leave out ownership and grants (pg_dump --no-owner --no-privileges)
	// LoadTimeout bounds the load into the live database (0: none); past it the load
	// is stopped and the live server asked how its transaction ended.
	LoadTimeout time.Duration
	// Drill is how the copy is recovered: Target (required, not the end of the
	// archive), Scratch, Keep, Timeout, PGBin, Owner, User, RestoreCommand, Log.
	Drill  drill.Options
	Events io.Writer // one line per step
}

// TableResult is one table extracted.
type TableResult struct {
	Table Table // its name at the target
	As    Table // the name it was dumped as (--rename-to)
	Rows  int64 // rows in the copy at the target (the table's own, not its children's)
	// With --data-only --into: of Rows, those inserted into the live table, those it
	// held already, and those left alone (a key or unique value they hold is taken by
	// a live row with other values).
	DataOnly                     bool
	Inserted, Present, LeftAlone int64
}

// Result is what an extract did.
type Result struct {
	Tables []TableResult
	Dump   string // the file written (--dump)
	Loaded bool   // loaded into the live database (--into)
	Report *drill.Report
}

// Validate checks the options alone (no I/O): its errors are usage mistakes.
func (o *Options) Validate() error {
	bad := fmt.Errorf
	switch {
	case len(o.Tables) == 0:
		return bad("give the table to extract: --table SCHEMA.NAME (repeatable)")
	case (o.Into == "") == (o.Dump == ""):
		return bad("give one of --into DSN (load into the live database) or --dump FILE (write the SQL to a new file)")
	case o.Drill.Target == nil || o.Drill.Target.Kind == restore.ToEnd:
		return bad("give the point to extract at: --before-event XID (the xid pgb events --table NAME prints) or --target-time, --target-name, --target-lsn, --target-xid; there is no default: at the end of the archive the table is as it is now")
	case o.RenameTo != "" && len(o.Tables) > 1:
		return bad("--rename-to renames one table: give a single --table")
	case o.RenameTo != "" && o.DataOnly:
		return bad("--rename-to creates a new table and --data-only loads rows into an existing one: give one of them")
	}
	seen := map[Table]bool{}
	for _, t := range o.Tables {
		if seen[t] {
			return bad("--table %s given twice", t)
		}
		seen[t] = true
	}
	if o.RenameTo != "" {
		if err := checkIdent(o.RenameTo); err != nil {
			return bad("--rename-to: %v", err)
		}
	}
	return nil
}

type extractor struct {
	opt  Options
	db   string
	dump string // absolute --dump
	res  *Result
}

// Run extracts the tables. The result is returned also on failure (its Report once
// the copy was started); an error wrapping ErrLoad means the load into the live
// database failed and nothing was loaded.
func Run(ctx context.Context, rp *repo.Repo, opt Options) (*Result, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	x := &extractor{opt: opt, db: opt.Database, res: &Result{}}
	if x.db == "" {
		x.db = "postgres"
	}
	if opt.Dump != "" {
		abs, err := filepath.Abs(opt.Dump)
		if err != nil {
			return nil, err
		}
		if _, err := os.Lstat(abs); err == nil {
			return nil, fmt.Errorf("--dump %s exists: pgb extract writes a new file only (remove it or name another)", abs)
		}
		if err := probeDir(filepath.Dir(abs)); err != nil {
			return nil, fmt.Errorf("--dump %s: %w: pgb extract writes a temporary file there and hard-links it to the name; choose an existing directory on a filesystem with hard links; nothing was restored", abs, err)
		}
		x.dump = abs
	}
	if opt.Into != "" {
		if err := x.preflight(ctx); err != nil {
			return nil, err
		}
	}
	dopt := opt.Drill
	dopt.NoChecks = true
	dopt.AtTarget = x.atTarget
	if opt.Events != nil {
		dopt.Events = relabel{opt.Events}
	}
	if dopt.Progress != nil {
		dopt.Progress = relabel{dopt.Progress}
	}
	rep, err := drill.Run(ctx, rp, dopt)
	x.res.Report = rep
	return x.res, targetNotReached(err, rep, opt.Drill.Target)
}

// targetNotReached says in one line what to do when recovery replayed all the
// archived WAL and ended before the target; other errors are returned as they are.
func targetNotReached(err error, rep *drill.Report, t *restore.Target) error {
	if err == nil || !errors.Is(err, drill.ErrFailed) || !strings.Contains(err.Error(), "recovery ended before configured recovery target was reached") {
		return err
	}
	backup := "the backup"
	if rep != nil && rep.Backup.Name != "" {
		backup = "backup " + rep.Backup.Name
	}
	if t.Kind == restore.ToXID {
		return fmt.Errorf("transaction %d did not commit or abort in the archived WAL after %s, so recovery cannot stop at it: check the xid (pgb events prints those of DROP, TRUNCATE and mass DELETE; a transaction still open has none yet)", t.XID, backup)
	}
	return fmt.Errorf("the target (%s) is beyond the archived WAL after %s: recovery replayed all of it without reaching the target; choose an earlier one (pgb status shows the recoverable window)", describeTarget(t), backup)
}

// probeDir checks that dir takes a new file and a hard link to it, as atomicfile's
// CommitNew needs, and leaves nothing.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".pgb-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	defer func() { _ = os.Remove(name) }()
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(name, name+".link"); err != nil {
		return err
	}
	return os.Remove(name + ".link")
}

func (x *extractor) event(format string, a ...any) {
	if x.opt.Events != nil {
		_, _ = fmt.Fprintf(x.opt.Events, "extract: "+format+"\n", a...)
	}
}

// relabel writes the drill's step lines as extract's.
type relabel struct{ w io.Writer }

func (r relabel) Write(p []byte) (int, error) {
	if _, err := r.w.Write(bytes.Replace(p, []byte("drill: "), []byte("extract: "), 1)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// preflight checks the live database before anything is restored: it answers, and
// each table is absent (or present, with --data-only).
func (x *extractor) preflight(ctx context.Context) error {
	live, err := pgx.Connect(ctx, x.opt.Into)
	if err != nil {
		return fmt.Errorf("--into: connect to the live database: %w", err)
	}
	defer func() { _ = live.Close(context.Background()) }()
	var user string
	var super bool
	if err := live.QueryRow(ctx, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&user, &super); err != nil {
		return fmt.Errorf("--into: %w", err)
	}
	for _, t := range x.opt.Tables {
		as := t
		if x.opt.RenameTo != "" {
			as.Name = x.opt.RenameTo
		}
		exists, err := relExists(ctx, live, as.Schema, as.Name)
		if err != nil {
			return fmt.Errorf("--into: %w", err)
		}
		switch {
		case exists && !x.opt.DataOnly && x.opt.RenameTo != "":
			return fmt.Errorf("--rename-to: %s exists in the live database: choose another name; nothing was restored", as)
		case exists && !x.opt.DataOnly:
			return fmt.Errorf("table %s exists in the live database: pgb extract does not overwrite it; give --rename-to NEW to load the copy beside it, or --data-only to put back the rows it lacks; nothing was restored", as)
		case !exists && x.opt.DataOnly:
			return fmt.Errorf("--data-only: table %s does not exist in the live database, so its rows have nowhere to go: leave out --data-only to recreate the table; nothing was restored", as)
		}
	}
	if super { // after the refusals: an error stays one line
		x.event("warning: --into connects as superuser %s: the SQL loaded comes from the repository, and its CHECK constraints, defaults, index expressions and triggers run with a superuser's rights; unless you trust the repository, connect as the table owner's role, or write --dump FILE and read it first", QuoteIdent(user))
	}
	return nil
}

func relExists(ctx context.Context, conn *pgx.Conn, schema, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2)`, schema, name).Scan(&ok)
	return ok, err
}

// atTarget runs on the recovered copy: finds the tables, promotes the copy, renames,
// checks the live database, dumps and loads.
func (x *extractor) atTarget(ctx context.Context, c *drill.Copy) error {
	conn, err := pgx.Connect(ctx, c.DSN(x.db))
	if err != nil {
		return fmt.Errorf("database %s of the copy at the target (%s): %w", x.db, c.Target, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	tables, err := x.lookTables(ctx, conn)
	if err != nil {
		return err
	}
	oids := make([]uint32, len(tables))
	x.opt.Tables = make([]Table, len(tables))
	for i, f := range tables {
		oids[i], x.opt.Tables[i] = f.OID, f.Table
	}
	if !c.Promoted {
		// Paused before a DROP's commit, recovery may hold that transaction's lock on
		// the table; pg_dump would wait for it forever. The copy is throwaway and does
		// not archive: ending its recovery here loses nothing.
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 300)").Scan(&ok); err != nil {
			return fmt.Errorf("promote the copy at the target (to read the tables without recovery's locks): %w", err)
		}
		if !ok {
			return errors.New("promote the copy at the target (to read the tables without recovery's locks): not done within 300 s")
		}
		x.event("promoted the copy at the target (it is throwaway and does not archive)")
	}
	as := append([]Table(nil), x.opt.Tables...)
	var objs []Object
	for i := range oids {
		o, err := objectsOf(ctx, conn, oids[i])
		if err != nil {
			return err
		}
		objs = append(objs, o...)
	}
	if x.opt.RenameTo != "" {
		if objs, err = x.rename(ctx, conn, objs); err != nil {
			return err
		}
		as[0].Name = x.opt.RenameTo
	}
	for i, t := range as {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM ONLY "+t.String()).Scan(&n); err != nil {
			return fmt.Errorf("count the rows of %s in the copy: %w", t, err)
		}
		x.res.Tables = append(x.res.Tables, TableResult{Table: x.opt.Tables[i], As: t, Rows: n, DataOnly: x.opt.DataOnly && x.opt.Into != ""})
	}
	if x.opt.Into != "" && x.opt.DataOnly {
		return x.loadRows(ctx, conn, as)
	}
	if x.opt.Into != "" {
		roles, err := rolesOf(ctx, conn, oids)
		if err != nil {
			return err
		}
		polRoles, err := policyRoles(ctx, conn, oids)
		if err != nil {
			return err
		}
		if err := x.checkLive(ctx, as, objs, roles, polRoles, tables); err != nil {
			return err
		}
	}
	return x.dumpAndLoad(ctx, c, as)
}

// describeTarget is the target as the user gave it: an exclusive one is "just before".
func describeTarget(t *restore.Target) string {
	if t.Exclusive {
		return "just before " + t.String()
	}
	return t.String()
}

// objectsOf lists what goes with table oid and is named in a schema's namespace:
// its indexes (constraint-backing ones too), owned sequences (serial, identity) and
// extended statistics.
func objectsOf(ctx context.Context, conn *pgx.Conn, oid uint32) ([]Object, error) {
	rows, err := conn.Query(ctx, `
		SELECT 'index', n.nspname, c.relname FROM pg_index i
		  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE i.indrelid = $1
		UNION ALL
		SELECT 'sequence', n.nspname, c.relname FROM pg_depend d
		  JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
		   AND d.refobjid = $1 AND d.deptype IN ('a', 'i') AND c.relkind = 'S'
		UNION ALL
		SELECT 'statistics', n.nspname, s.stxname FROM pg_statistic_ext s
		  JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.stxrelid = $1
		ORDER BY 1, 2, 3`, oid)
	if err != nil {
		return nil, fmt.Errorf("list the indexes and sequences of the table in the copy: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Object, error) {
		var o Object
		err := r.Scan(&o.Kind, &o.Schema, &o.Name)
		return o, err
	})
}

// rename gives the table its --rename-to name in the copy, and its objects theirs
// (RenameName), in one transaction; it returns the objects as renamed.
func (x *extractor) rename(ctx context.Context, conn *pgx.Conn, objs []Object) ([]Object, error) {
	plan, err := PlanRename(x.opt.Tables[0], x.opt.RenameTo, objs)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, r := range plan {
			if _, err := tx.Exec(ctx, r.SQL()); err != nil {
				return fmt.Errorf("in the copy, %s: %w", r.SQL(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Object, 0, len(plan)-1)
	for _, r := range plan[1:] {
		out = append(out, Object{Kind: r.Kind, Schema: r.Schema, Name: r.New})
		x.event("in the copy, %s %s.%s renamed %s", r.Kind, QuoteIdent(r.Schema), QuoteIdent(r.Old), QuoteIdent(r.New))
	}
	x.event("in the copy, table %s renamed %s", x.opt.Tables[0], QuoteIdent(x.opt.RenameTo))
	return out, nil
}

// rolesOf lists the roles the dump names for the tables and their owned sequences:
// owners, grantees and grantors (of the tables' column grants too).
func rolesOf(ctx context.Context, conn *pgx.Conn, oids []uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `
		WITH rels AS (
		  SELECT c.relowner, c.relacl FROM pg_class c
		   WHERE c.oid = ANY($1::oid[]) OR c.oid IN (SELECT d.objid FROM pg_depend d
		         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
		           AND d.refobjid = ANY($1::oid[]) AND d.deptype IN ('a', 'i'))
		), cols AS (
		  SELECT att.attacl FROM pg_attribute att WHERE att.attrelid = ANY($1::oid[]) AND att.attacl IS NOT NULL
		), ids AS (
		  SELECT relowner AS r FROM rels
		  UNION SELECT a.grantee FROM rels, aclexplode(rels.relacl) a
		  UNION SELECT a.grantor FROM rels, aclexplode(rels.relacl) a
		  UNION SELECT a.grantee FROM cols, aclexplode(cols.attacl) a
		  UNION SELECT a.grantor FROM cols, aclexplode(cols.attacl) a
		)
		SELECT DISTINCT pg_get_userbyid(r) FROM ids WHERE r <> 0 ORDER BY 1`, oids)
	if err != nil {
		return nil, fmt.Errorf("list the roles owning the tables in the copy: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// checkLive refuses, before loading anything, what the load would collide with or
// miss in the live database: an existing table, index, sequence or statistics
// object of the same name, a role the dump names, a parent table absent.
func (x *extractor) checkLive(ctx context.Context, as []Table, objs []Object, roles, polRoles []string, tables []found) error {
	live, err := pgx.Connect(ctx, x.opt.Into)
	if err != nil {
		return fmt.Errorf("--into: connect to the live database: %w", err)
	}
	defer func() { _ = live.Close(context.Background()) }()
	if !x.opt.NoOwner {
		missing, err := missingRoles(ctx, live, roles)
		if err != nil {
			return err
		}
		if missing != "" {
			return fmt.Errorf("the copy's tables are owned by or granted to role(s) %s, which the live database lacks: create them (CREATE ROLE …) or give --no-owner to load the tables owned by the --into user, without grants; nothing was loaded",
				missing)
		}
	}
	missing, err := missingRoles(ctx, live, polRoles)
	if err != nil {
		return err
	}
	if missing != "" {
		return fmt.Errorf("the copy's tables have row-level security policies for role(s) %s, which the live database lacks: create them (CREATE ROLE …); nothing was loaded", missing)
	}
	if err := x.checkParents(ctx, live, tables); err != nil {
		return err
	}
	for _, t := range as {
		exists, err := relExists(ctx, live, t.Schema, t.Name)
		if err != nil {
			return fmt.Errorf("--into: %w", err)
		}
		if exists {
			return fmt.Errorf("table %s exists in the live database (created since pgb extract began?): pgb extract does not overwrite it; nothing was loaded", t)
		}
	}
	for _, o := range objs {
		var exists bool
		if o.Kind == "statistics" {
			err = live.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
				WHERE n.nspname = $1 AND s.stxname = $2)`, o.Schema, o.Name).Scan(&exists)
		} else {
			exists, err = relExists(ctx, live, o.Schema, o.Name)
		}
		if err != nil {
			return fmt.Errorf("--into: %w", err)
		}
		if exists {
			return fmt.Errorf("the table's %s %s.%s would collide with a relation of that name in the live database: give --rename-to NEW (its indexes and sequences are renamed with it); nothing was loaded",
				o.Kind, QuoteIdent(o.Schema), QuoteIdent(o.Name))
		}
	}
	return nil
}

// dumpAndLoad dumps the tables with the copy's pg_dump into the --dump file, or into
// the scratch directory and from there into the live database.
func (x *extractor) dumpAndLoad(ctx context.Context, c *drill.Copy, as []Table) error {
	if x.dump != "" {
		f, err := atomicfile.Create(x.dump, 0o600)
		if err != nil {
			return fmt.Errorf("--dump: %w", err)
		}
		defer f.Abort()
		n, err := x.pgDump(ctx, c, as, f)
		if err != nil {
			return err
		}
		if err := f.CommitNew(); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("--dump %s was created while pgb extract ran: not replaced, the dump is not written", x.dump)
			}
			return fmt.Errorf("--dump: %w", err)
		}
		x.res.Dump = x.dump
		x.event("wrote %s (%d bytes)", x.dump, n)
		return nil
	}
	f, err := os.CreateTemp(c.SockDir, "extract-*.sql")
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // removed with the scratch directory
	if _, err := io.WriteString(f, loadPrelude); err != nil {
		return err
	}
	if _, err := x.pgDump(ctx, c, as, f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return x.load(ctx, c, f.Name())
}

// pgDump writes the tables' plain SQL dump to w: schema and data, or the data only
// (then without the setval of the owned sequences: the live ones stay as they are).
func (x *extractor) pgDump(ctx context.Context, c *drill.Copy, as []Table, w io.Writer) (int64, error) {
	args := []string{"--dbname=" + c.DSN(x.db), "--no-password", "--strict-names"}
	for _, t := range as {
		args = append(args, "--table="+t.Pattern())
	}
	if x.opt.NoOwner {
		args = append(args, "--no-owner", "--no-privileges")
	}
	cw := &countWriter{w: w}
	if x.opt.DataOnly {
		if err := x.dumpRows(ctx, c, as, args, cw); err != nil {
			return 0, err
		}
	} else if err := runTool(ctx, c, "pg_dump", append(args, "--format=plain"), cw); err != nil {
		return 0, fmt.Errorf("pg_dump of %s failed: %w", names(as), err)
	}
	x.event("dumped %s with pg_dump (%d bytes of SQL%s)", names(as), cw.n, map[bool]string{true: ", rows only"}[x.opt.DataOnly])
	return cw.n, nil
}

// dumpRows writes the tables' rows as SQL without the owned sequences' setval: a
// custom-format dump, its table of contents without the SEQUENCE SET entries, and
// pg_restore of what is left (no text of the dump is filtered: rows stay whole).
func (x *extractor) dumpRows(ctx context.Context, c *drill.Copy, as []Table, args []string, w io.Writer) error {
	dir, err := os.MkdirTemp(c.SockDir, "extract-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	archive, list := filepath.Join(dir, "rows.dump"), filepath.Join(dir, "rows.list")
	if err := runTool(ctx, c, "pg_dump", append(args, "--data-only", "--format=custom", "--file="+archive), io.Discard); err != nil {
		return fmt.Errorf("pg_dump of %s failed: %w", names(as), err)
	}
	var toc bytes.Buffer
	if err := runTool(ctx, c, "pg_restore", []string{"--list", archive}, &toc); err != nil {
		return fmt.Errorf("pg_restore --list of the rows of %s failed: %w", names(as), err)
	}
	if err := os.WriteFile(list, withoutSequenceSet(toc.Bytes()), 0o600); err != nil {
		return err
	}
	if err := runTool(ctx, c, "pg_restore", []string{"--use-list=" + list, "--file=-", archive}, w); err != nil {
		return fmt.Errorf("pg_restore of the rows of %s failed: %w", names(as), err)
	}
	return nil
}

// runTool runs the copy's PostgreSQL client program name, its output to w; its
// error carries the tail of the program's stderr.
func runTool(ctx context.Context, c *drill.Copy, name string, args []string, w io.Writer) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, name), args...) //nolint:gosec // next to the server found by FindBin
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("%w (it comes with the PostgreSQL client package, next to the server binaries in %s)", err, c.Bin)
		}
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(tail(stderr.String(), 400)))
	}
	return nil
}

func (x *extractor) resultNames() []Table {
	out := make([]Table, len(x.res.Tables))
	for i, t := range x.res.Tables {
		out[i] = t.As
	}
	return out
}

// firstError is psql's first ERROR line, else its output's tail, else err.
func firstError(out string, err error) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ERROR:") {
			return strings.TrimSpace(l)
		}
	}
	if s := strings.TrimSpace(out); s != "" {
		return tail(s, 400)
	}
	return "psql: " + err.Error()
}

func names(ts []Table) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Summary is one line per table: rows and where they went.
func (r *Result) Summary() []string {
	var out []string
	for _, t := range r.Tables {
		where := "loaded into the live database"
		if r.Dump != "" {
			where = "written to " + r.Dump
		} else if !r.Loaded {
			where = "not loaded"
		}
		as := ""
		if t.As != t.Table {
			as = " as " + t.As.String()
		}
		if t.DataOnly && r.Loaded {
			out = append(out, fmt.Sprintf("%s: %d rows at the target: %d inserted into the live table, %d already there, %d left alone (a key or unique value they hold is taken by a live row with other values)",
				t.Table, t.Rows, t.Inserted, t.Present, t.LeftAlone))
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s rows %s%s", t.Table, strconv.FormatInt(t.Rows, 10), where, as))
	}
	return out
}
