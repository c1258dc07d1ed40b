package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func src(m map[string]string) Source {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pgb.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load(src(map[string]string{KeyConfig: ""}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Compression != "lz4" || c.CompressionLevel != 0 || c.LogLevel != "info" || c.LogFormat != "text" ||
		c.StorageTimeout != 60*time.Second || c.StorageRetries != 5 || c.Repo != "" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestSourceBeatsFileBeatsDefault(t *testing.T) {
	file := writeFile(t, "repo: /from/file\ncompression: zstd\ncompression-level: 3\nstorage-retries: 9\n")
	c, err := Load(src(map[string]string{KeyConfig: file, KeyRepo: "/from/flag"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo != "/from/flag" {
		t.Errorf("repo = %q, want the flag's", c.Repo)
	}
	if c.Compression != "zstd" || c.CompressionLevel != 3 || c.StorageRetries != 9 {
		t.Errorf("file values not applied: %+v", c)
	}
	if c.LogLevel != "info" {
		t.Errorf("default lost: %+v", c)
	}
	if c.File != file {
		t.Errorf("File = %q", c.File)
	}
}

func TestBadValuesAreNamed(t *testing.T) {
	cases := map[string]struct {
		vals map[string]string
		want string
	}{
		"codec":    {map[string]string{KeyCompression: "gzip"}, `unknown compression "gzip"`},
		"level":    {map[string]string{KeyCompression: "lz4", KeyCompressionLevel: "12"}, "lz4 compression level 12"},
		"not int":  {map[string]string{KeyStorageRetries: "many"}, `--storage-retries: "many" is not a whole number`},
		"duration": {map[string]string{KeyStorageTimeout: "10"}, `--storage-timeout: "10" is not a positive duration`},
		"log":      {map[string]string{KeyLogFormat: "xml"}, `log-format "xml"`},
		"retries":  {map[string]string{KeyStorageRetries: "0"}, "storage-retries 0"},
	}
	for name, c := range cases {
		c.vals[KeyConfig] = ""
		_, err := Load(src(c.vals))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
}

func TestFileErrors(t *testing.T) {
	for body, want := range map[string]string{
		"reop: /x\n":              `unknown key "reop"`,
		"repo: [a, b]\n":          `wants a single value`,
		"repo: /x\n  bad: : ":     "not valid YAML",
		"storage-timeout: true\n": "wants a duration",
	} {
		_, err := Load(src(map[string]string{KeyConfig: writeFile(t, body)}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %q: err = %v, want %q", body, err, want)
		}
	}
	_, err := Load(src(map[string]string{KeyConfig: "/nonexistent/pgb.yaml"}))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/pgb.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestEverySettingHasUsageAndEnv(t *testing.T) {
	for _, s := range All() {
		if s.Usage == "" || len(s.Env) == 0 {
			t.Errorf("setting %s lacks usage or env", s.Key)
		}
	}
}

// A command another process runs later (restore_command) gets the settings given by
// flag or environment, but never a secret.
func TestPassOn(t *testing.T) {
	file := writeFile(t, "repo: s3://b/p\ns3-access-key-id: from-file\ns3-storage-class: STANDARD_IA\n")
	c, err := Load(src(map[string]string{
		KeyConfig:            file,
		KeyS3Endpoint:        "http://127.0.0.1:7070",
		KeyS3ForcePathStyle:  "true",
		KeyS3Region:          "eu-west-1",
		KeyS3SecretAccessKey: "s3cr3t",
		KeyStorageRetries:    "5", // the default: nothing to pass on
		KeyStorageTimeout:    "90s",
		KeyS3SSE:             "aws:kms",
		KeyCompression:       "zstd", // not a repository setting
	}))
	if err != nil {
		t.Fatal(err)
	}
	flags, secrets := PassOn(c, append(RepoKeys(), KeyStorageTimeout, KeyStorageRetries))
	want := []string{"--s3-endpoint=http://127.0.0.1:7070", "--s3-region=eu-west-1", "--s3-force-path-style=true", "--s3-sse=aws:kms", "--storage-timeout=90s"}
	if strings.Join(flags, " ") != strings.Join(want, " ") {
		t.Errorf("flags = %q, want %q", flags, want)
	}
	if strings.Join(secrets, " ") != KeyS3SecretAccessKey {
		t.Errorf("secrets = %q, want the secret access key only", secrets)
	}
	for _, f := range flags {
		if strings.Contains(f, "s3cr3t") || strings.Contains(f, "from-file") {
			t.Errorf("flag %q carries a secret or a file setting", f)
		}
	}
}
