package cmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/waltest"
)

type outcome struct {
	code           int
	stdout, stderr string
}

func pgb(t *testing.T, args ...string) outcome {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"pgb"}, args...), Build{Version: "test"}, &out, &errb)
	return outcome{code, out.String(), errb.String()}
}

// isolate clears every variable pgb reads, so the developer's environment cannot leak in.
func isolate(t *testing.T) {
	for _, s := range config.All() {
		for _, e := range s.Env {
			t.Setenv(e, "")
			if err := os.Unsetenv(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("PGB_CONFIG", "") // never read /etc/pgb/pgb.yaml in tests
	// Cloud SDKs must never reach for instance metadata from a test.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
}

func TestPrecedenceFlagOverEnvOverFile(t *testing.T) {
	isolate(t)
	base := t.TempDir()
	repoFile, repoEnv, repoFlag := filepath.Join(base, "file"), filepath.Join(base, "env"), filepath.Join(base, "flag")
	cfg := filepath.Join(base, "pgb.yaml")
	if err := os.WriteFile(cfg, []byte("repo: "+repoFile+"\ncompression: zstd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := waltest.DataDir(t, 42)
	seg := waltest.WriteWAL(t, dir, "000000010000000000000001", waltest.Segment(42, 1))
	stored := func(repo string) bool {
		_, err := os.Stat(filepath.Join(repo, "wal", "0000000100000000", "000000010000000000000001"))
		return err == nil
	}

	t.Setenv("PGB_CONFIG", cfg)
	t.Setenv("PGB_REPO", repoEnv)
	if r := pgb(t, "wal-push", "--pgdata", dir, "--repo", repoFlag, seg); r.code != 0 {
		t.Fatalf("flag: %+v", r)
	}
	if !stored(repoFlag) || stored(repoEnv) || stored(repoFile) {
		t.Fatal("the flag did not win")
	}
	if r := pgb(t, "wal-push", "--pgdata", dir, seg); r.code != 0 {
		t.Fatalf("env: %+v", r)
	}
	if !stored(repoEnv) || stored(repoFile) {
		t.Fatal("the environment did not beat the file")
	}
	if err := os.Unsetenv("PGB_REPO"); err != nil {
		t.Fatal(err)
	}
	if r := pgb(t, "wal-push", "--pgdata", dir, seg); r.code != 0 {
		t.Fatalf("file: %+v", r)
	}
	if !stored(repoFile) {
		t.Fatal("the config file's repo was not used")
	}
	// The file's compression applied: the object's header names zstd (codec id 2).
	b, _ := os.ReadFile(filepath.Join(repoFile, "wal", "0000000100000000", "000000010000000000000001"))
	if len(b) < 8 || b[5] != 2 {
		t.Fatalf("object header %x, want codec zstd from the config file", b[:8])
	}
}

func TestErrorsAreOneLineWithExitCodes(t *testing.T) {
	isolate(t)
	repo := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"wal-push"}, exitUsage, "wal-push wants 1 argument(s): PATH"},
		{[]string{"wal-push", "--compression", "brotli", "--repo", repo, "x"}, exitUsage, `unknown compression "brotli"`},
		{[]string{"wal-push", "--nope", "x"}, exitUsage, "unknown flag --nope for wal-push"},
		{[]string{"nosuchcommand"}, exitUsage, `unknown command "nosuchcommand"`},
		{[]string{"wal-push", "--repo", "ftp://bucket/p", "--pgdata", waltest.DataDir(t, 1), "000000010000000000000001"}, exitError, `unknown scheme "ftp"`},
		{[]string{"wal-push", "--repo", "s3://", "x"}, exitError, "no bucket"},
		{[]string{"wal-fetch", "--repo", repo}, exitRecoveryMustStop, "wants 2 argument(s)"},
		{[]string{"wal-fetch", "--nope", "a", "b"}, exitRecoveryMustStop, "unknown flag --nope for wal-fetch"},
		{[]string{"wal-fetch", "--repo", "s3://b/p", "--s3-endpoint", "http://127.0.0.1:1", "--s3-access-key-id", "a",
			"--s3-secret-access-key", "b", "--storage-retries", "1", "000000010000000000000001", "x"},
			exitRecoveryMustStop, "127.0.0.1:1"},
	}
	for _, c := range cases {
		r := pgb(t, c.args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("pgb %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, r.code, r.stderr, c.code, c.want)
		}
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "pgb: error: ") {
			t.Errorf("pgb %v: last line %q is not the error line", c.args, last)
		}
	}
}

func TestJSONLogFormatForErrors(t *testing.T) {
	isolate(t)
	r := pgb(t, "wal-push", "--log-format", "json", "--repo", t.TempDir(), "/nonexistent/000000010000000000000001")
	if r.code == 0 || !strings.HasPrefix(strings.TrimSpace(r.stderr), `{"`) || !strings.Contains(r.stderr, `"level":"ERROR"`) {
		t.Fatalf("json error: %+v", r)
	}
}

func TestEveryCommandDocumentsItsSettings(t *testing.T) {
	isolate(t)
	for _, c := range newApp(Build{}, nil, nil).Commands {
		r := pgb(t, c.Name, "--help")
		if r.code != 0 {
			t.Fatalf("%s --help: %+v", c.Name, r)
		}
		for _, f := range c.Flags {
			name := f.Names()[0]
			if name == "help" {
				continue
			}
			s, isSetting := config.Lookup(name)
			if !strings.Contains(r.stdout, "--"+name) {
				t.Errorf("%s --help lacks --%s", c.Name, name)
			}
			if isSetting && !strings.Contains(r.stdout, s.Env[0]) {
				t.Errorf("%s --help lacks --%s or $%s", c.Name, name, s.Env[0])
			}
		}
	}
}

func TestSecretOnTheCommandLineIsWarnedAbout(t *testing.T) {
	isolate(t)
	r := pgb(t, "check", "--repo", t.TempDir(), "--pg-dsn", "host=127.0.0.1 port=1 password=hunter2 connect_timeout=1")
	if !strings.Contains(r.stderr, "secret was given on the command line") {
		t.Errorf("no warning: %+v", r)
	}
	if strings.Contains(r.stderr+r.stdout, "hunter2") {
		t.Errorf("the password was echoed: %+v", r)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
	t.Setenv("PGB_PG_DSN", "password=hunter4")
	for _, c := range newApp(Build{}, nil, nil).Commands {
		r := pgb(t, c.Name, "--help")
		if strings.Contains(r.stdout+r.stderr, "hunter") {
			t.Errorf("%s --help shows a secret from the environment:\n%s", c.Name, r.stdout)
		}
	}
}

// The progress line's rate counts from the copy's first report, not from when the
// command started (a spread checkpoint can take minutes before the copy).
func TestProgressRateStartsWithTheCopy(t *testing.T) {
	var m rateMeter
	t0 := time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC) // ten minutes of checkpoint before
	if r := m.rate(t0, 0); r != 0 {
		t.Errorf("first reading: rate %v, want 0", r)
	}
	if r := m.rate(t0.Add(2*time.Second), 100<<20); r != 50<<20 {
		t.Errorf("rate after 100 MiB in 2s = %v, want %v", r, 50<<20)
	}
}

// The progress line says bytes, share, rate and the time left at that rate.
func TestProgressLineSaysTimeLeft(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		rate        float64
		want        string
	}{
		{256 << 20, 1 << 30, 64 << 20, "backup: 256.0 MiB of 1.0 GiB (25%), 64 MB/s, 12s left"},
		{0, 1 << 30, 0, "backup: 0 B of 1.0 GiB (0%), 0 MB/s, time left unknown"},
		{1 << 30, 1 << 30, 64 << 20, "backup: 1.0 GiB of 1.0 GiB (100%), 64 MB/s   "},
		{1, 1 << 40, 10, "backup: 1 B of 1.0 TiB (0%), 0 MB/s, more than 100 days left"}, // a stalled copy
	} {
		if got := progressLine("backup", c.done, c.total, c.rate); !strings.Contains(got, c.want) || !strings.HasPrefix(got, "\r") {
			t.Errorf("progressLine(%d, %d, %v) = %q, want %q", c.done, c.total, c.rate, got, c.want)
		}
	}
}

func TestConfigFileWithASecretReadableByOthersIsRefused(t *testing.T) {
	isolate(t)
	repo := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "pgb.yaml")
	if err := os.WriteFile(cfg, []byte("repo: "+repo+"\ns3-secret-access-key: hunter5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	r := pgb(t, "--config", cfg, "backup-list")
	if r.code != 255 || !strings.Contains(r.stderr, cfg) || !strings.Contains(r.stderr, "chmod 600") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("a world-readable config file holding a secret is not refused in one line: %+v", r)
	}
	r2 := pgb(t, "--config", cfg, "backup-list", "--allow-readable-config")
	if r2.code != 0 || !strings.Contains(r2.stderr, "level=WARN") || !strings.Contains(r2.stderr, "chmod 600") {
		t.Errorf("--allow-readable-config does not turn the refusal into a warning: %+v", r2)
	}
	if strings.Contains(r.stderr+r.stdout+r2.stderr+r2.stdout, "hunter5") {
		t.Errorf("the secret was echoed: %+v %+v", r, r2)
	}
}

// archive_command runs in the data directory: that directory, not a pgdata from a
// config file shared with other clusters (or written for backup-push), says which
// cluster the WAL belongs to. An explicit --pgdata or PGDATA still wins.
func TestWALPushUnderArchiveCommandTrustsTheWorkingDirectoryOverTheConfigFile(t *testing.T) {
	isolate(t)
	repo := t.TempDir()
	dir, other := waltest.DataDir(t, 42), waltest.DataDir(t, 7)
	cfg := filepath.Join(t.TempDir(), "pgb.yaml")
	if err := os.WriteFile(cfg, []byte("repo: "+repo+"\npgdata: "+other+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waltest.WriteWAL(t, dir, "000000010000000000000001", waltest.Segment(42, 1))
	t.Chdir(dir)
	if r := pgb(t, "--config", cfg, "wal-push", "pg_wal/000000010000000000000001"); r.code != 0 {
		t.Fatalf("wal-push from the data directory with another cluster's pgdata in the config file: %+v", r)
	}
	seg2 := waltest.WriteWAL(t, dir, "000000010000000000000002", waltest.Segment(42, 2))
	if r := pgb(t, "--config", cfg, "wal-push", "--pgdata", other, seg2); r.code == 0 || !strings.Contains(r.stderr, "cluster") {
		t.Errorf("an explicit --pgdata of another cluster was not used: %+v", r)
	}
}
