package walsum_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
)

// repoOf is a repository whose pgb.json names system sys, holding the test segments.
func repoOf(t *testing.T, sys uint64) *repo.Repo {
	t.Helper()
	rp := repo.New(mem.New(), repo.Options{})
	if _, err := rp.EnsureIdentity(context.Background(), repo.Identity{Format: repo.FormatVersion, SystemID: repo.SystemID(sys), PGVersion: 15, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	archive(t, rp, testdata(t), names...)
	return rp
}

func systemOf(t *testing.T) uint64 {
	t.Helper()
	s, err := walsum.Compute(file(t, names[0]), segSize, bytes.NewReader(testdata(t)[names[0]]), nextFrom())
	if err != nil {
		t.Fatal(err)
	}
	return s.SystemID
}

// A summary cached for another cluster (a repository wiped and reused, keeping
// walsum/) is not believed: the segment is summarised again.
func TestACachedSummaryOfAnotherClusterIsComputedAgain(t *testing.T) {
	ctx := context.Background()
	sys := systemOf(t)
	rp := repoOf(t, sys)
	f := file(t, names[0])
	s, err := walsum.Compute(f, segSize, bytes.NewReader(testdata(t)[names[0]]), nextFrom(testdata(t)[names[1]]))
	if err != nil {
		t.Fatal(err)
	}
	forged := *s
	forged.SystemID = sys + 1
	forged.LastCommit = &walsum.Commit{Xid: forged.MaxXid, Time: time.Now().Add(time.Hour), LSN: s.LastLSN}
	js, err := walsum.Encode(&forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.PutWALSummary(ctx, f, js); err != nil {
		t.Fatal(err)
	}
	c := walsum.NewCache(rp, segSize, nil)
	got, err := c.Get(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stats.Computed != 1 || got.SystemID != sys || !got.LastCommit.Time.Equal(s.LastCommit.Time) {
		t.Fatalf("the other cluster's summary was believed: stats %+v, system %d, last commit %v", c.Stats, got.SystemID, got.LastCommit.Time)
	}
}

// A segment of another cluster archived under this repository's name is damage to a
// reader: it is not summarised as this cluster's WAL.
func TestASegmentOfAnotherClusterIsDamage(t *testing.T) {
	rp := repoOf(t, systemOf(t)+1)
	_, err := walsum.NewCache(rp, segSize, nil).Get(context.Background(), file(t, names[0]))
	if !errors.Is(err, wal.ErrCorruptRecord) {
		t.Fatalf("summarising another cluster's segment: %v, want an error wrapping ErrCorruptRecord", err)
	}
}
