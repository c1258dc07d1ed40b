// Package config is pgb's typed configuration. Every setting has one key, used as the
// command-line flag (--key), in the YAML config file (key: value) and, upper-cased, in
// an environment variable (PGB_KEY, or a standard name such as PGDATA). Precedence is
// flag > environment > file > default. The result is validated once and passed down;
// nothing reads the environment after that.
package config

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgb-project/pgb/internal/compress"
)

// DefaultFile is read when no --config / PGB_CONFIG is given and it exists.
const DefaultFile = "/etc/pgb/pgb.yaml"

// Kind is a setting's value type.
type Kind int

// Setting kinds.
const (
	String Kind = iota
	Int
	Duration
	Bool
	Size // bytes, with an optional KiB/MiB/GiB (or k/m/g) suffix
)

// Setting describes one configuration key.
type Setting struct {
	Key     string
	Env     []string
	Default string
	Usage   string
	Kind    Kind
	Secret  bool // never echoed; warn when given on the command line
}

// Keys of the settings.
const (
	KeyConfig           = "config"
	KeyRepo             = "repo"
	KeyPGData           = "pgdata"
	KeyPGDSN            = "pg-dsn"
	KeyCompression      = "compression"
	KeyCompressionLevel = "compression-level"
	KeyLogLevel         = "log-level"
	KeyLogFormat        = "log-format"
	KeyStorageTimeout   = "storage-timeout"
	KeyStorageRetries   = "storage-retries"
	KeyArchiveTimeout   = "archive-timeout"
	KeyPartSize         = "part-size"
	KeyConcurrency      = "concurrency"
	KeyFast             = "fast"
)

// Settings is the table of every setting pgb knows.
var settings = []Setting{
	{Key: KeyConfig, Env: []string{"PGB_CONFIG"}, Usage: "YAML config `FILE` (default " + DefaultFile + " when it exists)"},
	{Key: KeyRepo, Env: []string{"PGB_REPO"}, Usage: "repository `URL`: /abs/path, file:///abs/path, s3://bucket/prefix or gs://bucket/prefix"},
	{Key: KeyPGData, Env: []string{"PGDATA"}, Usage: "PostgreSQL data `DIR` (default: the working directory when it holds global/pg_control, as under archive_command)"},
	{Key: KeyPGDSN, Env: []string{"PGB_PG_DSN"}, Usage: "PostgreSQL connection string; without it the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE… apply", Secret: true},
	{Key: KeyCompression, Env: []string{"PGB_COMPRESSION"}, Default: "lz4", Usage: "compression for new objects: lz4, zstd or none (reading never needs it)"},
	{Key: KeyCompressionLevel, Env: []string{"PGB_COMPRESSION_LEVEL"}, Default: "0", Kind: Int, Usage: "compression level: lz4 1-9, zstd 1-22, 0 = the codec's fast default"},
	{Key: KeyLogLevel, Env: []string{"PGB_LOG_LEVEL"}, Default: "info", Usage: "log level: debug, info, warn or error"},
	{Key: KeyLogFormat, Env: []string{"PGB_LOG_FORMAT"}, Default: "text", Usage: "log format on stderr: text or json"},
	{Key: KeyStorageTimeout, Env: []string{"PGB_STORAGE_TIMEOUT"}, Default: "60s", Kind: Duration, Usage: "deadline of one storage request attempt"},
	{Key: KeyStorageRetries, Env: []string{"PGB_STORAGE_RETRIES"}, Default: "5", Kind: Int, Usage: "attempts per storage request before giving up (1 = no retry)"},
	{Key: KeyArchiveTimeout, Env: []string{"PGB_ARCHIVE_TIMEOUT"}, Default: "60s", Kind: Duration, Usage: "how long check, backup-push and restore-point wait for a WAL segment to reach the repository"},
	{Key: KeyPartSize, Env: []string{"PGB_PART_SIZE"}, Default: "1GiB", Kind: Size, Usage: "uncompressed size of one backup part (KiB, MiB, GiB suffixes)"},
	{Key: KeyConcurrency, Env: []string{"PGB_CONCURRENCY"}, Default: "0", Kind: Int, Usage: "backup parts uploaded, or restored, at once (0 = number of CPUs)"},
	{Key: KeyFast, Env: []string{"PGB_BACKUP_FAST"}, Default: "false", Kind: Bool, Usage: "start the backup with an immediate checkpoint instead of a spread one"},
}

