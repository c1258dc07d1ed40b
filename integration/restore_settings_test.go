package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// Issue 7 item 14: settings given to pgb restore by flag or environment (an S3
// endpoint, region, path style) reach the restore_command PostgreSQL runs in its own
// environment; secrets never are written into postgresql.auto.conf.
func TestRestoreFromS3WithSettingsGivenOnlyToRestore(t *testing.T) {
	pgtest.Require(t)
	endpoint, access, secret, bucket := s3test.StartVersityGW(t)
	repo := "repo: s3://" + bucket + "/cluster1\n"
	full := configFile(t, repo+"s3-endpoint: "+endpoint+"\ns3-region: us-east-1\ns3-force-path-style: true\n"+
		"s3-access-key-id: "+access+"\ns3-secret-access-key: "+secret+"\n")
	s := &scenario{sel: full}
	s.src = archivingClusterWith(t, full)
	s.src.Exec(t, "CREATE TABLE orders (id bigserial PRIMARY KEY, pad text)")
	s.src.Exec(t, "INSERT INTO orders (pad) SELECT 'before the backup' FROM generate_series(1, 100)")
	s.backup(t)
	s.src.Exec(t, "INSERT INTO orders (pad) SELECT 'after the backup' FROM generate_series(1, 20)")
	mustPGB(t, "", s.src.Env(), s.cmd("restore-point", "checked")...)
	want := s.src.QueryInt(t, "SELECT count(*) FROM orders")
	s.src.Exec(t, "INSERT INTO orders (pad) SELECT 'after the point' FROM generate_series(1, 7)")
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 60*time.Second)

	// restore gets endpoint, region and path style only from its flags and environment;
	// the credentials are in its config file, which the server can read too.
	env := []string{"PGB_S3_FORCE_PATH_STYLE=true", "AWS_REGION=us-east-1"}
	restore := func(sel []string, extraEnv ...string) (string, result) {
		dir := filepath.Join(pgtest.TempDir(t), "restored")
		args := append(append([]string{"restore"}, sel...), "--s3-endpoint", endpoint, "--pgdata", dir, "--target-name", "checked")
		r := mustPGB(t, "", append(env, extraEnv...), args...)
		auto, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(auto), secret) {
			t.Fatalf("postgresql.auto.conf holds the secret key:\n%s", auto)
		}
		if !strings.Contains(string(auto), "--s3-endpoint="+endpoint) || !strings.Contains(string(auto), "--s3-force-path-style=true") {
			t.Fatalf("restore_command lacks the settings given to restore:\n%s", auto)
		}
		return dir, r
	}
	creds := configFile(t, repo+"s3-access-key-id: "+access+"\ns3-secret-access-key: "+secret+"\n")
	dir, _ := restore(creds)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryPaused(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM orders"); got != want {
		t.Fatalf("rows at the restore point = %d, want %d", got, want)
	}

	// A secret that restore got only from its environment is not written down, and
	// restore says where the server must find it.
	noSecret := configFile(t, repo+"s3-access-key-id: "+access+"\n")
	_, r := restore(noSecret, "AWS_SECRET_ACCESS_KEY="+secret)
	if !strings.Contains(r.stdout, "AWS_SECRET_ACCESS_KEY came from the environment: the server needs it in its environment or in the config file") {
		t.Fatalf("restore does not say what the server needs:\n%s", r)
	}
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Fatalf("restore printed the secret:\n%s", r)
	}
}
