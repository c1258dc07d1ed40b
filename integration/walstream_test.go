package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
	"github.com/pgb-project/pgb/internal/wal"
)

// With wal-stream as the synchronous standby and no archive_command at all, every
// commit that returned is in the repository: the primary is killed right after one
// (and its data directory removed, and pgb killed too, so nothing is stored after),
// and a restore to the end of the archive has every row. A backup taken meanwhile
// completes with the stream as its only WAL path.
func TestASynchronousStreamLosesNoCommitWhenThePrimaryDies(t *testing.T) {
	for _, backend := range []string{"fs", "s3"} {
		t.Run(backend, func(t *testing.T) {
			pgtest.RequireParallel(t)
			var sel []string
			if backend == "fs" {
				sel = []string{"--repo", newRepo(t)}
			} else {
				sel, _ = s3Repo(t, 0, "")
			}
			src := pgtest.NewCluster(t, pgtest.Options{Conf: []string{"synchronous_standby_names = 'pgb'"}})
			src.Start(t)
			stream := startPGBReading(t, src.Env(), append([]string{"wal-stream", "--synchronous"}, sel...)...)
			stream.until(t, "streaming WAL", "that it streams")
			src.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, pad text)")
			mustPGB(t, "", src.Env(), append([]string{"backup-push", "--fast"}, sel...)...)
			const rows = 300
			var before string // the WAL position before the last commit
			for i := 1; i <= rows; i++ {
				if i == rows {
					before = src.QueryString(t, "SELECT pg_current_wal_lsn()::text")
				}
				src.Exec(t, "INSERT INTO t VALUES ($1, repeat('x', 2000))", i)
			}
			// The primary dies right after the last commit returned, with everything on it,
			// and so does the stream: only what was in the repository then counts.
			if err := stream.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_, _ = stream.wait()
			src.StopImmediate(t)
			if err := os.RemoveAll(src.DataDir()); err != nil {
				t.Fatal(err)
			}

			// status ends the window at the last commit, read from the streamed chunks.
			var st struct {
				Windows []struct {
					LastCommit struct {
						LSN wal.LSN `json:"lsn"`
					} `json:"last_commit"`
					Streamed bool `json:"streamed"`
				} `json:"windows"`
			}
			out := mustPGB(t, "", nil, append([]string{"status", "--json"}, sel...)...)
			if err := json.Unmarshal([]byte(out.stdout), &st); err != nil || len(st.Windows) != 1 {
				t.Fatalf("status --json: %v\n%s", err, out.stdout)
			}
			last, err := wal.ParseLSN(before)
			if err != nil {
				t.Fatal(err)
			}
			if w := st.Windows[0]; !w.Streamed || w.LastCommit.LSN < last {
				t.Fatalf("status: the window ends at the commit at %s (streamed %v), want the last commit, after %s:\n%s", w.LastCommit.LSN, w.Streamed, last, out.stdout)
			}

			dir := filepath.Join(pgtest.TempDir(t), "restored")
			mustPGB(t, "", nil, append([]string{"restore", "--pgdata", dir}, sel...)...)
			c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"synchronous_standby_names = ''"}})
			c.Start(t)
			c.WaitRecoveryDone(t, 120*time.Second)
			if n := c.QueryInt(t, "SELECT count(*) FROM t"); n != rows {
				t.Fatalf("restored %d rows, want every one of the %d committed", n, rows)
			}
			// The last rows were only ever in streamed chunks: recovery read them from there.
			if log := c.LogTail(400); !strings.Contains(log, "served a segment from streamed chunks") {
				t.Fatalf("recovery did not read a segment from streamed chunks:\n%s", log)
			}
		})
	}
}