// Lookup returns the setting for key.
func Lookup(key string) (Setting, bool) {
	for _, s := range settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// All returns every setting.
func All() []Setting { return append([]Setting(nil), settings...) }

// Config is the validated configuration handed to the engine.
type Config struct {
	File             string // the config file that was read, "" if none
	Repo             string
	PGData           string
	PGDSN            string
	Compression      string
	CompressionLevel int
	LogLevel         string
	LogFormat        string
	StorageTimeout   time.Duration
	StorageRetries   int
	ArchiveTimeout   time.Duration
	PartSize         int64
	Concurrency      int
	Fast             bool
}

// Source yields the values set above the file: by flag or environment. ok is false
// when the key was set by neither.
type Source func(key string) (value string, ok bool)

// Load resolves every setting: src (flags and environment) first, then the config
// file, then defaults. The file is src's "config" value, else DefaultFile if present.
func Load(src Source) (Config, error) {
	file, explicit := src(KeyConfig)
	if !explicit {
		if _, err := os.Stat(DefaultFile); err == nil {
			file = DefaultFile
		}
	}
	fileVals := map[string]string{}
	if file != "" {
		var err error
		if fileVals, err = ReadFile(file); err != nil {
			return Config{}, err
		}
	}
	get := func(key string) (string, string) {
		if v, ok := src(key); ok {
			return v, "--" + key
		}
		if v, ok := fileVals[key]; ok {
			return v, key + " in " + file
		}
		s, _ := Lookup(key)
		return s.Default, "default of --" + key
	}
	var c Config
	var errs []string
	str := func(key string) string { v, _ := get(key); return strings.TrimSpace(v) }
	integer := func(key string) int {
		v, where := get(key)
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not a whole number", where, v))
		}
		return n
	}
	duration := func(key string) time.Duration {
		v, where := get(key)
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("%s: %q is not a positive duration (e.g. 30s, 5m)", where, v))
		}
		return d
	}
	c.File = file
	c.Repo = str(KeyRepo)
	c.PGData = str(KeyPGData)
	c.PGDSN = str(KeyPGDSN)
	c.Compression = strings.ToLower(str(KeyCompression))
	c.CompressionLevel = integer(KeyCompressionLevel)
	c.LogLevel = strings.ToLower(str(KeyLogLevel))
	c.LogFormat = strings.ToLower(str(KeyLogFormat))
	c.StorageTimeout = duration(KeyStorageTimeout)
	c.StorageRetries = integer(KeyStorageRetries)
	c.ArchiveTimeout = duration(KeyArchiveTimeout)
	if v, where := get(KeyPartSize); true {
		n, err := ParseSize(v)
		if err != nil || n < 1<<20 {
			errs = append(errs, fmt.Sprintf("%s: %q is not a size of at least 1MiB (e.g. 512MiB, 1GiB)", where, v))
		}
		c.PartSize = n
	}
	c.Concurrency = integer(KeyConcurrency)
	if c.Concurrency <= 0 {
		c.Concurrency = runtime.NumCPU()
	}
	if v, where := get(KeyFast); true {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not true or false", where, v))
		}
		c.Fast = b
	}

	if len(errs) == 0 {
		if _, err := compress.New(c.Compression, c.CompressionLevel); err != nil {
			errs = append(errs, err.Error())
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Sprintf("log-format %q: want text or json", c.LogFormat))
	}
	if c.StorageRetries < 1 || c.StorageRetries > 100 {
		errs = append(errs, fmt.Sprintf("storage-retries %d: want 1 to 100", c.StorageRetries))
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// ReadFile reads a flat YAML map of setting keys to scalar values. Unknown keys are an
// error, so a typo cannot silently leave a setting at its default.
func ReadFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s is not valid YAML: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := Lookup(k)
		if !ok || k == KeyConfig {
			return nil, fmt.Errorf("config file %s: unknown key %q (keys are the flag names, e.g. repo, compression)", path, k)
		}
		switch v := v.(type) {
		case nil:
			out[k] = ""
		case map[string]any, []any:
			return nil, fmt.Errorf("config file %s: key %q wants a single value", path, k)
		case bool:
			if s.Kind != Bool {
				return nil, fmt.Errorf("config file %s: key %q wants a %s, not true/false", path, k, kindName(s.Kind))
			}
			out[k] = strconv.FormatBool(v)
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// ParseSize reads a byte size: a number with an optional k/KiB, m/MiB, g/GiB, t/TiB
// suffix (powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"tib", 1 << 40}, {"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"tb", 1 << 40}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10},
		{"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			mult, s = u.mult, strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

func kindName(k Kind) string {
	switch k {
	case Int:
		return "number"
	case Duration:
		return "duration"
	case Bool:
		return "boolean"
	case Size:
		return "size"
	}
	return "string"
}
