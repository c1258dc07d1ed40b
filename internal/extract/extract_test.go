package extract

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/restore"
)

func TestParseTableTakesSQLNamesHostileOnesToo(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Table
		err  string
	}{
		{in: "public.orders", want: Table{"public", "orders"}},
		{in: "orders", want: Table{"public", "orders"}},
		{in: "Sales.Orders", want: Table{"sales", "orders"}},
		{in: `"Sales"."Orders"`, want: Table{"Sales", "Orders"}},
		{in: `public."a.b"`, want: Table{"public", "a.b"}},
		{in: `"we""ird".x`, want: Table{`we"ird`, "x"}},
		{in: `"".x`, err: "empty name"},
		{in: `public."naïve Ünïcode"`, want: Table{"public", "naïve Ünïcode"}},
		{in: `ÜNICODE.t`, want: Table{"Ünicode", "t"}}, // only ASCII letters fold, as in PostgreSQL
		{in: `public."a,b"`, want: Table{"public", "a,b"}},
		{in: "a.b.c", err: "want SCHEMA.NAME"},
		{in: "public.", err: "empty name"},
		{in: ".x", err: "empty name"},
		{in: `public."open`, err: "unterminated"},
		{in: `pub"lic.x`, err: "middle of an unquoted name"},
		{in: `"a"b.x`, err: "after a closing double quote"},
		{in: "public." + strings.Repeat("x", 64), err: "64 bytes long"},
		{in: "public.\"a\x00b\"", err: "NUL"},
	} {
		got, err := ParseTable(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseTable(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseTable(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestTableQuotingRoundTripsThroughParseTable(t *testing.T) {
	for _, tb := range []Table{{"public", "orders"}, {"Sales", "Orders"}, {`we"ird`, "a.b"}, {"public", "naïve Ünïcode"}, {"s", `"`}} {
		got, err := ParseTable(tb.String())
		if err != nil || got != tb {
			t.Errorf("ParseTable(%s) = %+v, %v; want %+v", tb, got, err, tb)
		}
	}
	if got := (Table{`we"ird`, "a.b"}).Pattern(); got != `"we""ird"."a.b"` {
		t.Errorf("pattern %s", got)
	}
}

func TestRenamePlanRenamesIndexesSequencesAndStatistics(t *testing.T) {
	objs := []Object{
		{"index", "public", "orders_pkey"},
		{"index", "public", "idx_customer"},
		{"sequence", "public", "orders_id_seq"},
		{"sequence", "other", "order_numbers"},
		{"statistics", "public", "orders_stats"},
	}
	plan, err := PlanRename(Table{"public", "orders"}, "orders_back", objs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range plan {
		got = append(got, r.SQL())
	}
	want := []string{
		`ALTER TABLE "public"."orders" RENAME TO "orders_back"`,
		`ALTER INDEX "public"."orders_pkey" RENAME TO "orders_back_pkey"`,
		`ALTER INDEX "public"."idx_customer" RENAME TO "orders_back_idx_customer"`,
		`ALTER SEQUENCE "public"."orders_id_seq" RENAME TO "orders_back_id_seq"`,
		`ALTER SEQUENCE "other"."order_numbers" RENAME TO "orders_back_order_numbers"`,
		`ALTER STATISTICS "public"."orders_stats" RENAME TO "orders_back_stats"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRenamePlanRefusesTruncatedAndCollidingNames(t *testing.T) {
	long := strings.Repeat("n", 60)
	if _, err := PlanRename(Table{"public", "orders"}, long, []Object{{"index", "public", "orders_pkey"}}); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("a 65-byte index name: %v", err)
	}
	// "x" prefixed to "orders_x_pkey"'s sibling: orders_pkey -> x_pkey, and x_pkey -> x_x_pkey; but
	// an index named "pkey" gets "x_pkey" too.
	if _, err := PlanRename(Table{"public", "orders"}, "x", []Object{{"index", "public", "orders_pkey"}, {"index", "public", "pkey"}}); err == nil || !strings.Contains(err.Error(), "choose another name") {
		t.Errorf("two indexes named x_pkey: %v", err)
	}
	if _, err := PlanRename(Table{"public", "orders"}, "orders", nil); err == nil {
		t.Error("renaming to its own name")
	}
	// Unicode and quotes survive: the names are quoted, never truncated mid-rune.
	plan, err := PlanRename(Table{"public", `Or"ders`}, "Bäck", []Object{{"index", "public", `Or"ders_pkey`}})
	if err != nil || plan[1].SQL() != `ALTER INDEX "public"."Or""ders_pkey" RENAME TO "Bäck_pkey"` {
		t.Fatalf("%v %v", plan, err)
	}
}

func TestDataOnlyDumpLeavesTheLiveSequencesAlone(t *testing.T) {
	toc := ";\n; Archive created at 2026-12-02 07:00:00 UTC\n;\n" +
		"3345; 0 16390 TABLE DATA public SEQUENCE SET postgres\n" +
		"3346; 0 16391 TABLE DATA public t postgres\n" +
		"3352; 0 0 SEQUENCE SET public t_id_seq postgres\n"
	want := strings.Replace(toc, "3352; 0 0 SEQUENCE SET public t_id_seq postgres\n", "", 1)
	if got := string(withoutSequenceSet([]byte(toc))); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestOptionsNeedATargetAndOneDestination(t *testing.T) {
	xid := &restore.Target{Kind: restore.ToXID, XID: 751, Exclusive: true}
	end := &restore.Target{Kind: restore.ToEnd}
	orders := []Table{{"public", "orders"}}
	for _, c := range []struct {
		name string
		opt  Options
		err  string
	}{
		{"ok", Options{Tables: orders, Into: "dbname=x"}, ""},
		{"no table", Options{Into: "dbname=x"}, "--table"},
		{"no destination", Options{Tables: orders}, "--into DSN"},
		{"both destinations", Options{Tables: orders, Into: "x", Dump: "f"}, "--into DSN"},
		{"no target", Options{Tables: orders, Into: "x"}, "no default"},
		{"end of archive", Options{Tables: orders, Into: "x"}, "no default"},
		{"rename two", Options{Tables: append(orders, Table{"public", "b"}), Into: "x", RenameTo: "n"}, "single --table"},
		{"rename and data-only", Options{Tables: orders, Into: "x", RenameTo: "n", DataOnly: true}, "give one of them"},
		{"twice", Options{Tables: append(orders, orders...), Into: "x"}, "given twice"},
	} {
		c.opt.Drill.Target = xid
		if c.name == "no target" {
			c.opt.Drill.Target = nil
		}
		if c.name == "end of archive" {
			c.opt.Drill.Target = end
		}
		err := c.opt.Validate()
		if (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
	}
}

func TestSummarySaysRowsAndWhereTheyWent(t *testing.T) {
	orders := Table{"public", "orders"}
	r := &Result{Tables: []TableResult{{Table: orders, As: Table{"public", "orders_back"}, Rows: 180}}, Loaded: true}
	if got := strings.Join(r.Summary(), "\n"); got != `"public"."orders": 180 rows loaded into the live database as "public"."orders_back"` {
		t.Errorf("loaded: %s", got)
	}
	r = &Result{Tables: []TableResult{{Table: orders, As: orders, Rows: 7}}, Dump: "/tmp/o.sql"}
	if got := strings.Join(r.Summary(), "\n"); got != `"public"."orders": 7 rows written to /tmp/o.sql` {
		t.Errorf("dumped: %s", got)
	}
	r = &Result{Tables: []TableResult{{Table: orders, As: orders, Rows: 7}}}
	if got := strings.Join(r.Summary(), "\n"); got != `"public"."orders": 7 rows not loaded` {
		t.Errorf("load failed: %s", got)
	}
}

func TestDrillStepLinesReadAsExtracts(t *testing.T) {
	var b bytes.Buffer
	w := relabel{&b}
	_, _ = w.Write([]byte("drill: server started, pid 1\n"))
	_, _ = w.Write([]byte("\rdrill: replayed to 0/3000000"))
	if b.String() != "extract: server started, pid 1\n\rextract: replayed to 0/3000000" {
		t.Fatalf("%q", b.String())
	}
}
