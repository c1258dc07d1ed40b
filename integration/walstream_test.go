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
