package archive

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

const mib = 1 << 20

// backlogDir makes a data directory whose pg_wal holds the named files (segments of
// segSize bytes), each marked ready (.ready) or archived (.done).
func backlogDir(t *testing.T, ready, done []string, segSize int64) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{"global", "pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(d, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "global", "pg_control"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := func(names []string, status string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(d, "pg_wal", n), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(filepath.Join(d, "pg_wal", n), segSize); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "pg_wal", "archive_status", n+status), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	mark(ready, ".ready")
	mark(done, ".done")
	return d
}

func segs(names ...string) []string { return names }

var errUnreachable = errors.New("repository unreachable")

func queueMax(dir string, limit int64, log *bytes.Buffer) *QueueMax {
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	return &QueueMax{Limit: limit, DataDir: dir, Host: "db1", Version: "test",
		Log: slog.New(slog.NewTextHandler(log, nil)), Now: func() time.Time { now = now.Add(time.Second); return now }}
}

// The backlog is the size of the WAL files marked ready that are still in pg_wal;
// archived ones, vanished ones and stray names do not count.
func TestArchiverBacklogCountsReadyFilesOnly(t *testing.T) {
	d := backlogDir(t, segs("000000010000000000000007", "000000010000000000000005", "00000002.history"), segs("000000010000000000000004"), 16*mib)
	if err := os.WriteFile(filepath.Join(d, "pg_wal", "archive_status", "000000010000000000000009.ready"), nil, 0o600); err != nil {
		t.Fatal(err) // ready, but recycled since: not counted
	}
	if err := os.WriteFile(filepath.Join(d, "pg_wal", "archive_status", "junk.ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := ReadBacklog(d)
	if err != nil {
		t.Fatal(err)
	}
	if b.Files != 3 || b.Bytes != 48*mib || b.Oldest != "000000010000000000000005" {
		t.Fatalf("backlog %+v", b)
	}
}

// A user who set wal-push-queue-max: while the backlog is within the limit a failed
// push fails (PostgreSQL retries, nothing is dropped); beyond it the segment is
// dropped: an error line naming it, the backlog, the limit and the consequence, a
// durable local record, and no error (wal-push exits 0).
func TestQueueMaxDropsOnlyBeyondTheLimit(t *testing.T) {
	seg := "000000010000000000000005"
	d := backlogDir(t, segs(seg, "000000010000000000000006", "000000010000000000000007"), nil, 16*mib)
	path := filepath.Join(d, "pg_wal", seg)
	var log bytes.Buffer

	err := queueMax(d, 48*mib, &log).ApplyAfterFailure(path, errUnreachable)
	if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "within wal-push-queue-max") {
		t.Fatalf("at the limit: %v", err)
	}
	if recs, _ := PendingDrops(d); len(recs) != 0 || log.Len() != 0 {
		t.Fatalf("dropped within the limit: %+v %s", recs, log.String())
	}

	if err := queueMax(d, 32*mib, &log).ApplyAfterFailure(path, errUnreachable); err != nil {
		t.Fatalf("beyond the limit: %v", err)
	}
	line := log.String()
	for _, w := range []string{"level=ERROR", "WAL DROPPED", "segment=" + seg, `backlog="48.0 MiB"`, `limit="32.0 MiB"`, "point-in-time recovery across this segment is no longer possible", "repository unreachable"} {
		if !strings.Contains(line, w) {
			t.Errorf("log lacks %q: %s", w, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("want one line: %s", line)
	}
	recs, err := PendingDrops(d)
	if err != nil || len(recs) != 1 {
		t.Fatalf("records %+v, %v", recs, err)
	}
	r := recs[0]
	if r.Segment != seg || r.SegmentSize != 16*mib || r.BacklogBytes != 48*mib || r.LimitBytes != 32*mib || r.Host != "db1" || r.Error != "repository unreachable" || r.Damaged != "" {
		t.Fatalf("record %+v", r)
	}
	if !HasPendingDrops(d) {
		t.Fatal("HasPendingDrops: false")
	}
}

// Without a data directory there is no backlog to count: the push fails as without
// the setting, and says why the setting did not apply. History files are never dropped.
func TestQueueMaxNeverDropsWithoutADataDirectoryOrForAHistoryFile(t *testing.T) {
	d := backlogDir(t, segs("000000010000000000000005", "00000002.history"), nil, 16*mib)
	var log bytes.Buffer
	q := queueMax("", 1, &log)
	err := q.ApplyAfterFailure(filepath.Join(d, "pg_wal", "000000010000000000000005"), errUnreachable)
	if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "no data directory") {
		t.Fatalf("no data directory: %v", err)
	}
	q = queueMax(d, 1, &log)
	err = q.ApplyAfterFailure(filepath.Join(d, "pg_wal", "00000002.history"), errUnreachable)
	if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "only WAL segments") {
		t.Fatalf("history file: %v", err)
	}
	if err := (&QueueMax{DataDir: d, Log: q.Log}).ApplyAfterFailure(filepath.Join(d, "pg_wal", "000000010000000000000005"), errUnreachable); err != errUnreachable { //nolint:errorlint // the very error, untouched
		t.Fatalf("off: %v", err)
	}
	if recs, _ := PendingDrops(d); len(recs) != 0 || log.Len() != 0 {
		t.Fatalf("dropped: %+v %s", recs, log.String())
	}
}

// When the drop cannot be recorded (here: pg_wal/pgb is a file), the segment is not
// dropped: never silently.
func TestQueueMaxKeepsTheSegmentWhenTheDropCannotBeRecorded(t *testing.T) {
	seg := "000000010000000000000005"
	d := backlogDir(t, segs(seg), nil, 16*mib)
	if err := os.WriteFile(filepath.Join(d, "pg_wal", "pgb"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	err := queueMax(d, 1, &log).ApplyAfterFailure(filepath.Join(d, "pg_wal", seg), errUnreachable)
	if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "not dropped") {
		t.Fatalf("%v", err)
	}
	if log.Len() != 0 {
		t.Fatalf("logged a drop: %s", log.String())
	}
}

func dropAll(t *testing.T, d string, names ...string) {
	t.Helper()
	var log bytes.Buffer
	q := queueMax(d, 1, &log)
	for _, n := range names {
		if err := q.ApplyAfterFailure(filepath.Join(d, "pg_wal", n), errUnreachable); err != nil {
			t.Fatal(err)
		}
	}
}

// The next push that succeeds records the drops in the repository, one gap record
// per run of consecutive segments, and removes the local records.
func TestDropsArePublishedAsGapsOnceTheRepositoryIsBack(t *testing.T) {
	names := segs("000000010000000000000005", "000000010000000000000006", "000000010000000000000007", "000000010000000000000009", "000000020000000000000009")
	d := backlogDir(t, names, nil, 16*mib)
	dropAll(t, d, names...)
	rp := repo.New(mem.New(), repo.Options{})
	n, err := PublishDrops(context.Background(), rp, d, slog.New(slog.DiscardHandler))
	if err != nil || n != 5 {
		t.Fatalf("published %d, %v", n, err)
	}
	keys, err := rp.ListGapKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.First+"-"+k.Last)
	}
	want := "000000010000000000000005-000000010000000000000007,000000010000000000000009-000000010000000000000009,000000020000000000000009-000000020000000000000009"
	if strings.Join(got, ",") != want {
		t.Fatalf("gaps %v", got)
	}
	g, err := rp.ReadGap(context.Background(), keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	if g.Segments != 3 || g.Reason != repo.GapReasonQueueMax || g.Host != "db1" || !g.DroppedTo.After(g.DroppedFrom) || g.LimitBytes != 1 {
		t.Fatalf("gap %+v", g)
	}
	if recs, err := PendingDrops(d); err != nil || len(recs) != 0 || HasPendingDrops(d) {
		t.Fatalf("left: %+v, %v", recs, err)
	}
}

// A publish that fails keeps the local records, and the next one records them.
func TestDropsStayLocalWhenThePublishFailsAndAreRecordedNextTime(t *testing.T) {
	names := segs("000000010000000000000005", "000000010000000000000006")
	d := backlogDir(t, names, nil, 16*mib)
	dropAll(t, d, names...)
	st := mem.New()
	broken := repo.New(faulty.New(st, faulty.Rule{Op: faulty.Put, Count: 1}), repo.Options{})
	if _, err := PublishDrops(context.Background(), broken, d, slog.New(slog.DiscardHandler)); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("publish: %v", err)
	}
	if recs, _ := PendingDrops(d); len(recs) != 2 {
		t.Fatalf("local records after a failed publish: %+v", recs)
	}
	rp := repo.New(st, repo.Options{})
	if n, err := PublishDrops(context.Background(), rp, d, slog.New(slog.DiscardHandler)); err != nil || n != 2 {
		t.Fatalf("second publish: %d, %v", n, err)
	}
	if keys, _ := rp.ListGapKeys(context.Background()); len(keys) != 1 {
		t.Fatalf("gaps %+v", keys)
	}
}

