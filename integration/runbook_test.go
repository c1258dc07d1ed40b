package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/testenv"
)

// runbookPath is the disaster runbook whose marked blocks the test runs.
const runbookPath = "../docs/runbook.md"

// runbookFence opens a block of docs/runbook.md that the test runs.
const runbookFence = "```bash runbook"

// runbookBlock is one ```bash runbook block: its first line's number in the file and
// its text.
type runbookBlock struct {
	line int
	text string
}

// A DBA follows docs/runbook.md at 3 a.m. after a DROP TABLE on a primary that keeps
// running: pgb status, a first restore to the time they were told (which turns out to
// be after the DROP: the copy comes back without the table), back to just before the
// DROP's transaction found with pgb events, promote the copy, copy the table back into
// the live database with pg_dump | psql, and the same with pgb extract --dump. Every
// marked block runs, in order, in one bash process as the postgres OS user; afterwards
// the copy holds exactly the rows committed before the DROP and nothing committed after
// it, and the live database has the table back with those rows and keeps every later
// transaction.
func TestTheRunbookRecoversADroppedTable(t *testing.T) {
	pgBin := pgtest.RequireParallel(t)
	if _, err := exec.LookPath("jq"); err != nil {
		testenv.SkipOrFail(t, "jq is not installed: docs/runbook.md uses it (scripts/ensure-test-tools installs it)")
	}
	blocks := readRunbookBlocks(t, runbookPath)
	repo := newRepo(t)
	src := archivingCluster(t, repo)

	src.Exec(t, `CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL,
		amount numeric(10,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp())`)
	src.Exec(t, "CREATE TABLE payments (id bigserial PRIMARY KEY, note text NOT NULL)")
	src.Exec(t, "INSERT INTO orders (customer, amount) SELECT 'customer ' || g, g * 1.25 FROM generate_series(1, 100) g")
	src.Exec(t, "INSERT INTO payments (note) VALUES ('before the backup')")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")

	// After the backup: rows, updates and deletes only the archived WAL holds.
	for i := range 30 {
		src.Exec(t, "INSERT INTO orders (customer, amount) VALUES ($1, $2)", fmt.Sprintf("late customer %d", i), i)
	}
	src.Exec(t, "UPDATE orders SET amount = amount + 1000 WHERE id % 7 = 0")
	src.Exec(t, "DELETE FROM orders WHERE id IN (3, 5)")
	src.Exec(t, "INSERT INTO payments (note) VALUES ('before the drop')")
	wantRows, wantPrint := ordersFingerprint(t, src.QueryRows(t, ordersFingerprintSQL))
	paymentsAtDrop := src.QueryInt(t, "SELECT count(*) FROM payments")

	dropXid := inTransaction(t, src, "DROP TABLE orders")

	// The time the DBA is told is a little late: after the DROP, with commits on both
	// sides of it, so that the first try overshoots and pgb status --at reaches it.
	src.Exec(t, "INSERT INTO payments (note) VALUES ('after the drop')")
	src.Exec(t, "INSERT INTO payments (note) VALUES ('after the drop')")
	targetTime := src.QueryString(t, "SELECT clock_timestamp()::text")
	src.WaitFor(t, "the server clock to pass "+targetTime, 10*time.Second, func() (bool, string, error) {
		later, err := src.TryQueryString("SELECT clock_timestamp() > $1::timestamptz", targetTime)
		return later == "t", "clock_timestamp() > " + targetTime + " is " + later, err
	})
	src.Exec(t, "INSERT INTO payments (note) VALUES ('after the reported time')")
	src.Exec(t, "INSERT INTO payments (note) VALUES ('after the reported time')")
	paymentsEnd := src.QueryInt(t, "SELECT count(*) FROM payments")
	src.WaitArchived(t, src.SwitchWAL(t), 60*time.Second)
	t.Logf("scenario: %d orders rows before the DROP (xid %d); told time %s", wantRows, dropXid, targetTime)

	// The copy: a new directory, its own socket directory and port (the source keeps
	// running on its own).
	work := pgtest.TempDir(t)
	newData := filepath.Join(work, "recovered")
	sock := pgtest.TempDir(t)
	port := freeTCPPort(t)
	t.Cleanup(func() { stopRestoredServer(t, pgBin, newData, sock) })

	out := runRunbook(t, blocks, work, []string{
		"PATH=" + filepath.Dir(pgtest.BuildPGB(t)) + ":" + pgBin + ":/usr/bin:/bin",
		"PGB_REPO=" + repo,
		"NEWDATA=" + newData,
		"PGHOST=" + sock,
		"PGPORT=" + strconv.Itoa(port),
		"LIVE_DSN=" + src.DSN(),
		"TARGET_TIME=" + targetTime,
	})

	// The first try came back without the table, the second with it: two restores.
	checks := outputsOf(blocks, out, "to_regclass('public.orders')")
	if len(checks) != 2 {
		t.Fatalf("want two checks of public.orders in the runbook's output (first try, second try), found %d:\n%s", len(checks), out)
	}
	if !strings.Contains(checks[0], "MISSING") {
		t.Errorf("the first try (to the told time %s, after the DROP) should have come back without the table:\n%s", targetTime, checks[0])
	}
	if strings.Contains(checks[1], "MISSING") || !strings.Contains(checks[1], "orders") {
		t.Errorf("the second try (just before the DROP's transaction) should have the table:\n%s", checks[1])
	}
	if want := fmt.Sprintf("public.orders was dropped by transaction %d,", dropXid); !strings.Contains(out, want) {
		t.Errorf("the runbook's DROP_XID is not the transaction that dropped the table (%d):\n%s", dropXid, out)
	}
	if n := countLinesWithPrefix(out, "restored backup "); n != 2 {
		t.Errorf("pgb restore ran %d times, want 2 (the first try and the way back):\n%s", n, out)
	}
	// The way back stops just before the DROP's commit: pgb restore says that its lock
	// is still held while paused (once: the first try was not exclusive), and that the
	// copy needs its own port.
	if n := strings.Count(out, "recovery still holds that transaction's locks"); n != 1 {
		t.Errorf("pgb restore warned %d times of the locks held at an exclusive target, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "it has the source's port and socket"); n != 2 {
		t.Errorf("pgb restore said %d times that the copy has the source's port, want twice:\n%s", n, out)
	}

	// The copy: promoted, exactly the rows committed before the DROP, and no
	// transaction committed after it.
	copyDSN := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=10", sock, port)
	if got := queryRows(t, copyDSN, "SELECT pg_is_in_recovery()")[0][0]; got != "f" {
		t.Errorf("the copy is still in recovery after the runbook promoted it: pg_is_in_recovery() = %s", got)
	}
	rows, fp := ordersFingerprint(t, queryRows(t, copyDSN, ordersFingerprintSQL))
	if rows != wantRows || fp != wantPrint {
		t.Errorf("the copy's orders: %d rows (fingerprint %s), want the %d rows committed before the DROP (%s)", rows, fp, wantRows, wantPrint)
	}
	if got := queryRows(t, copyDSN, "SELECT count(*) FROM payments")[0][0]; got != strconv.FormatInt(paymentsAtDrop, 10) {
		t.Errorf("the copy's payments: %s rows, want the %d committed before the DROP: it did not stop just before it", got, paymentsAtDrop)
	}

	// The live database: the table is back with the same rows, and nothing committed
	// after the DROP was lost.
	rows, fp = ordersFingerprint(t, src.QueryRows(t, ordersFingerprintSQL))
	if rows != wantRows || fp != wantPrint {
		t.Errorf("the live database's orders after pg_dump | psql: %d rows (fingerprint %s), want %d (%s)", rows, fp, wantRows, wantPrint)
	}
	if got := src.QueryInt(t, "SELECT count(*) FROM payments"); got != paymentsEnd {
		t.Errorf("the live database's payments: %d rows, want all %d: copying the table back must not roll anything back", got, paymentsEnd)
	}
	if got := src.QueryInt(t, "SELECT nextval('orders_id_seq')"); got <= 130 {
		t.Errorf("the live orders_id_seq came back at %d, behind the table's ids (up to 130)", got)
	}

	// pgb extract --dump wrote the same rows.
	dump, err := os.ReadFile(newData + ".orders.sql")
	if err != nil {
		t.Fatalf("pgb extract --dump: %v\n%s", err, out)
	}
	if n := copyDataLines(string(dump), "COPY public.orders "); n != wantRows {
		t.Errorf("pgb extract --dump holds %d rows of public.orders, want %d", n, wantRows)
	}
}

// ordersFingerprintSQL counts the orders and sums up every row's values in order.
const ordersFingerprintSQL = `SELECT count(*), coalesce(md5(string_agg(id || '|' || customer || '|' || amount || '|' || created_at, ',' ORDER BY id)), '')
	FROM orders`

func ordersFingerprint(t *testing.T, rows [][]string) (int64, string) {
	t.Helper()
	if len(rows) != 1 || len(rows[0]) != 2 {
		t.Fatalf("fingerprint of orders: %q", rows)
	}
	n, err := strconv.ParseInt(rows[0][0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n, rows[0][1]
}

// readRunbookBlocks returns the ```bash runbook blocks of the file, in order.
func readRunbookBlocks(t *testing.T, path string) []runbookBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []runbookBlock
	var cur *runbookBlock
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimRight(line, " ") == runbookFence:
			cur = &runbookBlock{line: n + 1}
		case cur == nil && strings.HasPrefix(strings.TrimSpace(line), runbookFence):
			t.Fatalf("%s:%d: a runbook block must start at the beginning of the line: %q", path, n, line)
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: a runbook block is not closed", path, cur.line-1)
	}
	if len(blocks) == 0 {
		t.Fatalf("%s holds no %s block", path, runbookFence)
	}
	return blocks
}

// blockMarker is the line the script prints before each block's output.
func blockMarker(b runbookBlock) string {
	return fmt.Sprintf("+++ docs/runbook.md:%d", b.line)
}

// runRunbook runs every block in one `bash -euo pipefail` as the postgres OS user, in
// dir, with a clean environment plus env, and returns its output (stdout and stderr
// together). A failing command fails the test with the output up to it.
func runRunbook(t *testing.T, blocks []runbookBlock, dir string, env []string) string {
	t.Helper()
	var script strings.Builder
	for _, b := range blocks {
		fmt.Fprintf(&script, "echo '%s'\n%s", blockMarker(b), b.text)
	}
	path := filepath.Join(dir, "runbook.sh")
	if err := os.WriteFile(path, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := pgtest.RunAsPG(t, "/bin/bash", "-euo", "pipefail", path)
	cmd.Dir = dir
	cmd.Env = runbookEnv(cmd.Env, env)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // the safety net below stops bash and what it started
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Minute): // a hang, not a measurement
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // bash and everything it started
		t.Fatalf("the runbook did not finish in 15 minutes (%v):\n%s", <-done, out.String())
	}
	t.Logf("the runbook's %d blocks ran in %s:\n%s", len(blocks), time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("the runbook failed (%v) in the block after the last +++ line above:\n%s", err, out.String())
	}
	return out.String()
}

