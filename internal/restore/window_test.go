package restore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// commitBase and commitStep place the one commit each test segment holds: segment n
// commits transaction 400·n at commitBase + n·commitStep, half way through it.
var commitBase = time.Date(2026, 11, 23, 9, 20, 0, 0, time.UTC)

const commitStep = 20 * time.Minute

func commitOf(segNo uint64) (time.Time, uint32) {
	return commitBase.Add(time.Duration(segNo) * commitStep), uint32(400 * segNo)
}

// putSummary caches the summary of a test segment (16 MiB) whose one commit is
// commitOf(its number); the segment's body is a stand-in.
func putSummary(t *testing.T, st storage.Store, name string) {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	n := f.SegmentNumber(size)
	start := wal.LSN(n * size)
	at, xid := commitOf(n)
	c := &walsum.Commit{Xid: xid, Time: at, LSN: start + 0x800000}
	s := &walsum.Summary{Version: walsum.Version, Segment: name, SegSize: size, SystemID: 7440292914373421110, Records: 3,
		FirstLSN: start + 0x28, LastLSN: start + 0xFFF000, EndLSN: start + 0xFFF100,
		Commits: 1, FirstCommit: c, LastCommit: c, MinXid: xid, MaxXid: xid}
	js, err := walsum.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.New(st, repo.Options{}).PutWALSummary(context.Background(), f, js); err != nil {
		t.Fatal(err)
	}
}

// putSegments archives stand-in segments with their summaries.
func putSegments(t *testing.T, st storage.Store, names ...string) {
	t.Helper()
	for _, n := range names {
		putWAL(t, st, n, []byte("wal"))
		putSummary(t, st, n)
	}
}

func segRange(tli uint32, from, to uint64) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, wal.SegmentFileName(tli, n, 16<<20))
	}
	return out
}

// The last archived commit bounds a time target, not when the newest segment was
// stored: a target at or after it is refused before anything is written, unless
// --target-beyond-archive says the primary is still archiving.
func TestChooseRefusesATimeAfterTheLastArchivedCommit(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 3)...)
	backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
	last, _ := commitOf(3)
	for _, tc := range []struct {
		at        time.Time
		exclusive bool
		beyond    bool
		ok        bool
	}{
		{at: last.Add(-time.Millisecond), ok: true},
		{at: last, ok: false},
		{at: last, exclusive: true, ok: true},
		{at: last.Add(time.Hour), ok: false},
		{at: last.Add(time.Hour), beyond: true, ok: true},
	} {
		target := Target{Kind: ToTime, Time: tc.at, Timeline: "latest", Exclusive: tc.exclusive, BeyondArchive: tc.beyond}
		_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBeyondArchive)) {
			t.Errorf("target %s exclusive %v beyond %v: %v", tc.at.Format(time.RFC3339Nano), tc.exclusive, tc.beyond, err)
		}
		if err != nil && !strings.Contains(err.Error(), last.Format(time.RFC3339Nano)) {
			t.Errorf("message %q does not name the last commit's time", err)
		}
	}
}

// A missing segment cuts the window: a target after it is refused before anything is
// written, and so is one after it with --target-beyond-archive (that is no help there).
func TestChooseRefusesATargetAfterAGap(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	putSegments(t, st, segRange(1, 6, 8)...)
	backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
	at, _ := commitOf(7)
	for _, beyond := range []bool{false, true} {
		target := Target{Kind: ToTime, Time: at, Timeline: "latest", BeyondArchive: beyond}
		_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "missing 000000010000000000000005") {
			t.Fatalf("beyond %v: Choose = %v, want ErrUnreachable naming the gap", beyond, err)
		}
	}
	ok, _ := commitOf(3)
	target := Target{Kind: ToTime, Time: ok, Timeline: "latest"}
	if _, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, ""); err != nil {
		t.Fatalf("a target before the gap: %v", err)
	}
}

// A backup named with --backup whose own WAL is not archived is refused for that
// reason, not as one that ends after the target.
func TestChooseSaysWhyANamedBackupCannotBeUsed(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 4, 8)...)
	backups := putBackups(t, st, []tlBackup{{"old", 1, 0x2000028, 0x2000100}, {"new", 1, 0x5000028, 0x5000100}})
	at, _ := commitOf(6)
	target := Target{Kind: ToTime, Time: at, Timeline: "latest"}
	_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "old")
	if !errors.Is(err, ErrNoUsableBackup) || !strings.Contains(err.Error(), "is not all archived") {
		t.Fatalf("Choose(--backup old) = %v, want a refusal saying its WAL is missing", err)
	}
}
