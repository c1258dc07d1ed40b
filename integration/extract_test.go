package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// eventsWriter keeps inserting rows into events on a connection of its own, one
// every 20 ms (pacing, not synchronisation), and counts the commits it saw.
type eventsWriter struct {
	committed atomic.Int64
	stop      chan struct{}
	done      sync.WaitGroup
	err       error
}

func startEventsWriter(t *testing.T, c *pgtest.Cluster) *eventsWriter {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	w := &eventsWriter{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		defer conn.Close(context.Background())
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Exec(context.Background(), "INSERT INTO events (pad) VALUES ('tick')"); err != nil {
				w.err = err
				return
			}
			w.committed.Add(1)
		}
	}()
	t.Cleanup(w.halt)
	return w
}

// halt stops the writer and waits for it; idempotent.
func (w *eventsWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.done.Wait()
}

// waitMore waits until the writer committed n more rows than it had.
func (w *eventsWriter) waitMore(t *testing.T, n int64) {
	t.Helper()
	want := w.committed.Load() + n
	pgtest.WaitUntil(t, "rows written to events", time.Minute, func() (bool, string) {
		got := w.committed.Load()
		return got >= want || w.err != nil, fmt.Sprintf("%d of %d", got, want)
	})
	if w.err != nil {
		t.Fatalf("the events writer failed: %v", w.err)
	}
}

const ordersSum = `SELECT count(*) || ':' || coalesce(md5(string_agg(o::text, ',' ORDER BY id)), '') FROM %s o`