// runbookEnv is base (the postgres user's HOME, USER, LOGNAME kept) without PATH, TMPDIR,
// PG* and PGB_* variables, plus cleanEnv's safety settings and env.
func runbookEnv(base, env []string) []string {
	var out []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "TMPDIR" || strings.HasPrefix(k, "PG") {
			continue
		}
		out = append(out, kv)
	}
	for _, kv := range cleanEnv() {
		if strings.HasPrefix(kv, "PGB_") || strings.HasPrefix(kv, "AWS_EC2_") || strings.HasPrefix(kv, "GCE_") {
			out = append(out, kv)
		}
	}
	return append(append(out, "LC_ALL=C"), env...)
}

// outputsOf returns the output of each block whose text contains s, in order.
func outputsOf(blocks []runbookBlock, out, s string) []string {
	var res []string
	for i, b := range blocks {
		if !strings.Contains(b.text, s) {
			continue
		}
		_, after, ok := strings.Cut(out, blockMarker(b)+"\n")
		if !ok {
			continue
		}
		if i+1 < len(blocks) {
			after, _, _ = strings.Cut(after, blockMarker(blocks[i+1])+"\n")
		}
		res = append(res, after)
	}
	return res
}

func countLinesWithPrefix(s, prefix string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// copyDataLines counts the data lines of the COPY statement starting with prefix in a
// plain pg_dump.
func copyDataLines(dump, prefix string) int64 {
	_, rest, ok := strings.Cut(dump, "\n"+prefix)
	if !ok {
		return -1
	}
	_, rest, _ = strings.Cut(rest, "\n")
	data, _, _ := strings.Cut(rest, "\n\\.\n")
	if data == "" {
		return 0
	}
	return int64(strings.Count(data, "\n") + 1)
}

// queryRows runs one query on dsn and returns its rows as text.
func queryRows(t *testing.T, dsn, sql string) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pgtest.QueryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	defer func() { _ = conn.Close(context.Background()) }() // read-only
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var res [][]string
	for rows.Next() {
		var row []string
		for _, v := range rows.RawValues() {
			row = append(row, string(v))
		}
		res = append(res, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res) == 0 {
		t.Fatalf("%s: no row", sql)
	}
	return res
}

// freeTCPPort returns a port nothing listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }() // only its number was wanted
	return l.Addr().(*net.TCPAddr).Port
}

// stopRestoredServer stops a server the runbook left running on dataDir, and pgb's
// workers for it.
func stopRestoredServer(t *testing.T, pgBin, dataDir, dir string) {
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err == nil {
		stop := pgtest.RunAsPG(t, filepath.Join(pgBin, "pg_ctl"), "-D", dataDir, "-m", "immediate", "-w", "stop")
		stop.Dir = dir
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("stopping the restored server: %v\n%s", err, out)
		}
	}
	pgtest.StopPGBWorkers(dataDir)
}
