package cmd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/metrics"
	"github.com/pgb-project/pgb/internal/status"
)

// A scrape never waits for a slow repository once a first read has finished: it gets
// the last figures while the next read runs; the repository is read at most once per
// interval; a read that fails keeps the last figures, marked stale, with up 0.
func TestMetricsScrapesDoNotWaitForASlowRead(t *testing.T) {
	clock := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	release := make(chan error, 10)
	reads := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &metricsSource{n: 1, interval: time.Minute, timeout: time.Hour, ctx: ctx, now: func() time.Time { return clock },
		readOne: func(ctx context.Context, i int) metrics.Repo {
			reads++
			if err := <-release; err != nil {
				return metrics.Repo{URL: "/r", Err: err}
			}
			return metrics.Repo{URL: "/r", Report: &status.Report{Repository: "/r"}, Gathered: clock}
		}}
	release <- nil
	first := s.repos(context.Background()) // waits for the first read
	if len(first) != 1 || first[0].Report == nil || reads != 1 {
		t.Fatalf("first scrape: %+v, %d reads", first, reads)
	}
	if again := s.repos(context.Background()); len(again) != 1 || reads != 1 {
		t.Fatalf("a scrape within the interval read again: %d reads", reads)
	}
	// After the interval: a read starts, and blocks; the scrape returns the last
	// figures at once (it would hang here otherwise).
	clock = clock.Add(2 * time.Minute)
	if got := s.repos(context.Background()); len(got) != 1 || got[0].Report == nil || got[0].Err != nil {
		t.Fatalf("scrape during a read: %+v", got)
	}
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	release <- errors.New("unreachable") // the read fails
	<-running
	got := s.repos(context.Background())
	if len(got) != 1 || got[0].Err == nil || got[0].Report == nil || !got[0].Stale {
		t.Fatalf("after a failed read: %+v", got)
	}
	cancel()
	s.wg.Wait()
}

// An S3 repository behind its own endpoint that cannot be read keeps the label it has
// when it can: the store's name, endpoint included (as pgb status and pgb drill --prom
// name it), so that its series and the kept figures stay one series.
func TestAnUnreadableRepositoryKeepsItsLabel(t *testing.T) {
	isolate(t)
	prom := filepath.Join(t.TempDir(), "pgb.prom")
	r := pgb(t, "status", "--repo", "s3://bucket/db", "--s3-endpoint", "http://127.0.0.1:1", "--s3-region", "x",
		"--s3-access-key-id", "a", "--s3-secret-access-key", "b", "--storage-retries", "1", "--prom", prom)
	if r.code == 0 {
		t.Fatalf("status of an unreachable store: %+v", r)
	}
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	if want := `pgb_repository_up{repo="s3://bucket/db at http://127.0.0.1:1"} 0`; !strings.Contains(string(b), want) {
		t.Errorf("the textfile does not say %s:\n%s", want, b)
	}
}

// A read that ignores its timeout (a hung mount) does not leave the last figures
// looking current: past every timeout the repository is down and its figures stale.
func TestAHungReadMakesTheRepositoryDown(t *testing.T) {
	clock := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	release := make(chan struct{})
	first := true
	s := &metricsSource{n: 1, interval: time.Minute, timeout: time.Minute, ctx: context.Background(), now: func() time.Time { return clock },
		readOne: func(ctx context.Context, i int) metrics.Repo {
			if !first {
				<-release // hangs, whatever ctx says
			}
			first = false
			return metrics.Repo{URL: "/r", Report: &status.Report{Repository: "/r"}, Gathered: clock}
		}}
	if got := s.repos(context.Background()); len(got) != 1 || got[0].Err != nil {
		t.Fatalf("first read: %+v", got)
	}
	clock = clock.Add(2 * time.Minute)
	if got := s.repos(context.Background()); got[0].Err != nil { // the second read starts, and hangs
		t.Fatalf("while the read is young: %+v", got)
	}
	clock = clock.Add(s.hungAfter() + time.Second)
	got := s.repos(context.Background())
	if len(got) != 1 || got[0].Err == nil || !got[0].Stale || got[0].Report == nil {
		t.Errorf("a read hung past every timeout: %+v", got)
	}
	close(release)
	s.wg.Wait()
}
