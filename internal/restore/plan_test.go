package restore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
)

// damage stores a manifest that cannot be read for backup name.
func damage(t *testing.T, st storage.Store, name string) {
	t.Helper()
	if err := st.Put(context.Background(), repo.ManifestKey(name), strings.NewReader("not a manifest"), storage.PutOptions{Size: 14}); err != nil {
		t.Fatal(err)
	}
}

func TestPlanSkipsADamagedBackupWithAWarning(t *testing.T) {
	fx := newChoiceFixture(t)
	damage(t, fx.st, "b9")
	var logged bytes.Buffer
	m, target, err := Plan(context.Background(), repo.New(fx.st, repo.Options{}), slog.New(slog.NewTextHandler(&logged, nil)), "", &Target{Kind: ToEnd, Timeline: "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "b3" || target.Kind != ToEnd {
		t.Errorf("Plan = %s, %v; want b3 to the end", m.Name, target)
	}
	if !strings.Contains(logged.String(), `msg="skipping a damaged backup" backup=b9`) {
		t.Errorf("no warning about b9: %q", logged.String())
	}
}

func TestPlanRefusesANamedDamagedBackup(t *testing.T) {
	fx := newChoiceFixture(t)
	damage(t, fx.st, "b9")
	_, _, err := Plan(context.Background(), repo.New(fx.st, repo.Options{}), slog.New(slog.DiscardHandler), "b9", &Target{Kind: ToEnd})
	if !errors.Is(err, repo.ErrDamagedBackup) || !strings.Contains(err.Error(), "backup b9 cannot be restored") ||
		!strings.Contains(err.Error(), "pick another (pgb backup-list shows them)") {
		t.Errorf("Plan of a damaged backup = %v", err)
	}
}

// The target comes back as Choose settled it: what recovery is told to follow is
// what was checked.
func TestPlanReturnsTheSettledTarget(t *testing.T) {
	fx := newChoiceFixture(t)
	m, target, err := Plan(context.Background(), repo.New(fx.st, repo.Options{}), slog.New(slog.DiscardHandler), "", &Target{Kind: ToXID, XID: 2500, Timeline: "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "b2" || target.Timeline != "1" || target.Kind != ToXID || target.XID != 2500 {
		t.Errorf("Plan = %s, %+v; want b2, XID 2500 on timeline 1", m.Name, target)
	}
}

// Files only (backup-fetch): no recovery follows, so a history that forked does not
// stop it, while a restore to the latest timeline is refused.
func TestPlanForFilesOnlyIgnoresTheTimelines(t *testing.T) {
	st := history(t, seg("000000010000000000000002"), [2]string{"00000002.history", "1\t0/2F00000\tx\n"}, seg("000000010000000000000003"))
	putBackups(t, st.Store, []tlBackup{{"b1", 1, 0x2000028, 0x2000100}})
	ctx, log := context.Background(), slog.New(slog.DiscardHandler)
	if _, _, err := Plan(ctx, repo.New(st, repo.Options{}), log, "", &Target{Kind: ToEnd, Timeline: "latest"}); !errors.Is(err, ErrAmbiguousTimeline) {
		t.Fatalf("restore to the latest timeline of a forked history = %v, want ErrAmbiguousTimeline", err)
	}
	m, target, err := Plan(ctx, repo.New(st, repo.Options{}), log, "b1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "b1" || target.Kind != ToEnd || target.Timeline != "current" {
		t.Errorf("files only = %s, %+v", m.Name, target)
	}
}

func TestPlanFailsWhenTheBackupsCannotBeListed(t *testing.T) {
	fx := newChoiceFixture(t)
	st := faulty.New(fx.st, faulty.Rule{Op: faulty.List, Key: "backups/"})
	if _, _, err := Plan(context.Background(), repo.New(st, repo.Options{}), slog.New(slog.DiscardHandler), "", &Target{Kind: ToEnd}); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("Plan with the listing failing = %v", err)
	}
}

// loadConfig resolves the configuration as pgb does, from settings given by flag or
// environment (given) and the config file they name.
func loadConfig(t *testing.T, given map[string]string) config.Config {
	t.Helper()
	if _, ok := given[config.KeyConfig]; !ok {
		given[config.KeyConfig] = "" // never /etc/pgb/pgb.yaml
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := given[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// What PostgreSQL runs: %f and %p replaced, %% made %, through /bin/sh. The words the
// shell hands pgb must be exactly the values restore meant, whatever they hold.
func TestRestoreCommandSurvivesTheShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, `it's a "config" 100%p.yaml`)
	if err := os.WriteFile(conf, []byte("s3-region: eu-west-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "pgb $HOME `x` dir", "pgb")
	cfg := loadConfig(t, map[string]string{
		config.KeyConfig:            conf,
		config.KeyRepo:              "s3://bucket/it's %f; rm -rf /",
		config.KeyS3Endpoint:        "http://h:1/a b",
		config.KeyS3SecretAccessKey: "s3cr3t",
		config.KeyStorageTimeout:    "30s",
		config.KeyStorageRetries:    "5",
		config.KeyLogLevel:          "debug", // not a repository setting: not passed on
	})
	cmd, secrets := RestoreCommand(self, cfg)
	if strings.Contains(cmd, "s3cr3t") || !reflect.DeepEqual(secrets, []string{config.KeyS3SecretAccessKey}) {
		t.Errorf("secret written or not reported: %q, %q", cmd, secrets)
	}
	// PostgreSQL's substitution: %f, %p, and %% to %.
	run := strings.NewReplacer("%%", "%", "%f", "000000010000000000000003", "%p", "pg_wal/RECOVERYXLOG").Replace(cmd)
	// Print the words one per line instead of running pgb.
	out, err := exec.Command(sh, "-c", `printf '%s\n' `+strings.TrimPrefix(run, ShellQuote(self))).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", run, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := []string{"wal-fetch", "--repo", "s3://bucket/it's %f; rm -rf /", "--config", conf,
		"--s3-endpoint=http://h:1/a b", "--storage-timeout=30s", "--storage-retries=5",
		"000000010000000000000003", "pg_wal/RECOVERYXLOG"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restore_command %s\nreaches pgb as %q\nwant %q", cmd, got, want)
	}
	if first, _, _ := strings.Cut(run, " wal-fetch"); first != ShellQuote(self) {
		t.Errorf("restore_command does not start with pgb's path quoted: %s", cmd)
	}
}

func TestRestoreCommandWords(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "pgb.yaml")
	if err := os.WriteFile(conf, []byte("s3-endpoint: http://from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(mustGetwd(t), conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		given map[string]string
		want  string
	}{
		{"a directory repository, nothing else", map[string]string{config.KeyRepo: "/var/lib/pgb"},
			"/usr/bin/pgb wal-fetch --repo /var/lib/pgb %f %p"},
		{"settings from the config file travel as --config, by absolute path", map[string]string{config.KeyRepo: "s3://b/p", config.KeyConfig: rel},
			"/usr/bin/pgb wal-fetch --repo s3://b/p --config " + conf + " %f %p"},
		{"a flag equal to its default still overrides the file", map[string]string{config.KeyRepo: "s3://b/p", config.KeyConfig: conf, config.KeyS3ForcePathStyle: "false"},
			"/usr/bin/pgb wal-fetch --repo s3://b/p --config " + conf + " --s3-force-path-style=false %f %p"},
		{"GCS settings", map[string]string{config.KeyRepo: "gs://b/p", config.KeyGCSEndpoint: "http://127.0.0.1:4443/storage/v1/"},
			"/usr/bin/pgb wal-fetch --repo gs://b/p --gcs-endpoint=http://127.0.0.1:4443/storage/v1/ %f %p"},
		// PostgreSQL runs restore_command in the data directory, not where restore ran.
		{"a key file given by a relative path is passed by its absolute path", map[string]string{config.KeyRepo: "gs://b/p", config.KeyGCSCredentialsFile: rel},
			"/usr/bin/pgb wal-fetch --repo gs://b/p --gcs-credentials-file=" + conf + " %f %p"},
		{"an empty value is one word", map[string]string{config.KeyRepo: "s3://b/p", config.KeyS3StorageClass: ""},
			"/usr/bin/pgb wal-fetch --repo s3://b/p --s3-storage-class= %f %p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, secrets := RestoreCommand("/usr/bin/pgb", loadConfig(t, tc.given))
			if cmd != tc.want || len(secrets) != 0 {
				t.Errorf("restore_command =\n%s\nwant\n%s (secrets %q)", cmd, tc.want, secrets)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/pgb":       "/usr/bin/pgb",
		"--s3-region=eu-1":   "--s3-region=eu-1",
		"":                   "''",
		"a b":                "'a b'",
		"it's":               `'it'"'"'s'`,
		"$HOME":              "'$HOME'",
		"a;b":                "'a;b'",
		"50%":                "'50%'",
		"x\ny":               "'x\ny'",
		"s3://b/p?x=1&y=2":   "'s3://b/p?x=1&y=2'",
		"user@host:/path,+x": "user@host:/path,+x",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
