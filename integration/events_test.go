package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/wal"
)

// eventsDoc is what pgb events --json prints (docs/events.md).
type eventsDoc struct {
	Complete bool `json:"complete"`
	Events   []struct {
		Kind       string    `json:"kind"`
		Time       time.Time `json:"commit_time"`
		Xid        uint32    `json:"xid"`
		LSN        string    `json:"lsn"`
		RestoreLSN string    `json:"restore_lsn"`
		Timeline   uint32    `json:"timeline"`
		Database   string    `json:"database"`
		Relations  []struct {
			File   string `json:"file"`
			Schema string `json:"schema"`
			Name   string `json:"name"`
			Kind   string `json:"relkind"`
		} `json:"relations"`
		Deleted int64  `json:"rows_deleted"`
		Restore string `json:"restore_command"`
	} `json:"events"`
	Problems []string `json:"problems"`
}

// inTransaction runs stmts in one transaction on one connection and returns its
// xid (txid_current(), taken first).
func inTransaction(t *testing.T, c *pgtest.Cluster, stmts ...string) uint32 {
	t.Helper()
	ctx := context.Background()
	conn := c.Connect(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current() % 4294967296").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return uint32(xid)
}

// A user learns that tables were dropped, truncated and rewritten, a database
// dropped and rows deleted, but not when: pgb events lists each with its transaction and
// commit time (as PostgreSQL recorded them, and as pg_waldump shows them), and
// the printed restore command brings the dropped table back with every row
// committed before the DROP.
func TestFindTheDropTableWithPgbEventsAndRestoreJustBeforeIt(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	bin := pgtest.BuildPGB(t)
	src := pgtest.NewCluster(t, pgtest.Options{
		ArchiveCommand: bin + " wal-push --repo " + repo + " %p",
		Conf:           []string{"track_commit_timestamp = on"},
	})
	src.Start(t)
	for _, sql := range []string{
		"CREATE TABLE doomed (id int PRIMARY KEY, pad text)",
		"INSERT INTO doomed SELECT g, 'before the backup' FROM generate_series(1, 100) g",
		"CREATE TABLE emptied (id int PRIMARY KEY, pad text)",
		"INSERT INTO emptied SELECT g, 'x' FROM generate_series(1, 50) g",
		"CREATE TABLE pruned (id int PRIMARY KEY, pad text)",
		"INSERT INTO pruned SELECT g, 'x' FROM generate_series(1, 3000) g",
		"CREATE DATABASE scratch",
	} {
		src.Exec(t, sql)
	}
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")

	// Rows committed after the backup, before the DROP: the restore must bring them back.
	for i := 101; i <= 120; i++ {
		src.Exec(t, fmt.Sprintf("INSERT INTO doomed VALUES (%d, 'after the backup')", i))
	}
	beforeDrop := src.QueryInt(t, "SELECT count(*) FROM doomed")
	dropXid := inTransaction(t, src, "DROP TABLE doomed")
	truncXid := inTransaction(t, src, "TRUNCATE emptied")
	beforeDropDB := src.QueryInt(t, "SELECT txid_current() % 4294967296")
	src.Exec(t, "DROP DATABASE scratch")
	deleteXid := inTransaction(t, src, "SAVEPOINT s", "DELETE FROM pruned WHERE id <= 1500", "RELEASE s")
	// A mass delete rolled back, and a small one: neither is an event.
	src.Exec(t, "BEGIN; DELETE FROM pruned; ROLLBACK")
	src.Exec(t, "DELETE FROM pruned WHERE id <= 1510")
	src.Exec(t, "VACUUM FULL pruned")
	last := src.SwitchWAL(t)
	src.WaitArchived(t, last, 60*time.Second)

	doc, out := readEvents(t, repo)
	if !doc.Complete || len(doc.Problems) != 0 {
		t.Fatalf("the scan was not complete: %v", doc.Problems)
	}
	byKind := map[string]int{}
	for i, e := range doc.Events {
		byKind[e.Kind] = i
		t.Logf("%s xid %d at %s, LSN %s: %+v", e.Kind, e.Xid, e.Time.Format(time.RFC3339Nano), e.LSN, e.Relations)
	}
	if len(doc.Events) != 5 {
		t.Fatalf("want 5 events (drop, truncate, drop_database, rows, rewrite), got %d:\n%s", len(doc.Events), out)
	}
	check := func(kind string, xid uint32, rel string) {
		t.Helper()
		i, ok := byKind[kind]
		if !ok {
			t.Fatalf("no %s event:\n%s", kind, out)
		}
		e := doc.Events[i]
		if xid != 0 && e.Xid != xid {
			t.Errorf("%s: xid %d, the transaction was %d", kind, e.Xid, xid)
		}
		committed := src.QueryString(t, fmt.Sprintf("SELECT to_char(pg_xact_commit_timestamp('%d'::xid) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", e.Xid))
		if got := e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"); got != committed {
			t.Errorf("%s: commit time %s, PostgreSQL recorded %s", kind, got, committed)
		}
		stop := e.LSN
		if kind == "drop_database" {
			stop = e.RestoreLSN // the in-place update marking it invalid, before the commit
		}
		if e.Timeline != 1 || !strings.Contains(e.Restore, fmt.Sprintf("--target-lsn %s --target-exclusive", stop)) {
			t.Errorf("%s: timeline %d, restore command %q", kind, e.Timeline, e.Restore)
		}
		if rel != "" {
			found := false
			for _, r := range e.Relations {
				found = found || r.Schema+"."+r.Name == rel
			}
			if !found {
				t.Errorf("%s: relations %+v do not name %s", kind, e.Relations, rel)
			}
		}
	}
	check("drop", dropXid, "public.doomed")
	check("truncate", truncXid, "public.emptied")
	check("rows", deleteXid, "public.pruned")
	check("drop_database", 0, "")
	check("rewrite", 0, "public.pruned")
	dropDB := doc.Events[byKind["drop_database"]]
	if dropDB.Database != "scratch" || int64(dropDB.Xid) <= beforeDropDB {
		t.Errorf("drop_database: database %q xid %d (xids before it up to %d)", dropDB.Database, dropDB.Xid, beforeDropDB)
	}
	if got := doc.Events[byKind["rows"]].Deleted; got != 1500 {
		t.Errorf("rows deleted %d, want 1500", got)
	}

	// pg_waldump agrees: the same commit records, the DROP DATABASE record in that transaction,
	// and as many heap DELETEs as pgb counted.
	crossCheckEventsWithPgWaldump(t, src, repo, &doc)

	// Only the events on one table.
	one, _ := readEvents(t, repo, "--table", "doomed")
	if len(one.Events) != 1 || one.Events[0].Xid != dropXid {
		t.Fatalf("--table doomed: %+v", one.Events)
	}
	// The human output fits 80 columns and prints the same command.
	text := mustPGB(t, "", nil, "events", "--repo", repo).stdout
	t.Logf("pgb events:\n%s", text)
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 80 {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
	if !strings.Contains(text, "DROP TABLE public.doomed") && !strings.Contains(text, "DROP TABLE\n  public.doomed") {
		t.Errorf("text output does not show the DROP TABLE:\n%s", text)
	}

	// Restoring with the printed command brings the table back with every row.
	c := restoreWithPrintedCommand(t, repo, doc.Events[byKind["drop"]].Restore)
	if got := c.QueryInt(t, "SELECT count(*) FROM doomed"); got != beforeDrop {
		t.Fatalf("restored doomed has %d rows, want every row committed before the DROP: %d", got, beforeDrop)
	}
	if got := c.QueryInt(t, "SELECT count(*) FROM emptied"); got != 50 {
		t.Fatalf("restored emptied has %d rows: the TRUNCATE came after the target and must not be replayed", got)
	}
}

// readEvents runs pgb events --json on repo (plus args) and decodes what it prints.
func readEvents(t *testing.T, repo string, args ...string) (eventsDoc, string) {
	t.Helper()
	var doc eventsDoc
	out := mustPGB(t, "", nil, append([]string{"events", "--repo", repo, "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("events --json: %v\n%s", err, out.stdout)
	}
	return doc, out.stdout
}

// restoreWithPrintedCommand runs the restore command pgb events printed (DIR: a new
// directory), promoting at the target, starts the copy and waits for it to be writable.
func restoreWithPrintedCommand(t *testing.T, repo, restoreCmd string) *pgtest.Cluster {
	t.Helper()
	t.Logf("restore command: %s", restoreCmd)
	statusReaches(t, repo, restoreCmd)
	cmd := strings.Fields(restoreCmd)
	if len(cmd) < 3 || cmd[0] != "pgb" || cmd[1] != "restore" {
		t.Fatalf("restore command %q", restoreCmd)
	}
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	args := []string{"restore", "--repo", repo}
	for _, a := range cmd[2:] {
		if a == "DIR" {
			a = dir
		}
		args = append(args, a)
	}
	// Paused just before the event's commit, recovery may hold its lock: promote.
	mustPGB(t, "", nil, append(args, "--target-action", "promote")...)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	return c
}

var waldumpTxRE = regexp.MustCompile(`desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC`)

// crossCheckEventsWithPgWaldump fetches the archived WAL and checks each event
// against pg_waldump's record at the event's LSN.
func crossCheckEventsWithPgWaldump(t *testing.T, src *pgtest.Cluster, repo string, doc *eventsDoc) {
	t.Helper()
	dir := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "wal"))
	var names []string
	err := filepath.WalkDir(filepath.Join(repo, "wal"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 24 {
			names = append(names, d.Name())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		mustPGB(t, "", nil, "wal-fetch", "--repo", repo, n, filepath.Join(dir, n))
	}
	dump := pgWaldump(t, src, dir, names[0], names[len(names)-1])
	crossCheckChangesWithPgWaldump(t, dir, names, dump)
	entries := map[wal.LSN]string{} // LSN → whole line
	deletes := map[uint32]int{}
	var dropDBTx []uint32
	for _, line := range strings.Split(dump, "\n") {
		m := regexp.MustCompile(`tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+),`).FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lsn, err := wal.ParseLSN(m[2])
		if err != nil {
			t.Fatal(err)
		}
		entries[lsn] = line
		tx, _ := strconv.ParseUint(m[1], 10, 32)
		switch {
		case strings.HasPrefix(line, "rmgr: Heap ") && strings.Contains(line, "desc: DELETE "):
			deletes[uint32(tx)]++
		case strings.HasPrefix(line, "rmgr: Database ") && strings.Contains(line, "desc: DROP "):
			dropDBTx = append(dropDBTx, uint32(tx))
		}
	}
	for _, e := range doc.Events {
		lsn, err := wal.ParseLSN(e.LSN)
		if err != nil {
			t.Fatal(err)
		}
		line, ok := entries[lsn]
		if !ok {
			t.Errorf("%s: pg_waldump has no record at %s", e.Kind, e.LSN)
			continue
		}
		m := waldumpTxRE.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, fmt.Sprintf("tx: %10d,", e.Xid)) && !strings.Contains(line, fmt.Sprintf("tx: %d,", e.Xid)) {
			t.Errorf("%s at %s: pg_waldump says %q, want the COMMIT of %d", e.Kind, e.LSN, line, e.Xid)
			continue
		}
		if got := e.Time.UTC().Format("2006-01-02 15:04:05.000000"); got != m[1] {
			t.Errorf("%s: commit time %s, pg_waldump %s", e.Kind, got, m[1])
		}
		switch e.Kind {
		case "drop_database":
			if len(dropDBTx) != 1 || dropDBTx[0] != e.Xid {
				t.Errorf("pg_waldump's DROP DATABASE records are in transactions %v, pgb says %d", dropDBTx, e.Xid)
			}
		case "rows":
			// The DELETE ran in a subtransaction, the first (xid+1): its heap
			// DELETE records carry its xid.
			if n := deletes[e.Xid] + deletes[e.Xid+1]; n != int(e.Deleted) {
				t.Errorf("pg_waldump counts %d heap DELETEs in the transaction, pgb %d", n, e.Deleted)
			}
		}
	}
}

var (
	blkref0RE   = regexp.MustCompile(`blkref #0: rel (\d+/\d+/\d+) `)
	createRE    = regexp.MustCompile(`desc: CREATE base/(\d+)/(\d+)(_fsm|_vm|_init)?$`)
	dropDirRE   = regexp.MustCompile(`desc: DROP dir \d+/(\d+)`)
	heapOpRE    = regexp.MustCompile(`^rmgr: Heap .*desc: (DELETE|UPDATE|HOT_UPDATE)(\+INIT)? `)
	waldumpLine = regexp.MustCompile(`lsn: ([0-9A-F]+/[0-9A-F]+),`)
)

// crossCheckChangesWithPgWaldump decodes every record of the segments with
// wal.DecodeChange and checks the row changes, created files and dropped
// databases against pg_waldump's lines for the same records.
func crossCheckChangesWithPgWaldump(t *testing.T, dir string, names []string, dump string) {
	t.Helper()
	want := map[wal.LSN]string{}
	for _, line := range strings.Split(dump, "\n") {
		m := waldumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lsn, err := wal.ParseLSN(m[1])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case heapOpRE.MatchString(line):
			kind := wal.RowUpdate
			if heapOpRE.FindStringSubmatch(line)[1] == "DELETE" {
				kind = wal.RowDelete
			}
			if b := blkref0RE.FindStringSubmatch(line); b != nil {
				want[lsn] = fmt.Sprint(kind, " ", b[1])
			}
		case strings.HasPrefix(line, "rmgr: Storage ") && createRE.MatchString(line):
			c := createRE.FindStringSubmatch(line)
			fork := map[string]int{"": 0, "_fsm": 1, "_vm": 2, "_init": 3}[c[3]]
			want[lsn] = fmt.Sprintf("%v 1663/%s/%s fork %d", wal.FileCreate, c[1], c[2], fork)
		case strings.HasPrefix(line, "rmgr: Database ") && dropDirRE.MatchString(line):
			want[lsn] = fmt.Sprintf("%v %s", wal.DatabaseDrop, dropDirRE.FindStringSubmatch(line)[1])
		}
	}
	f, err := wal.Parse(names[0])
	if err != nil {
		t.Fatal(err)
	}
	const segSize = 16 << 20
	rd, recs := readWALReaderKeeping(t, dir, names, segSize, wal.LSN(f.SegmentNumber(segSize)*segSize))
	counts := map[wal.ChangeKind]int{}
	for _, r := range recs {
		c, err := wal.DecodeChange(&r, rd.PostgreSQLMajor())
		if err != nil {
			t.Fatalf("%s: %v", r.LSN, err)
		}
		got := ""
		switch c.Kind {
		case wal.RowDelete, wal.RowUpdate:
			got = fmt.Sprint(c.Kind, " ", c.Rel)
		case wal.FileCreate:
			got = fmt.Sprint(c.Kind, " ", c.Rel, " fork ", c.Fork)
		case wal.DatabaseDrop:
			got = fmt.Sprint(c.Kind, " ", c.Database)
		}
		counts[c.Kind]++
		if got != want[r.LSN] {
			t.Errorf("%s: decoded %q, pg_waldump says %q", r.LSN, got, want[r.LSN])
		}
	}
	if counts[wal.RowDelete] < 1500 || counts[wal.RowUpdate] == 0 || counts[wal.FileCreate] == 0 || counts[wal.DatabaseDrop] != 1 {
		t.Errorf("the workload should hold deletes, updates, file creations and one database drop: %v", counts)
	}
}

// readWALReaderKeeping reads every record of the segments, keeping block
// references and main data (copied: the reader reuses its buffers).
func readWALReaderKeeping(t *testing.T, dir string, names []string, segSize uint64, start wal.LSN) (*wal.Reader, []wal.Record) {
	t.Helper()
	var rs []io.Reader
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, bytes.NewReader(b))
	}
	rd, err := wal.NewReader(io.MultiReader(rs...), segSize, start)
	if err != nil {
		t.Fatal(err)
	}
	var recs []wal.Record
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, wal.ErrEndOfWAL) {
			return rd, recs
		}
		if err != nil {
			t.Fatalf("after %d records: %v", len(recs), err)
		}
		r.MainData, r.Blocks = bytes.Clone(r.MainData), slices.Clone(r.Blocks)
		recs = append(recs, r)
	}
}

// statusReaches runs pgb status with the target of a restore command pgb
// events printed (--target-lsn L --target-exclusive --target-timeline N): it
// must exit 0, the target reachable.
func statusReaches(t *testing.T, repo, restoreCmd string) {
	t.Helper()
	f := strings.Fields(restoreCmd)
	args := []string{"status", "--repo", repo}
	for i, a := range f {
		switch a {
		case "--target-lsn", "--target-timeline":
			if i+1 < len(f) {
				args = append(args, "--"+strings.TrimPrefix(a, "--target-"), f[i+1])
			}
		case "--target-exclusive":
			args = append(args, "--exclusive")
		}
	}
	if len(args) != 8 {
		t.Fatalf("restore command %q: want --target-lsn, --target-exclusive and --target-timeline", restoreCmd)
	}
	out := mustPGB(t, "", nil, args...)
	t.Logf("pgb %s:\n%s", strings.Join(args, " "), out)
}