// A user dropped the orders table while the application kept writing to events.
// pgb events finds the DROP; pgb extract --before-event XID --into the live cluster
// brings orders back with exactly the rows committed before the DROP, its index and
// sequence, while every row written to events since stays.
func TestExtractTheDroppedTableBackIntoTheLiveClusterWhileAnotherTableKeepsWriting(t *testing.T) {
	pgtest.Require(t)
	repo := newRepo(t)
	c := archivingCluster(t, repo)
	c.Exec(t, "CREATE TABLE events (id bigserial PRIMARY KEY, pad text)")
	mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
	w := startEventsWriter(t, c)

	// orders is created after the first backup (a target before it is one), and filled
	// before and after the second.
	c.Exec(t, "CREATE TABLE customers (id int PRIMARY KEY); INSERT INTO customers SELECT generate_series(0, 16)")
	createXid := inTransaction(t, c, "CREATE TABLE orders (id serial PRIMARY KEY, customer int NOT NULL REFERENCES customers, amount numeric(10,2), note text)",
		"CREATE INDEX orders_customer_idx ON orders (customer)", "CREATE ROLE clerk", "GRANT SELECT ON orders TO clerk")
	for i := 0; i < 5; i++ {
		if i == 2 {
			// pgb events names the tables the newest backup before the event knew.
			mustPGB(t, "", c.Env(), "backup-push", "--repo", repo, "--fast")
		}
		c.Exec(t, fmt.Sprintf("INSERT INTO orders (customer, amount, note) SELECT g %% 17, g * 1.5, 'batch %d, it''s \"quoted\"' FROM generate_series(1, 40) g", i))
		w.waitMore(t, 3)
	}
	c.Exec(t, "DELETE FROM orders WHERE id % 10 = 3") // not every id: the checksum sees which rows
	// A name that needs quoting everywhere: a dot, a quote, a space, capitals, unicode.
	c.Exec(t, `CREATE SCHEMA "Sales.EU"; CREATE TABLE "Sales.EU"."Or""ders ü" (id serial PRIMARY KEY, v text);
		CREATE INDEX "idx Ü" ON "Sales.EU"."Or""ders ü" (v); INSERT INTO "Sales.EU"."Or""ders ü" (v) SELECT 'v' || g FROM generate_series(1, 7) g`)
	before := c.QueryString(t, fmt.Sprintf(ordersSum, "orders"))
	dropXid := inTransaction(t, c, "DROP TABLE orders")
	c.Exec(t, "DROP ROLE clerk") // it owned nothing but the grant
	w.waitMore(t, 20)
	c.WaitArchived(t, c.SwitchWAL(t), time.Minute)

	var doc eventsDoc
	out := mustPGB(t, "", nil, "events", "--repo", repo, "--json", "--table", "public.orders")
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil || len(doc.Events) != 1 || doc.Events[0].Kind != "drop" {
		t.Fatalf("pgb events --table public.orders: %v\n%s", err, out)
	}
	if doc.Events[0].Xid != dropXid {
		t.Fatalf("pgb events says xid %d, the DROP was %d", doc.Events[0].Xid, dropXid)
	}
	xid := strconv.FormatUint(uint64(doc.Events[0].Xid), 10)
	scratch := filepath.Join(pgtest.TempDir(t), "scratch")
	extract := func(args ...string) result {
		return pgb(t, "", nil, append([]string{"extract", "--repo", repo, "--scratch", scratch}, args...)...)
	}

	// The grant names a role the live cluster no longer has: refused before loading.
	r := extract("--table", "public.orders", "--before-event", xid, "--into", c.DSN())
	if r.code != 1 || !strings.Contains(r.stderr, `"clerk"`) || c.QueryInt(t, "SELECT count(*) FROM pg_class WHERE relname = 'orders'") != 0 {
		t.Fatalf("extract with a role missing: %s", r)
	}
	t.Logf("as it should: %s", r.stderr)
	assertNoDrillLeft(t, scratch)
	c.Exec(t, "CREATE ROLE clerk")

	eventsBefore := c.QueryInt(t, "SELECT count(*) FROM events")
	r = extract("--table", "public.orders", "--before-event", xid, "--into", c.DSN())
	if r.code != 0 {
		t.Fatalf("pgb extract: %s", r)
	}
	t.Logf("pgb extract:\n%s", r)
	assertNoDrillLeft(t, scratch)
	if got := c.QueryString(t, fmt.Sprintf(ordersSum, "orders")); got != before {
		t.Fatalf("orders back with %s, before the DROP it was %s", got, before)
	}
	rows := strings.SplitN(before, ":", 2)[0]
	if !strings.Contains(r.stdout, `"public"."orders": `+rows+" rows loaded into the live database") {
		t.Errorf("summary does not say %s rows went into the live database:\n%s", rows, r.stdout)
	}
	if n := c.QueryInt(t, "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders' AND indexname IN ('orders_pkey', 'orders_customer_idx')"); n != 2 {
		t.Errorf("orders came back with %d of its 2 indexes", n)
	}
	if c.QueryString(t, "SELECT (SELECT nextval('orders_id_seq') > (SELECT max(id) FROM orders))::text") != "true" ||
		c.QueryString(t, "SELECT has_table_privilege('clerk', 'orders', 'SELECT')::text") != "true" {
		t.Errorf("the sequence or the grant did not come back")
	}
	w.waitMore(t, 5)
	w.halt()
	if got := c.QueryInt(t, "SELECT count(*) FROM events"); got < eventsBefore || got != w.committed.Load() {
		t.Fatalf("events has %d rows, %d before the extract, %d committed by the writer: rows lost", got, eventsBefore, w.committed.Load())
	}

	t.Run("a second extract into the live cluster refuses to overwrite the table", func(t *testing.T) {
		c.Exec(t, "INSERT INTO orders (customer, note) VALUES (16, 'added live')")
		now := c.QueryString(t, fmt.Sprintf(ordersSum, "orders"))
		r := extract("--table", "orders", "--before-event", xid, "--into", c.DSN())
		if r.code != 1 || !strings.Contains(r.stderr, "--rename-to") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("extract over an existing table: %s", r)
		}
		t.Logf("as it should: %s", r.stderr)
		if got := c.QueryString(t, fmt.Sprintf(ordersSum, "orders")); got != now {
			t.Fatalf("the live table changed: %s, was %s", got, now)
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("rows loaded with --data-only into a table holding them are all already there", func(t *testing.T) {
		now := c.QueryString(t, fmt.Sprintf(ordersSum, "orders"))
		r := extract("--table", "orders", "--before-event", xid, "--into", c.DSN(), "--data-only")
		if r.code != 0 || !strings.Contains(r.stdout, ": 0 inserted into the live table, "+rows+" already there") {
			t.Fatalf("--data-only with the rows there: %s", r)
		}
		if got := c.QueryString(t, fmt.Sprintf(ordersSum, "orders")); got != now {
			t.Fatalf("the live table changed: %s, was %s", got, now)
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("--rename-to loads the copy beside the table that exists", func(t *testing.T) {
		r := extract("--table", "public.orders", "--before-event", xid, "--into", c.DSN(), "--rename-to", "orders_back")
		if r.code != 0 {
			t.Fatalf("extract --rename-to: %s", r)
		}
		if got := c.QueryString(t, fmt.Sprintf(ordersSum, "orders_back")); got != before {
			t.Fatalf("orders_back has %s, want %s", got, before)
		}
		got := c.QueryString(t, `SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_class WHERE relname LIKE 'orders_back%'`)
		if got != "orders_back orders_back_customer_idx orders_back_id_seq orders_back_pkey" {
			t.Fatalf("relations of the renamed copy: %s", got)
		}
		if c.QueryString(t, "SELECT (SELECT pg_get_serial_sequence('orders_back', 'id') = 'public.orders_back_id_seq')::text") != "true" {
			t.Fatal("orders_back.id does not draw from orders_back_id_seq")
		}
		if c.QueryInt(t, "SELECT count(*) FROM orders WHERE note = 'added live'") != 1 {
			t.Fatal("the live orders table changed")
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("--rename-to of a table whose names need quoting", func(t *testing.T) {
		r := extract("--table", `"Sales.EU"."Or""ders ü"`, "--before-event", xid, "--into", c.DSN(), "--rename-to", `Bäck "up"`)
		if r.code != 0 {
			t.Fatalf("extract: %s", r)
		}
		got := c.QueryString(t, `SELECT string_agg(relname, '|' ORDER BY relname) FROM pg_class WHERE relnamespace = '"Sales.EU"'::regnamespace`)
		want := `Bäck "up"|Bäck "up"_id_seq|Bäck "up"_idx Ü|Bäck "up"_pkey|Or"ders ü|Or"ders ü_id_seq|Or"ders ü_pkey|idx Ü`
		if got != want {
			t.Fatalf("relations in \"Sales.EU\":\n%s\nwant\n%s", got, want)
		}
		if n := c.QueryInt(t, `SELECT count(*) FROM "Sales.EU"."Bäck ""up"""`); n != 7 {
			t.Fatalf("the renamed copy has %d rows, want 7", n)
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("a foreign key to a row deleted since fails the load as one transaction", func(t *testing.T) {
		c.Exec(t, "DROP TABLE orders, orders_back; DELETE FROM customers WHERE id = 5")
		r := extract("--table", "public.orders", "--before-event", xid, "--into", c.DSN())
		if r.code != 3 || !strings.Contains(r.stderr, "foreign key") || !strings.Contains(r.stderr, "nothing was loaded") {
			t.Fatalf("extract with a dangling foreign key: %s", r)
		}
		t.Logf("as it should: %s", r.stderr)
		if n := c.QueryInt(t, "SELECT count(*) FROM pg_class WHERE relname LIKE 'orders%'"); n != 0 {
			t.Fatalf("%d relations named orders… were left in the live database", n)
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("--dump writes a SQL file that psql loads, and never overwrites one", func(t *testing.T) {
		dump := filepath.Join(pgtest.TempDir(t), "orders.sql")
		r := extract("--table", "public.orders", "--before-event", xid, "--dump", dump)
		if r.code != 0 {
			t.Fatalf("extract --dump: %s", r)
		}
		c.Exec(t, "CREATE DATABASE restored")
		restored := strings.Replace(c.DSN(), "dbname=postgres", "dbname=restored", 1)
		conn, err := pgx.Connect(context.Background(), restored)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		// orders' foreign key needs its customers, as the dump's header says.
		if _, err := conn.Exec(context.Background(), "CREATE TABLE customers (id int PRIMARY KEY); INSERT INTO customers SELECT generate_series(0, 16)"); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(c.Bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", restored, "-f", dump) // as pgb's user: the dump is mode 0600
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql -f %s: %v\n%s", dump, err, out)
		}
		var got string
		err = conn.QueryRow(context.Background(), fmt.Sprintf(ordersSum, "orders")).Scan(&got)
		if err != nil || got != before {
			t.Fatalf("the dump loaded %s (%v), want %s", got, err, before)
		}
		r = extract("--table", "public.orders", "--before-event", xid, "--dump", dump)
		if r.code != 1 || !strings.Contains(r.stderr, "exists") {
			t.Fatalf("extract --dump over an existing file: %s", r)
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("an extract stopped by SIGTERM leaves no copy and no scratch dir", func(t *testing.T) {
		dump := filepath.Join(pgtest.TempDir(t), "never.sql")
		// The test hook holds the extract once its copy has started: SIGTERM comes mid-way.
		b := startPGBReading(t, []string{"PGB_TEST_DRILL_HANG_AFTER_START=1"}, "extract", "--repo", repo, "--scratch", scratch,
			"--table", "orders", "--before-event", xid, "--dump", dump)
		b.until(t, "extract: server started, pid", "its server started")
		if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		_, err := b.wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Fatalf("pgb extract after SIGTERM: %v, want exit 143", err)
		}
		if _, err := os.Stat(dump); !os.IsNotExist(err) {
			t.Fatalf("a dump was written: %v", err)
		}
		assertNoDrillLeft(t, scratch)
	})

	t.Run("a target before the table existed is refused naming the target", func(t *testing.T) {
		dump := filepath.Join(pgtest.TempDir(t), "early.sql")
		r := extract("--table", "public.orders", "--before-event", strconv.FormatUint(uint64(createXid), 10), "--dump", dump)
		if r.code != 1 || !strings.Contains(r.stderr, `"public"."orders" does not exist`) || !strings.Contains(r.stderr, "at the target (just before transaction "+strconv.FormatUint(uint64(createXid), 10)+")") {
			t.Fatalf("extract before the table existed: %s", r)
		}
		t.Logf("as it should: %s", r.stderr)
		if _, err := os.Stat(dump); !os.IsNotExist(err) {
			t.Fatalf("a dump was written: %v", err)
		}
		assertNoDrillLeft(t, scratch)
	})
}
