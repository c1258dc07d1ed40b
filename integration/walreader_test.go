package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/wal/waldumptest"
)

// A user archives WAL from a cluster that commits, aborts, runs two-phase
// transactions and subtransactions, creates a restore point, drops a table,
// checkpoints and writes a record larger than a segment; pgb's WAL reader
// must find in the archived segments exactly the records pg_waldump finds,
// with the same commit and abort timestamps, restore point names and LSNs.
//
// With PGB_WAL_TESTDATA=DIR the 1 MiB run also writes its segments
// and pg_waldump's output there, zstd-compressed: that is how
// internal/wal/testdata was made.
func TestArchivedWALCommitsAndRestorePointsMatchPgWaldump(t *testing.T) {
	for _, segMB := range []int{16, 1} {
		t.Run(fmt.Sprintf("%dMiB-segments", segMB), func(t *testing.T) {
			archiveAndCrossCheck(t, segMB)
		})
	}
}

func archiveAndCrossCheck(t *testing.T, segMB int) {
	pgtest.Require(t)
	archive := pgtest.MkdirPG(t, filepath.Join(pgtest.TempDir(t), "archive"))
	c := pgtest.NewCluster(t, pgtest.Options{
		ArchiveCommand: "cp %p " + archive + "/%f",
		Conf:           []string{"max_prepared_transactions = 5", "full_page_writes = on"},
		WALSegSizeMB:   segMB,
	})
	c.Start(t)
	segSize := uint64(segMB) << 20
	first := c.SwitchWAL(t)

	for _, sql := range []string{
		"CREATE TABLE kept (id int PRIMARY KEY, pad text)",
		"INSERT INTO kept SELECT g, repeat('k', 100) FROM generate_series(1, 500) g",
		"BEGIN; INSERT INTO kept VALUES (1000, 'rolled back'); ROLLBACK",
		"CREATE TABLE doomed (id int, pad text)",
		"BEGIN; INSERT INTO doomed VALUES (1, 'two-phase'); PREPARE TRANSACTION 'p1'",
		"COMMIT PREPARED 'p1'",
		"BEGIN; INSERT INTO doomed VALUES (2, 'two-phase abort'); PREPARE TRANSACTION 'p2'",
		"ROLLBACK PREPARED 'p2'",
		"BEGIN; INSERT INTO kept VALUES (2000, 's'); SAVEPOINT a; INSERT INTO kept VALUES (2001, 's'); RELEASE a; SAVEPOINT b; INSERT INTO kept VALUES (2002, 's'); COMMIT",
		"SELECT pg_create_restore_point('before_drop')",
		"DROP TABLE doomed",
		"CHECKPOINT",
		"UPDATE kept SET pad = repeat('u', 100) WHERE id <= 50",
		fmt.Sprintf("SELECT pg_logical_emit_message(true, 'pgb', repeat('x', %d))", segSize+segSize/2),
		"INSERT INTO kept VALUES (3000, 'after the big record')",
		"SELECT pg_create_restore_point('the end')",
	} {
		c.Exec(t, sql)
	}
	last := c.SwitchWAL(t)
	c.WaitArchived(t, last, 60*time.Second)

	names := segmentsBetween(t, archive, first, last)
	if len(names) < 3 {
		t.Fatalf("expected at least 3 segments from %s to %s, archived %v", first, last, names)
	}
	start := segmentStart(t, names[0], segSize)
	recs := readWAL(t, archive, names, segSize, start)
	dump := pgWaldump(t, c, archive, names[0], names[len(names)-1])
	entries, err := waldumptest.Parse(dump)
	if err != nil {
		t.Fatal(err)
	}
	s, err := waldumptest.Compare(entries, recs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records agree: %+v", s.Records, s)
	if s.Commits == 0 || s.Aborts == 0 || s.CommitsPrepared != 1 || s.AbortsPrepared != 1 ||
		s.RestorePoints != 2 || s.Checkpoints == 0 || s.DroppedRels == 0 || s.Subxacts == 0 {
		t.Fatalf("the workload did not produce every kind of record: %+v", s)
	}
	if got := strings.Join(s.RestorePointNames, ","); got != "before_drop,the end" {
		t.Fatalf("restore points %q", got)
	}

	// A segment that starts in the middle of the big record: the reader
	// skips the continuation and then agrees with pg_waldump from there.
	mid := -1
	for i, n := range names[1:] {
		if startsWithContinuation(t, filepath.Join(archive, n)) {
			mid = i + 1
			break
		}
	}
	if mid < 0 {
		t.Fatal("no archived segment starts with a continuation record")
	}
	tail := names[mid:]
	rd, tailRecs := readWALReader(t, archive, tail, segSize, segmentStart(t, tail[0], segSize))
	if !rd.SkippedContinuation() {
		t.Fatal("the reader did not report the skipped continuation")
	}
	tailEntries, err := waldumptest.Parse(pgWaldump(t, c, archive, tail[0], tail[len(tail)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waldumptest.Compare(tailEntries, tailRecs); err != nil {
		t.Fatalf("from %s: %v", tail[0], err)
	}

	if out := os.Getenv("PGB_WAL_TESTDATA"); out != "" && segMB == 1 {
		writeTestdata(t, out, archive, names, dump)
	}
}

func segmentsBetween(t *testing.T, dir, first, last string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if len(n) == 24 && n >= first && n <= last {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func segmentStart(t *testing.T, name string, segSize uint64) wal.LSN {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	return wal.LSN(f.SegmentNumber(segSize) * segSize)
}

func readWAL(t *testing.T, dir string, names []string, segSize uint64, start wal.LSN) []wal.Record {
	t.Helper()
	_, recs := readWALReader(t, dir, names, segSize, start)
	return recs
}

func readWALReader(t *testing.T, dir string, names []string, segSize uint64, start wal.LSN) (*wal.Reader, []wal.Record) {
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
		if errors.Is(err, io.EOF) {
			return rd, recs
		}
		if err != nil {
			t.Fatalf("after %d records: %v", len(recs), err)
		}
		r.MainData, r.Blocks = nil, nil
		recs = append(recs, r)
	}
}

func startsWithContinuation(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return len(b) > 4 && b[2]&0x01 != 0
}

// pgWaldump runs pg_waldump on the archived segments from..to (TZ=UTC) and
// returns its record lines. pg_waldump ends with an error when it runs off the
// end of the last segment; that error, and only that one, is expected.
func pgWaldump(t *testing.T, c *pgtest.Cluster, dir, from, to string) string {
	t.Helper()
	cmd := exec.Command(c.Bin("pg_waldump"), "-p", dir, from, to)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil && !strings.Contains(errb.String(), "could not find file") &&
		!strings.Contains(errb.String(), "wanted 24, got 0") {
		t.Fatalf("pg_waldump: %v\n%s", err, errb.String())
	}
	return out.String()
}

func writeTestdata(t *testing.T, out, archive string, names []string, dump string) {
	t.Helper()
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(archive, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, n+".zst"), enc.EncodeAll(b, nil), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "pg_waldump.txt.zst"), enc.EncodeAll([]byte(dump), nil), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A user promotes a standby that followed the archive; the WAL the promoted
// server archives on its new timeline starts with the old timeline's pages
// and then the end-of-recovery record naming both timelines. The reader
// agrees with pg_waldump on every record of it.
func TestArchivedWALAfterPromotionShowsTheEndOfRecovery(t *testing.T) {
	pgtest.Require(t)
	tmp := pgtest.TempDir(t)
	archive := pgtest.MkdirPG(t, filepath.Join(tmp, "archive"))
	archive2 := pgtest.MkdirPG(t, filepath.Join(tmp, "archive2"))
	const segSize = 1 << 20
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "cp %p " + archive + "/%f", WALSegSizeMB: 1})
	c.Start(t)
	c.Exec(t, "CREATE TABLE before_promotion AS SELECT 1 AS id")
	c.WaitArchived(t, c.SwitchWAL(t), 60*time.Second)
	c.Stop(t)

	standbyDir := filepath.Join(tmp, "standby")
	if out, err := exec.Command("cp", "-a", c.DataDir(), standbyDir).CombinedOutput(); err != nil {
		t.Fatalf("copying the data directory: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(standbyDir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := pgtest.OpenDataDir(t, standbyDir, pgtest.Options{
		ArchiveCommand: "cp %p " + archive2 + "/%f",
		RestoreCommand: "cp " + archive + "/%f %p",
	})
	s.Start(t)
	s.Promote(t)
	s.WaitRecoveryDone(t, 60*time.Second)
	s.Exec(t, "INSERT INTO before_promotion VALUES (2)")
	last := s.SwitchWAL(t)
	if !strings.HasPrefix(last, "00000002") {
		t.Fatalf("the promoted server completed %s, not a timeline 2 segment", last)
	}
	s.WaitArchived(t, last, 60*time.Second)

	names := segmentsBetween(t, archive2, "000000020000000000000000", last)
	recs := readWAL(t, archive2, names, segSize, segmentStart(t, names[0], segSize))
	entries, err := waldumptest.Parse(pgWaldump(t, s, archive2, names[0], names[len(names)-1]))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := waldumptest.Compare(entries, recs)
	if err != nil {
		t.Fatal(err)
	}
	if sum.EndsOfRecovery != 1 || sum.Commits == 0 {
		t.Fatalf("expected one end-of-recovery record and a commit after it: %+v", sum)
	}
	for _, r := range recs {
		if r.EndOfRecovery != nil && (r.EndOfRecovery.Timeline != 2 || r.EndOfRecovery.PrevTimeline != 1) {
			t.Fatalf("end of recovery %+v, want timeline 1 → 2", *r.EndOfRecovery)
		}
	}
}

// The database copies an incremental backup must know of (their files keep the
// template's page LSNs) are found in real PostgreSQL 15 WAL: CREATE DATABASE …
// STRATEGY FILE_COPY and ALTER DATABASE … SET TABLESPACE, and not a WAL_LOG creation.
func TestDatabaseCopiesAreFoundInArchivedWAL(t *testing.T) {
	pgtest.Require(t)
	tmp := pgtest.TempDir(t)
	archive := pgtest.MkdirPG(t, filepath.Join(tmp, "archive"))
	spc := pgtest.MkdirPG(t, filepath.Join(tmp, "spc"))
	const segSize = 1 << 20
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "cp %p " + archive + "/%f", WALSegSizeMB: 1})
	c.Start(t)
	first := c.SwitchWAL(t)
	c.Exec(t, "CREATE DATABASE copied STRATEGY FILE_COPY")
	c.Exec(t, "CREATE DATABASE logged STRATEGY WAL_LOG")
	c.Exec(t, "CREATE TABLESPACE spc LOCATION '"+spc+"'")
	c.Exec(t, "ALTER DATABASE copied SET TABLESPACE spc")
	last := c.SwitchWAL(t)
	c.WaitArchived(t, last, 60*time.Second)
	oid := func(q string) uint32 {
		t.Helper()
		return uint32(c.QueryInt(t, q))
	}
	copied, logged := oid("SELECT oid FROM pg_database WHERE datname = 'copied'"), oid("SELECT oid FROM pg_database WHERE datname = 'logged'")
	spcOID := oid("SELECT oid FROM pg_tablespace WHERE spcname = 'spc'")

	names := segmentsBetween(t, archive, first, last)
	var rs []io.Reader
	for _, n := range names {
		f, err := os.Open(filepath.Join(archive, n))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rs = append(rs, f)
	}
	rd, err := wal.NewReader(io.MultiReader(rs...), segSize, segmentStart(t, names[0], segSize))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ch, err := wal.DecodeChange(&r, rd.PostgreSQLMajor())
		if err != nil {
			t.Fatalf("%s: %v", r.LSN, err)
		}
		// (The first segment holds initdb's copies too.)
		if ch.Kind == wal.DatabaseCopy && (ch.Database == copied || ch.Database == logged) {
			got = append(got, fmt.Sprint(ch.Database, "@", ch.Tablespaces))
		}
	}
	want := []string{fmt.Sprint(copied, "@", []uint32{1663}), fmt.Sprint(copied, "@", []uint32{spcOID})}
	if !slices.Equal(got, want) {
		t.Fatalf("database copies %v, want %v (the WAL_LOG database %d is no copy)", got, want, logged)
	}
}