// The stream from a standby survives a restart of pgb (the slot kept the WAL written
// meanwhile), an outage of the repository's S3 server, a restart of PostgreSQL, and
// the standby's promotion (it follows the new timeline): a restore to the end of the
// archive has every row, from both timelines, with no archive_command anywhere.
func TestTheStreamSurvivesRestartsAndFollowsAPromotion(t *testing.T) {
	pgtest.RequireParallel(t)
	sel, _, proxy := s3RepoVia(t, s3test.StartVersityGW, true, 0, "")
	primary := pgtest.NewCluster(t, pgtest.Options{})
	primary.Start(t)
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	standby := newStandby(t, primary)
	streamArgs := append([]string{"wal-stream", "--flush-interval", "100ms", "--storage-retries", "1"}, sel...)
	stream := startPGBReading(t, standby.Env(), streamArgs...)
	t.Cleanup(func() { _ = stream.cmd.Process.Kill(); _, _ = stream.wait() })
	stream.until(t, "streaming WAL", "that it streams")
	// A backup of the primary; its stop segment reaches the repository through the
	// standby's stream.
	mustPGB(t, "", primary.Env(), append([]string{"backup-push", "--fast"}, sel...)...)
	insert := func(from, to int) {
		for i := from; i <= to; i++ {
			primary.Exec(t, "INSERT INTO t VALUES ($1)", i)
		}
	}
	insert(1, 50)

	// pgb is killed; rows are written while it is down; it starts again.
	_ = stream.cmd.Process.Kill()
	_, _ = stream.wait()
	insert(51, 100)
	stream = startPGBReading(t, standby.Env(), streamArgs...)
	stream.until(t, "streaming WAL", "that it streams again")

	// The repository's server goes away while WAL comes in, and comes back.
	proxy.setDown(true)
	insert(101, 150)
	stream.until(t, "WAL stream interrupted", "that the repository failed")
	proxy.setDown(false)
	stream.until(t, "streaming WAL", "that it streams after the outage")

	// PostgreSQL (the standby it streams from) restarts.
	standby.Restart(t)
	stream.until(t, "WAL stream interrupted", "that the server went away")
	stream.until(t, "streaming WAL", "that it streams after the restart")
	insert(151, 200)

	// The primary is lost; the standby is promoted: the stream follows timeline 2.
	waitReplayed(t, primary, standby)
	primary.StopImmediate(t)
	standby.Promote(t)
	stream.until(t, "following the timeline switch", "that it follows the new timeline")
	standby.WaitFor(t, "the promotion", 60*time.Second, func() (bool, string, error) {
		in, err := standby.TryQueryString("SELECT pg_is_in_recovery()::text")
		return in == "false", "still in recovery", err
	})
	for i := 201; i <= 250; i++ {
		standby.Exec(t, "INSERT INTO t VALUES ($1)", i)
	}
	end, err := wal.ParseLSN(standby.QueryString(t, "SELECT pg_current_wal_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	standby.WaitFor(t, "the stream to store the last commit", 120*time.Second, func() (bool, string, error) {
		r := pgb(t, "", nil, append([]string{"status", "--json"}, sel...)...)
		var st struct {
			Windows []struct {
				EndLSN wal.LSN `json:"end_lsn"`
			} `json:"windows"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Windows) == 0 {
			return false, r.String(), nil
		}
		return st.Windows[len(st.Windows)-1].EndLSN >= end-1024, r.stdout, nil
	})
	_ = stream.cmd.Process.Signal(syscall.SIGTERM)
	if out, err := stream.wait(); err != nil {
		t.Fatalf("wal-stream did not exit cleanly on SIGTERM: %v\n%s", err, out)
	}
	standby.StopImmediate(t)

	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, append([]string{"restore", "--pgdata", dir}, sel...)...)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if n := c.QueryInt(t, "SELECT count(*) FROM t"); n != 250 {
		t.Fatalf("restored %d rows, want all 250 (both timelines)", n)
	}
}

// waitReplayed waits until standby has replayed all the WAL primary has written.
func waitReplayed(t *testing.T, primary, standby *pgtest.Cluster) {
	t.Helper()
	lsn := primary.QueryString(t, "SELECT pg_current_wal_lsn()::text")
	standby.WaitFor(t, "the standby to replay "+lsn, 60*time.Second, func() (bool, string, error) {
		ok, err := standby.TryQueryString("SELECT (pg_last_wal_replay_lsn() >= '" + lsn + "')::text")
		return ok == "true", "behind", err
	})
}

// Without --synchronous commits do not wait for the stream, and what a sudden loss of
// the primary (and of pgb) costs is at most the flush interval: every row committed
// two intervals before the loss is restored.
func TestAnAsynchronousStreamLosesAtMostTheFlushInterval(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := pgtest.NewCluster(t, pgtest.Options{})
	src.Start(t)
	const interval = 500 * time.Millisecond
	stream := startPGBReading(t, src.Env(), "wal-stream", "--repo", repo, "--flush-interval", interval.String())
	t.Cleanup(func() { _ = stream.cmd.Process.Kill(); _, _ = stream.wait() })
	stream.until(t, "streaming WAL", "that it streams")
	src.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	var committed []time.Time // when the commit of row i+1 returned
	for start := time.Now(); time.Since(start) < 6*interval; {
		src.Exec(t, "INSERT INTO t VALUES ($1)", len(committed)+1)
		committed = append(committed, time.Now())
	}
	lost := time.Now()
	_ = stream.cmd.Process.Kill()
	src.StopImmediate(t)
	_, _ = stream.wait()
	// The rows that must be there: those committed two intervals before the loss.
	must := 0
	for i, at := range committed {
		if at.Before(lost.Add(-2 * interval)) {
			must = i + 1
		}
	}
	if must == 0 {
		t.Fatalf("no commit was older than two flush intervals (%d rows)", len(committed))
	}
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, "restore", "--repo", repo, "--pgdata", dir)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	n := c.QueryInt(t, "SELECT count(*) FROM t")
	if maxID := c.QueryInt(t, "SELECT coalesce(max(id), 0) FROM t"); maxID != n {
		t.Fatalf("restored %d rows up to id %d: a hole", n, maxID)
	}
	if n < int64(must) {
		t.Fatalf("restored %d rows, want at least the %d committed %s before the loss (of %d)", n, must, 2*interval, len(committed))
	}
	t.Logf("%d rows committed, %d restored, %d required", len(committed), n, must)
}

// WAL the server removed while the stream was down and its slot gone is never
// skipped silently: the stream says so in an ERROR naming the range, goes on from
// what the server has, and pgb status shows the gap.
func TestWALLostWhileTheSlotWasGoneIsALoudErrorAndAGap(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := pgtest.NewCluster(t, pgtest.Options{Conf: []string{"min_wal_size = 32MB", "max_wal_size = 64MB"}})
	src.Start(t)
	stream := startPGBReading(t, src.Env(), "wal-stream", "--repo", repo, "--flush-interval", "100ms")
	t.Cleanup(func() { _ = stream.cmd.Process.Kill(); _, _ = stream.wait() })
	stream.until(t, "streaming WAL", "that it streams")
	src.Exec(t, "CREATE TABLE t (id int)")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	_ = stream.cmd.Process.Kill()
	_, _ = stream.wait()
	// The slot is dropped while the stream is down, and the server moves on: the
	// segments written meanwhile are removed at the checkpoints.
	src.Exec(t, "SELECT pg_drop_replication_slot('pgb')")
	for i := 0; i < 8; i++ {
		src.Exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
		src.SwitchWAL(t)
		src.Exec(t, "CHECKPOINT")
	}
	stream = startPGBReading(t, src.Env(), "wal-stream", "--repo", repo, "--flush-interval", "100ms")
	line := stream.until(t, "no longer on the server", "that WAL was lost")
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "from=") || !strings.Contains(line, "to=") {
		t.Fatalf("the loss is not an ERROR naming the range: %s", line)
	}
	stream.until(t, "streaming WAL", "that it streams from what the server has")
	src.SwitchWAL(t)
	var st struct {
		Gaps []json.RawMessage `json:"gaps"`
	}
	src.WaitFor(t, "status to show the gap", 60*time.Second, func() (bool, string, error) {
		r := pgb(t, "", nil, "status", "--json", "--repo", repo)
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			return false, r.String(), nil
		}
		return len(st.Gaps) > 0, r.stdout, nil
	})
}