// A lost acknowledgement: the gap is stored but the publish saw an error; the next
// publish finds it stored and removes the local records.
func TestDropsPublishedTwiceAfterALostAcknowledgement(t *testing.T) {
	names := segs("000000010000000000000005")
	d := backlogDir(t, names, nil, 16*mib)
	dropAll(t, d, names...)
	st := mem.New()
	lost := repo.New(faulty.New(st, faulty.Rule{Op: faulty.Put, Fault: faulty.FailAfter, Count: 1}), repo.Options{})
	if _, err := PublishDrops(context.Background(), lost, d, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("no error")
	}
	if n, err := PublishDrops(context.Background(), repo.New(st, repo.Options{}), d, slog.New(slog.DiscardHandler)); err != nil || n != 1 {
		t.Fatalf("%d, %v", n, err)
	}
	if HasPendingDrops(d) {
		t.Fatal("records left")
	}
}

// A local record that does not read is still published: its name is the fact.
func TestDamagedLocalDropRecordIsStillPublished(t *testing.T) {
	names := segs("000000010000000000000005", "000000010000000000000006")
	d := backlogDir(t, names, nil, 16*mib)
	dropAll(t, d, names...)
	if err := os.WriteFile(filepath.Join(d, "pg_wal", "pgb", "dropped", "000000010000000000000006.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	rp := repo.New(mem.New(), repo.Options{})
	if n, err := PublishDrops(context.Background(), rp, d, slog.New(slog.DiscardHandler)); err != nil || n != 2 {
		t.Fatalf("%d, %v", n, err)
	}
	keys, _ := rp.ListGapKeys(context.Background())
	if len(keys) != 1 || keys[0].Last != "000000010000000000000006" {
		t.Fatalf("gaps %+v", keys)
	}
	g, err := rp.ReadGap(context.Background(), keys[0].Key)
	if err != nil || !strings.Contains(g.Error, "damaged") {
		t.Fatalf("%+v, %v", g, err)
	}
}
