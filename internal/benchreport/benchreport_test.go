package benchreport

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/report.md from the fixture")

// The report of a fixture run (real rows of pgb and pgBackRest, on a filesystem and on
// S3, made-up WAL-G and random-data rows) is the reviewed one in testdata/report.md:
// medians over the good repetitions, failed runs counted but not averaged, ratios to each
// anchor's fastest variant, and pgb's share of the machine's limits.
func TestReportOfAFixtureRun(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := WriteFor(&got, Summarise(rows), Machine{Cores: 2, CoresFrom: "nproc of the run"}); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.md")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("report differs from %s (go test -update rewrites it; review the diff):\n%s", golden, got.String())
	}
}

// The figures the report is for, computed by hand from the fixture.
func TestRatiosAndLimits(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	res := Summarise(rows)
	pgb := find(res, "backup", "pgb", "lz4")
	if pgb == nil || pgb.Wall != 3.65 || pgb.CPU != 1.95 || pgb.OK != 3 {
		t.Fatalf("pgb backup medians = %+v; want wall 3.65, CPU 1.95 over 3 good runs", pgb)
	}
	walg := find(res, "restore", "wal-g", "lz4-c2")
	if walg == nil || walg.OK != 1 || walg.N != 2 || walg.Wall != 2.51 {
		t.Fatalf("WAL-G restore = %+v; want the one good run of two", walg)
	}
	// pgBackRest's backup median wall is 18.17 s: pgb is 18.17/3.65 = 4.98× faster.
	// and uses 5.95/1.95 = 3.05× less CPU.
	if got := ratio(best(inSection(res, "backup"), "pgbackrest"), *pgb, false); got != "4.98× (CPU 3.05×)" {
		t.Errorf("ratio to pgBackRest = %q, want 4.98× (CPU 3.05×)", got)
	}
	// The backup limit is 2 cores of lz4 -1: 1 GiB in a median 2.87 s, twice.
	l, ok := machineLimit(res, "backup", "data", 2)
	if want := 2 * 1024 / 2.87; !ok || l.mibps < want-0.01 || l.mibps > want+0.01 {
		t.Errorf("backup limit = %v MiB/s, want %.2f", l.mibps, want)
	}
	// The restore limit is the lesser of 2 × lz4 -d (1 GiB in a median 3.12 s, twice:
	// 656 MiB/s) and the fsync'd write (1 GiB in 1.47 s: 697 MiB/s).
	if l, ok := machineLimit(res, "restore", "data", 2); !ok || l.how != "2 × lz4 -d (data)" || int(l.mibps) != 656 {
		t.Errorf("restore limit = %+v, want 2 × lz4 -d at 656 MiB/s", l)
	}
	// On the run's 8 cores the backup limit is 8 compressors, not a fixed 2.
	if l, ok := machineLimit(res, "backup", "data", 8); !ok || l.how != "8 × lz4 -1 (data)" || int(l.mibps) != 2854 {
		t.Errorf("backup limit on 8 cores = %+v, want 8 × lz4 -1 at %d MiB/s", l, 2854)
	}
}

func inSection(res []Result, section string) []Result {
	var out []Result
	for _, r := range res {
		if r.Section == section {
			out = append(out, r)
		}
	}
	return out
}

func TestParseRefusesAnotherFormat(t *testing.T) {
	for _, in := range []string{
		"",
		"section,tool,variant\nbackup,pgb,lz4\n",
		strings.Join(header, ",") + "\nbackup,pgb,lz4,1,fast,1,1,1,1,1,1\n",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) accepted it", in)
		}
	}
}

// The S3 runs (scripts/bench-s3) get their own sections, after the filesystem's: the
// WAL ones compared on the host's CPU (pgb's archiver and prefetcher, pgBackRest's
// async workers are detached there too), backup and restore on the timed processes',
// with a note on what differs, written once and only when there are S3 rows.
func TestS3Sections(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	res := Summarise(rows)
	for _, s := range []string{"s3-wal-push", "s3-wal-fetch"} {
		if !detached(s) {
			t.Errorf("detached(%q) = false: its ratios would leave out the background workers", s)
		}
	}
	for _, s := range []string{"s3-backup", "s3-restore", "backup"} {
		if detached(s) {
			t.Errorf("detached(%q) = true", s)
		}
	}
	// pgBackRest's fastest S3 push is sync lz4 at 2.21 s and 4.92 host CPU s; pgb's
	// took 1.55 s and 3.67 s: 1.43× and 1.34×.
	push := inSection(res, "s3-wal-push")
	pgb := find(res, "s3-wal-push", "pgb", "lz4")
	if got := ratio(best(push, "pgbackrest"), *pgb, detached("s3-wal-push")); got != "1.43× (host CPU 1.34×)" {
		t.Errorf("s3 wal-push ratio = %q, want 1.43× (host CPU 1.34×)", got)
	}
	// The failed restore repetition is counted, not averaged.
	if r := find(res, "s3-restore", "pgb", "lz4"); r == nil || r.OK != 1 || r.N != 2 || r.Wall != 1.80 {
		t.Errorf("pgb s3 restore = %+v, want 1 good run of 2 at 1.80 s", r)
	}
	var out bytes.Buffer
	if err := Write(&out, res); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	if n := strings.Count(report, s3Note); n != 1 {
		t.Fatalf("the S3 note appears %d times, want once", n)
	}
	note, first := strings.Index(report, s3Note), strings.Index(report, "(`s3-wal-push`)")
	if first < 0 || note > first || strings.Index(report, "(`restore-random`)") > note {
		t.Errorf("the S3 note is not between the filesystem sections and the first S3 one:\n%s", report)
	}

	var fsOnly []Result
	for _, r := range res {
		if !strings.HasPrefix(r.Section, "s3-") {
			fsOnly = append(fsOnly, r)
		}
	}
	out.Reset()
	if err := Write(&out, fsOnly); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), s3Note) || strings.Contains(out.String(), "s3-") {
		t.Errorf("a run without S3 rows mentions S3:\n%s", out.String())
	}
}
