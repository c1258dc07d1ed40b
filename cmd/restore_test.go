package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/restore"
)

// The restore_command PostgreSQL runs in its own environment carries the repository
// settings restore got by flag or environment, the config file, and no secret.
func TestRestoreCommandCarriesSettingsFromFlagsAndEnvironment(t *testing.T) {
	isolate(t)
	file := t.TempDir() + "/pgb conf.yaml"
	if err := os.WriteFile(file, []byte("s3-access-key-id: AKIA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	given := map[string]string{ // as flags and environment give them
		config.KeyConfig:            file,
		config.KeyRepo:              "s3://bucket/prod",
		config.KeyS3Endpoint:        "http://127.0.0.1:7070",
		config.KeyS3ForcePathStyle:  "true",
		config.KeyS3Region:          "eu-west-1",
		config.KeyS3SecretAccessKey: "s3cr3t",
		config.KeyS3StorageClass:    "it's",
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := given[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cmd, secrets, err := (&env{cfg: cfg}).restoreCommand(cfg.Repo)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want := shellQuote(self) + " wal-fetch --repo s3://bucket/prod --config '" + file + "' --s3-endpoint=http://127.0.0.1:7070 " +
		"--s3-region=eu-west-1 --s3-force-path-style=true '--s3-storage-class=it'\"'\"'s' %f %p"
	if cmd != want {
		t.Errorf("restore_command =\n%s\nwant\n%s", cmd, want)
	}
	if strings.Contains(cmd, "s3cr3t") || len(secrets) != 1 || secrets[0] != config.KeyS3SecretAccessKey {
		t.Errorf("secrets: command %q, reported %q", cmd, secrets)
	}
}

// PostgreSQL reads every % in restore_command as a placeholder: a % in a value (the
// repository, an endpoint, the config file's path) is written as %%, and only the
// trailing %f %p stay placeholders.
func TestRestoreCommandEscapesPercentInValues(t *testing.T) {
	isolate(t)
	file := t.TempDir() + "/100%pgb.yaml"
	must(t, os.WriteFile(file, []byte("s3-region: us-east-1\n"), 0o600))
	given := map[string]string{
		config.KeyConfig:     file,
		config.KeyRepo:       "s3://bucket/50%p",
		config.KeyS3Endpoint: "http://host/%f",
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := given[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cmd, _, err := (&env{cfg: cfg}).restoreCommand(cfg.Repo)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want := strings.ReplaceAll(shellQuote(self), "%", "%%") + " wal-fetch --repo '" + "s3://bucket/50%%p' --config '" +
		strings.ReplaceAll(file, "%", "%%") + "' '--s3-endpoint=http://host/%%f' %f %p"
	if cmd != want {
		t.Errorf("restore_command =\n%s\nwant\n%s", cmd, want)
	}
}

// As root, restore warns when the server's OS user cannot read the config file that
// restore_command names, and says what to run.
func TestRestoreWarnsWhenTheServerCannotReadTheConfigFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	file := filepath.Join(dir, "pgb.yaml")
	must(t, os.WriteFile(file, []byte("repo: /r\n"), 0o600))
	owner := &restore.Owner{UID: 4242, GID: 4242}
	if w := configUnreadable(file, owner); !strings.Contains(w, "chown 4242 "+file) {
		t.Errorf("warning %q does not say to chown %s", w, file)
	}
	must(t, os.Chmod(file, 0o644))
	if w := configUnreadable(file, owner); w != "" {
		t.Errorf("readable file: warning %q", w)
	}
	if w := configUnreadable(file, nil); w != "" {
		t.Errorf("not root (no owner chosen): warning %q", w)
	}
}

// must fails the test on a setup error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The identity file is read by restore_command too: restore warns when the server's
// OS user cannot read it.
func TestRestoreWarnsWhenTheServerCannotReadTheIdentityFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	id := filepath.Join(dir, "identity.txt")
	must(t, os.WriteFile(id, []byte("# key\n"), 0o600))
	owner := &restore.Owner{UID: 4242, GID: 4242}
	e := &env{cfg: config.Config{Encryption: config.Encryption{IdentityFile: id}}}
	if w := e.serverCannotRead(owner); !strings.Contains(w, "chown 4242 "+id) || !strings.Contains(w, "encryption-identity-file") {
		t.Errorf("warning %q does not say to chown %s", w, id)
	}
	must(t, os.Chown(id, 4242, 4242))
	if w := e.serverCannotRead(owner); w != "" {
		t.Errorf("readable identity file: warning %q", w)
	}
}

// restore_command carries the identity file (by absolute path) and never the MAC key
// or the passphrase: those are reported for the server to provide.
func TestRestoreCommandCarriesTheIdentityFileAndNoEncryptionSecret(t *testing.T) {
	isolate(t)
	t.Chdir(t.TempDir())
	given := map[string]string{
		config.KeyRepo:                   "/var/lib/pgb",
		config.KeyEncryptionIdentityFile: "keys/id.txt",
		config.KeyEncryptionMACKey:       "pgb-mac-key-00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		config.KeyEncryptionPassphrase:   "correct horse battery staple",
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := given[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cmd, secrets, err := (&env{cfg: cfg}).restoreCommand(cfg.Repo)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if !strings.Contains(cmd, "--encryption-identity-file="+filepath.Join(wd, "keys/id.txt")) {
		t.Errorf("restore_command %q does not carry the identity file by absolute path", cmd)
	}
	if strings.Contains(cmd, "00112233") || strings.Contains(cmd, "horse") || strings.Join(secrets, ",") != config.KeyEncryptionMACKey+","+config.KeyEncryptionPassphrase {
		t.Errorf("secrets: command %q, reported %q", cmd, secrets)
	}
}
