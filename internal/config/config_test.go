package config

import (
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
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
		c.StorageTimeout != 60*time.Second || c.StorageRetries != 5 || c.Repo != "" || c.S3.MaxParts != 10000 || c.S3.Checksum != "when-supported" {
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
		"parts":    {map[string]string{KeyS3MaxParts: "20000"}, "s3-max-parts 20000: want 1 to 10000"},
		"checksum": {map[string]string{KeyS3Checksum: "crc32"}, `s3-checksum "crc32": want when-supported or when-required`},
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

func TestParseSizeRefusesOverflow(t *testing.T) {
	for _, s := range []string{"9223372036854775807k", "8388608t", "9223372036854775808", "8589934592GiB"} {
		if n, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, n)
		}
	}
	for s, want := range map[string]int64{"8388607t": 8388607 << 40, "9223372036854775807": 1<<63 - 1, "16MiB": 16 << 20} {
		if n, err := ParseSize(s); err != nil || n != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, n, err, want)
		}
	}
	_, err := Load(src(map[string]string{KeyConfig: "", KeyPartSize: "9223372036854775807k"}))
	if err == nil || !strings.Contains(err.Error(), "9223372036854775807k") {
		t.Errorf("an overflowing part-size was accepted: %v", err)
	}
}

func TestFileValuesAreTakenAsWritten(t *testing.T) {
	file := writeFile(t, "s3-secret-access-key: 0123_4567\ns3-session-token: 0x1F\ns3-access-key-id: 1e3\n"+
		"s3-region: 'quoted'\ncompression-level: 3\ns3-force-path-style: true\nfast: FALSE\npg-dsn: ~\n")
	c, err := Load(src(map[string]string{KeyConfig: file}))
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.SecretAccessKey != "0123_4567" || c.S3.SessionToken != "0x1F" || c.S3.AccessKeyID != "1e3" || c.S3.Region != "quoted" {
		t.Errorf("values changed on the way: secret %q, token %q, key id %q, region %q", c.S3.SecretAccessKey, c.S3.SessionToken, c.S3.AccessKeyID, c.S3.Region)
	}
	if c.CompressionLevel != 3 || !c.S3.ForcePathStyle || c.Fast || c.PGDSN != "" {
		t.Errorf("typed values: %+v", c)
	}
	for body, want := range map[string]string{
		"repo: /a\nrepo: /b\n": `key "repo" appears twice`,
		"- repo\n":             "is not a map of settings",
		"repo: {a: b}\n":       "wants a single value",
	} {
		_, err := Load(src(map[string]string{KeyConfig: writeFile(t, body)}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %q: err = %v, want %q", body, err, want)
		}
	}
}

// A config file that holds a secret and that other users can read is refused (a
// usage error: pgb says what to chmod) unless allow-readable-config is set, which
// turns the refusal into a warning. A connection string without a password is no
// secret.
func TestConfigFileWithASecretReadableByOthersIsRefused(t *testing.T) {
	for _, c := range []struct {
		body     string
		mode     os.FileMode
		exposed  bool
		strangeG bool // the file's group is not pgb's (needs root to set)
	}{
		{"s3-secret-access-key: k\n", 0o644, true, false},
		{"pg-dsn: password=x\n", 0o640, true, true},
		// root:postgres 0640, as the packages install it: postgres is the postgres
		// user's own group (here: root's, the group the test files get as root).
		{"pg-dsn: password=x\n", 0o640, !ownPrivateGroup(), false},
		{"pg-dsn: postgres://u:x@db/app\n", 0o604, true, false},
		{"pg-dsn: host=db user=u\n", 0o644, false, false},
		{"pg-dsn: postgres://u@db/app\n", 0o644, false, false},
		{"s3-secret-access-key: k\n", 0o600, false, false},
		{"repo: /x\n", 0o644, false, false},
	} {
		file := writeFile(t, c.body)
		if err := os.Chmod(file, c.mode); err != nil {
			t.Fatal(err)
		}
		if c.strangeG {
			if os.Geteuid() != 0 {
				t.Logf("%q mode %o, another group: not run (needs root to chown)", c.body, c.mode)
				continue
			}
			if err := os.Chown(file, -1, 100); err != nil { // Debian's shared group "users" (or none)
				t.Fatal(err)
			}
		}
		_, err := Load(src(map[string]string{KeyConfig: file}))
		refused := err != nil && strings.Contains(err.Error(), file) && strings.Contains(err.Error(), "chmod 600") &&
			strings.Contains(err.Error(), "--allow-readable-config")
		if refused != c.exposed || (!c.exposed && err != nil) {
			t.Errorf("%q mode %o: err = %v, want a refusal: %v", c.body, c.mode, err, c.exposed)
		}
		cfg, err := Load(src(map[string]string{KeyConfig: file, KeyAllowReadableConfig: "true"}))
		if err != nil {
			t.Fatal(err)
		}
		warned := len(cfg.Warnings) == 1 && strings.Contains(cfg.Warnings[0], file) && strings.Contains(cfg.Warnings[0], "chmod 600")
		if warned != c.exposed || (!c.exposed && len(cfg.Warnings) > 0) {
			t.Errorf("%q mode %o, allowed: warnings %q, want a warning: %v", c.body, c.mode, cfg.Warnings, c.exposed)
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
		KeyStorageRetries:    "5", // the default, but given: passed on all the same
		KeyStorageTimeout:    "90s",
		KeyS3SSE:             "aws:kms",
		KeyCompression:       "zstd", // not a repository setting
	}))
	if err != nil {
		t.Fatal(err)
	}
	flags, secrets := PassOn(c, append(RepoKeys(), KeyStorageTimeout, KeyStorageRetries))
	want := []string{"--s3-endpoint=http://127.0.0.1:7070", "--s3-region=eu-west-1", "--s3-force-path-style=true", "--s3-sse=aws:kms", "--storage-timeout=90s", "--storage-retries=5"}
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

// A value given by flag or environment overrides the config file even when it equals
// the default (--s3-endpoint= means AWS itself): the command that runs later with the
// same config file must resolve the same value, so it is passed on too.
func TestPassOnKeepsGivenDefaultsOverTheFile(t *testing.T) {
	file := writeFile(t, "repo: s3://b/p\ns3-endpoint: http://minio-staging\ns3-force-path-style: true\nstorage-retries: 9\n")
	given := map[string]string{KeyConfig: file, KeyS3Endpoint: "", KeyS3ForcePathStyle: "false", KeyStorageRetries: "5"}
	restore, err := Load(src(given))
	if err != nil {
		t.Fatal(err)
	}
	flags, _ := PassOn(restore, append(RepoKeys(), KeyStorageTimeout, KeyStorageRetries))
	// What wal-fetch gets: the same file, and the flags restore passed on.
	later := map[string]string{KeyConfig: file}
	for _, f := range flags {
		k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		later[k] = v
	}
	fetch, err := Load(src(later))
	if err != nil {
		t.Fatal(err)
	}
	if fetch.S3 != restore.S3 || fetch.StorageRetries != restore.StorageRetries || restore.S3.Endpoint != "" {
		t.Errorf("flags %q: restore resolved endpoint %q, path style %v, retries %d; wal-fetch resolves %q, %v, %d",
			flags, restore.S3.Endpoint, restore.S3.ForcePathStyle, restore.StorageRetries,
			fetch.S3.Endpoint, fetch.S3.ForcePathStyle, fetch.StorageRetries)
	}
}

// The SDKs' own attempts are gone (one retry policy: storage-retries); their settings
// still load, with a warning that says so, rather than failing old config files or
// doing nothing silently.
func TestIgnoredSDKAttemptSettingsAreWarnedAbout(t *testing.T) {
	file := writeFile(t, "s3-max-attempts: 3\n")
	cfg, err := Load(src(map[string]string{KeyConfig: file, KeyGCSMaxAttempts: "2"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 2 || !strings.Contains(cfg.Warnings[0], "s3-max-attempts is ignored: storage-retries") ||
		!strings.Contains(cfg.Warnings[1], "gcs-max-attempts is ignored") {
		t.Errorf("warnings %q, want one for each ignored setting", cfg.Warnings)
	}
	if cfg, err := Load(src(nil)); err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("defaults: warnings %q, %v; want none", cfg.Warnings, err)
	}
}

func TestRetentionPolicyFromTheFile(t *testing.T) {
	f := writeFile(t, "repo: /r\nretain-full: 7\nretain-days: 14\n")
	c, err := Load(src(map[string]string{KeyConfig: f}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RetainFull != 7 || c.RetainDays != 14 {
		t.Fatalf("retain-full %d, retain-days %d", c.RetainFull, c.RetainDays)
	}
	_, err = Load(src(map[string]string{KeyConfig: "", KeyRetainFull: "-1"}))
	if err == nil || !strings.Contains(err.Error(), "--retain-full") {
		t.Fatalf("a negative count: %v", err)
	}
}

// A config file is read or refused with an error, never a panic; what is read holds
// only known keys.
func FuzzReadFile(f *testing.F) {
	for _, s := range []string{"", "repo: /var/lib/pgb\ncompression: zstd\n", "repo: &a x\nconcurrency: *a\n", "- a\n- b\n",
		"repo: [a, b]\n", "fast: true\n", "repo: ~\n", "{repo: x, repo: y}",
		"repos:\n  - name: a\n    repo: /x\n  - {name: b, repo: s3://b/p, s3-region: eu}\n", "repos: a=/x,b=/y\n", "repos: [[a]]\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fc, err := parseFile("pgb.yaml", []byte(body))
		if err != nil {
			return
		}
		for k := range fc.vals {
			if _, ok := Lookup(k); !ok || k == KeyConfig || k == KeyRepos {
				t.Fatalf("ReadFile accepted key %q", k)
			}
		}
		for _, ent := range fc.repos {
			for k := range ent {
				if k != keyName && !slices.Contains(RepoEntryKeys(), k) {
					t.Fatalf("an entry of repos accepted key %q", k)
				}
			}
		}
	})
}

// encryption: auto (the default) encrypts when writers' keys are given, so a host
// that was given recipients or a passphrase never writes plaintext for want of
// encryption: age; none with keys given is a warning.
func TestEncryptionAutoEncryptsWhenKeysAreGiven(t *testing.T) {
	for _, tc := range []struct {
		given map[string]string
		mode  string
		warn  bool
	}{
		{map[string]string{}, "none", false},
		{map[string]string{KeyEncryptionIdentityFile: "/k"}, "none", false},
		{map[string]string{KeyEncryptionRecipients: "age1x"}, "age", false},
		{map[string]string{KeyEncryptionPassphrase: "correct horse battery"}, "age", false},
		{map[string]string{KeyEncryption: "none", KeyEncryptionRecipients: "age1x"}, "none", true},
		{map[string]string{KeyEncryption: "age"}, "age", false},
	} {
		t.Setenv("PGB_CONFIG", "")
		c, err := Load(func(k string) (string, bool) { v, ok := tc.given[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if c.Encryption.Mode != tc.mode || (len(c.Warnings) > 0) != tc.warn {
			t.Errorf("%v: mode %q, warnings %q; want %q, warning %v", tc.given, c.Encryption.Mode, c.Warnings, tc.mode, tc.warn)
		}
	}
	if _, err := Load(func(k string) (string, bool) { return "sometimes", k == KeyEncryption }); err == nil {
		t.Error("encryption: sometimes was accepted")
	}
}

// Several repositories: each entry of repos has its own URL and settings, the settings
// around it for the rest; --repo picks among them by name.
func TestReposEntriesTakeTheirOwnSettingsAndTheRestFromAround(t *testing.T) {
	file := writeFile(t, `compression: zstd
s3-region: us-east-1
retain-full: 2
repos:
  - name: local
    repo: /var/lib/pgb/main
  - name: offsite
    repo: s3://bucket/prod
    s3-region: eu-west-1
    retain-full: 8
    encryption-recipients: age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq
`)
	c, err := Load(src(map[string]string{KeyConfig: file, KeyS3Region: "ap-south-1"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Multi() || len(c.Repos) != 2 || len(c.Selected) != 2 || c.Repo != "" {
		t.Fatalf("repos = %+v, selected %+v, repo %q", c.Repos, c.Selected, c.Repo)
	}
	local, offsite := c.For(c.Repos[0]), c.For(c.Repos[1])
	if local.Repo != "/var/lib/pgb/main" || local.RepoName != "local" || local.RetainFull != 2 || local.S3.Region != "ap-south-1" || local.Encryption.Mode != "none" {
		t.Errorf("local = %+v", local)
	}
	if offsite.Repo != "s3://bucket/prod" || offsite.S3.Region != "eu-west-1" || offsite.RetainFull != 8 || offsite.Encryption.Mode != "age" || offsite.Compression != "zstd" {
		t.Errorf("offsite = %+v", offsite)
	}
	if offsite.Multi() {
		t.Error("a repository's configuration still lists repos")
	}
	for sel, want := range map[string][]string{"offsite": {"offsite"}, "offsite,local": {"offsite", "local"}, "all": {"local", "offsite"}, "local,local": {"local"}} {
		c, err := Load(src(map[string]string{KeyConfig: file, KeyRepo: sel}))
		if err != nil {
			t.Fatalf("--repo %s: %v", sel, err)
		}
		var got []string
		for _, r := range c.Selected {
			got = append(got, r.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("--repo %s selects %v, want %v", sel, got, want)
		}
	}
}

func TestReposFlagForm(t *testing.T) {
	c, err := Load(src(map[string]string{KeyConfig: "", KeyRepos: "a=/srv/a, b=s3://bucket/b", KeyRepo: "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Repos) != 2 || c.Repos[1].Repo != "s3://bucket/b" || len(c.Selected) != 1 || c.Selected[0].Name != "b" {
		t.Errorf("repos = %+v, selected %+v", c.Repos, c.Selected)
	}
}

func TestReposMistakesAreNamed(t *testing.T) {
	for body, want := range map[string]string{
		"repo: /x\nrepos: a=/y\n":                                    "has both repo and repos",
		"repos:\n  - name: a\n    repo: /x\n    compression: zstd\n": `unknown key "compression"`,
		"repos:\n  - name: a\n":                                      `repository "a" has no repo`,
		"repos:\n  - name: Bad\n    repo: /x\n":                      `repository name "Bad"`,
		"repos:\n  - name: all\n    repo: /x\n":                      `repository name "all"`,
		"repos: a=/x,a=/y\n":                                         `"a" appears twice`,
		"repos: a\n":                                                 `"a" is not NAME=URL`,
		"repos: []\n":                                                "repos lists no repository",
		"repos:\n  - /x\n":                                           "an entry of repos is a map",
		"repos:\n  - name: a\n    repo: /x\n    s3-max-parts: 0\n":   "s3-max-parts 0",
	} {
		_, err := Load(src(map[string]string{KeyConfig: writeFile(t, body)}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to mention %s", body, err, want)
		}
	}
	_, err := Load(src(map[string]string{KeyConfig: "", KeyRepos: "a=/x", KeyRepo: "b"}))
	if err == nil || !strings.Contains(err.Error(), `--repo / PGB_REPO "b": with repos, give the name of a repository (a)`) {
		t.Errorf("unknown name: %v", err)
	}
	_, err = Load(src(map[string]string{KeyConfig: "", KeyRepo: "all"}))
	if err == nil || !strings.Contains(err.Error(), "no repositories are listed") {
		t.Errorf("--repo all without repos: %v", err)
	}
}

func TestASecretInAReposEntryOfAReadableFileIsRefused(t *testing.T) {
	file := writeFile(t, "repos:\n  - name: a\n    repo: s3://b/p\n    s3-secret-access-key: hunter2\n")
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(src(map[string]string{KeyConfig: file}))
	if err == nil || !strings.Contains(err.Error(), "holds a secret (s3-secret-access-key)") {
		t.Errorf("err = %v", err)
	}
}

// An entry's retention is its repository's, over the environment (a host-wide
// PGB_RETAIN_FULL must not shorten what offsite keeps); pgb delete --retain-full on the
// command line is the run's, for every repository (cmd: retentionFlags).
func TestAnEntrysRetentionBeatsTheEnvironment(t *testing.T) {
	file := writeFile(t, "repos:\n  - name: a\n    repo: /x\n    retain-full: 8\n  - name: b\n    repo: /y\n")
	c, err := Load(src(map[string]string{KeyConfig: file, KeyRetainFull: "2"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repos[0].RetainFull != 8 || c.Repos[1].RetainFull != 2 {
		t.Errorf("retain-full = %d, %d; want the entry's 8, and 2 from around it", c.Repos[0].RetainFull, c.Repos[1].RetainFull)
	}
}

func TestReposGivenAboveTheFileReplaceItsRepo(t *testing.T) {
	file := writeFile(t, "repo: /from/file\n")
	c, err := Load(src(map[string]string{KeyConfig: file, KeyRepos: "a=/x,b=/y"}))
	if err != nil || len(c.Selected) != 2 {
		t.Fatalf("--repos over a file's repo: %+v, %v", c.Selected, err)
	}
	c, err = Load(src(map[string]string{KeyConfig: file, KeyRepos: " "})) // PGB_REPOS exported empty
	if err != nil || c.Multi() || c.Repo != "/from/file" {
		t.Fatalf("an empty PGB_REPOS: %+v, %v", c, err)
	}
}

// A warning about an entry's settings is given, naming the repository.
func TestAnEntrysWarningsAreKept(t *testing.T) {
	file := writeFile(t, "repos:\n  - name: a\n    repo: /x\n  - name: off\n    repo: /y\n    encryption: none\n    encryption-recipients: age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n")
	c, err := Load(src(map[string]string{KeyConfig: file}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0], "repository off: encryption: none although encryption keys are given") {
		t.Errorf("warnings = %q", c.Warnings)
	}
}

// ownPrivateGroup reports whether the files this test makes (owned by its user, in its
// primary group) count as readable only by pgb's service user's group.
func ownPrivateGroup() bool {
	me, err := user.Current()
	if err != nil {
		return false
	}
	gid, _ := strconv.Atoi(me.Gid)
	if me.Uid == "0" {
		pg, err := user.Lookup(serviceUser)
		return err == nil && pg.Gid == me.Gid && privateGroupOf(pg, uint32(gid))
	}
	return privateGroupOf(me, uint32(gid))
}

// The packaged file, root:postgres 0640, holds secrets only root and postgres read:
// accepted. The same file in a shared group (users) or another service's group is not.
func TestPackagedConfigModeIsAccepted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	pg, err := user.LookupGroup("postgres")
	if err != nil {
		t.Skip("no postgres group here")
	}
	gid, _ := strconv.Atoi(pg.Gid)
	cases := []struct {
		gid     int
		exposed bool
	}{{gid, false}, {100, true}}
	if wd, err := user.LookupGroup("www-data"); err == nil {
		other, _ := strconv.Atoi(wd.Gid)
		cases = append(cases, struct {
			gid     int
			exposed bool
		}{other, true})
	}
	for _, c := range cases {
		file := writeFile(t, "s3-secret-access-key: k\n")
		if err := os.Chmod(file, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, 0, c.gid); err != nil {
			t.Fatal(err)
		}
		_, err := Load(src(map[string]string{KeyConfig: file}))
		if (err != nil) != c.exposed {
			t.Errorf("root:%d 0640: err = %v, want refused: %v", c.gid, err, c.exposed)
		}
	}
}
