package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// Two repositories, a local one and an offsite S3 one (versitygw), added to archiving
// later: a backup whose base it cannot have is taken there anew. The offsite one goes
// down while the cluster archives: archive_command fails, so PostgreSQL keeps the WAL
// and retries, while the local one already has it; once the store is back both end up
// with every segment. A backup-push to both reads the data directory once: an
// incremental backup into local, copied with its full one into offsite. Then the
// local repository is lost whole: a point-in-time restore from the offsite one alone
// (from the copied chain) recovers every row committed before the target.
func TestArchivingToTwoRepositoriesSurvivesAnOutageAndEitherRestores(t *testing.T) {
	pgtest.RequireParallel(t)
	local := newRepo(t)
	endpoint, access, secret, bucket := s3test.StartVersityGW(t)
	proxy := startFaultProxy(t, endpoint, 0, 7)
	cfg := configFile(t, "storage-retries: 2\n"+
		"repos:\n"+
		"  - name: local\n"+
		"    repo: "+local+"\n"+
		"  - name: offsite\n"+
		"    repo: s3://"+bucket+"/cluster1\n"+
		"    s3-endpoint: "+proxy.URL+"\n"+
		"    s3-region: us-east-1\n"+
		"    s3-force-path-style: true\n"+
		"    s3-access-key-id: "+access+"\n"+
		"    s3-secret-access-key: "+secret+"\n")
	with := func(args ...string) []string { return append(args, cfg...) }
	// At first only the local repository is archived into, and backed up.
	src := archivingClusterWith(t, append([]string{"--repo", "local"}, cfg...))
	src.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	mustPGB(t, "", src.Env(), with("backup-push", "--fast", "--repo", "local")...)
	// The offsite repository is added to archiving. An incremental backup into local
	// cannot be copied there (its base's WAL never reached it): offsite gets a backup
	// of its own.
	src.Exec(t, "ALTER SYSTEM SET archive_command = '"+pgtest.BuildPGB(t)+" wal-push "+strings.Join(cfg, " ")+" %p'")
	src.Exec(t, "SELECT pg_reload_conf()")
	src.WaitArchived(t, src.SwitchWAL(t), 60*time.Second)
	own := mustPGB(t, "", src.Env(), with("backup-push", "--fast", "--incremental")...)
	if !strings.Contains(own.stderr, "taking a backup of this repository's own") || strings.Count(own.stdout, "complete (full backup") != 1 ||
		strings.Count(own.stdout, "complete (incremental backup on") != 1 {
		t.Fatalf("backup-push with a base offsite cannot have: want an incremental backup into local and a full one of offsite's own: %s", own)
	}
	mustPGB(t, "", src.Env(), with("backup-push", "--fast", "--full", "--repo", "local")...) // offsite has its WAL, not the backup

	proxy.setDown(true)
	for i := 1; i <= 50; i++ {
		src.Exec(t, "INSERT INTO t VALUES ($1)", i)
	}
	src.SwitchWAL(t)
	var seg string // the segment archive_command fails for
	src.WaitFor(t, "archive_command failing while the offsite store is down", 120*time.Second, func() (bool, string, error) {
		s, err := src.TryArchiverStats()
		seg = s.LastFailedWAL
		return err == nil && s.FailedCount > 0, "not failed yet", err
	})
	if _, err := os.Stat(filepath.Join(local, "wal", seg[:16], seg)); err != nil {
		t.Fatalf("the local repository does not have the segment the offsite one failed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(src.DataDir(), "pg_wal", "archive_status", seg+".ready")); err != nil {
		t.Fatalf("PostgreSQL does not keep the failed segment for a retry: %v", err)
	}

	proxy.setDown(false)
	src.WaitArchived(t, src.SwitchWAL(t), 120*time.Second) // the retries caught up
	// One read of the data directory for both: an incremental backup into local, copied
	// into offsite with the full backup it needs there.
	push := mustPGB(t, "", src.Env(), with("backup-push", "--fast", "--incremental")...)
	if !strings.Contains(push.stdout, "== repository offsite") || strings.Count(push.stdout, "(copied from repository local") != 2 ||
		!strings.Contains(push.stdout, "complete (incremental backup on") {
		t.Fatalf("backup-push did not take an incremental backup into local and copy it, with its full one, into offsite: %s", push)
	}
	incr := regexp.MustCompile(`backup (\S+) complete \(incremental`).FindStringSubmatch(push.stdout)[1]
	for i := 51; i <= 100; i++ {
		src.Exec(t, "INSERT INTO t VALUES ($1)", i)
	}
	target := src.QueryString(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00')")
	src.Exec(t, "SELECT pg_sleep(0.01)") // the next commit's time is after the target's
	src.Exec(t, "INSERT INTO t VALUES (101)")
	src.WaitArchived(t, src.SwitchWAL(t), 120*time.Second)

	// Both repositories hold every segment: no gap in either, the same last segment.
	var doc struct {
		Repositories []struct {
			Name   string `json:"name"`
			Result struct {
				Windows []struct {
					LastSegment string `json:"last_segment"`
				} `json:"windows"`
				Gaps []json.RawMessage `json:"gaps"`
			} `json:"result"`
		} `json:"repositories"`
	}
	st := mustPGB(t, "", nil, with("status", "--json")...)
	if err := json.Unmarshal([]byte(st.stdout), &doc); err != nil || len(doc.Repositories) != 2 {
		t.Fatalf("status --json: %v\n%s", err, st.stdout)
	}
	var last []string
	for _, r := range doc.Repositories {
		if len(r.Result.Gaps) != 0 || len(r.Result.Windows) != 1 {
			t.Fatalf("repository %s: %d gaps, %d windows, want one window without gaps:\n%s", r.Name, len(r.Result.Gaps), len(r.Result.Windows), st.stdout)
		}
		last = append(last, r.Result.Windows[0].LastSegment)
	}
	if last[0] != last[1] {
		t.Fatalf("the repositories end at different segments: %v", last)
	}

	// The local repository is lost: the restore goes on from the offsite one alone.
	if err := os.RemoveAll(local); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	r := mustPGB(t, "", nil, with("restore", "--pgdata", dir, "--target-time", target, "--target-action", "promote")...)
	if !strings.Contains(r.stdout, "restored backup "+incr) {
		t.Errorf("restore did not restore the copied incremental backup %s: %s", incr, r)
	}
	if !strings.Contains(r.stderr, "repo=local") {
		t.Errorf("restore did not say the local repository cannot be opened: %s", r)
	}
	auto, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if err != nil || !strings.Contains(string(auto), "--repo offsite ") || strings.Contains(string(auto), "local") {
		t.Fatalf("restore_command does not fetch from the offsite repository alone (%v):\n%s", err, auto)
	}
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 120*time.Second)
	if n := c.QueryInt(t, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("restored %d rows, want the 100 committed before the target", n)
	}
}
