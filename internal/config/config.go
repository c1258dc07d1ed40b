// Package config is pgb's typed configuration. Every setting has one key, used as the
// command-line flag (--key), in the YAML config file (key: value) and, upper-cased, in
// an environment variable (PGB_KEY, or a standard name such as PGDATA). Precedence is
// flag > environment > file > default. The result is validated once and passed down;
// nothing reads the environment after that.
package config

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"os/user"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
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
	Key      string
	Env      []string
	Default  string
	Usage    string
	Kind     Kind
	Secret   bool   // never echoed; warn when given on the command line
	Category string // --help group
	// NoFlag: set in the config file or the environment only (a command may have a
	// flag of that name with another meaning, e.g. backup-push's --incremental).
	NoFlag bool
}

// Keys of the settings.
const (
	KeyConfig              = "config"
	KeyRepo                = "repo"
	KeyRepos               = "repos"
	KeyPGData              = "pgdata"
	KeyPGDSN               = "pg-dsn"
	KeyPrimaryDSN          = "primary-dsn"
	KeyStandbyMaxLag       = "standby-max-lag"
	KeyCompression         = "compression"
	KeyCompressionLevel    = "compression-level"
	KeyLogLevel            = "log-level"
	KeyLogFormat           = "log-format"
	KeyStorageTimeout      = "storage-timeout"
	KeyStorageRetries      = "storage-retries"
	KeyAllowReadableConfig = "allow-readable-config"
	KeyArchiveTimeout      = "archive-timeout"
	KeyWALTimeout          = "wal-timeout"
	KeyWALPushConc         = "wal-push-concurrency"
	KeyWALFetchPrefetch    = "wal-fetch-prefetch"
	KeyPartSize            = "part-size"
	KeyConcurrency         = "concurrency"
	KeyFast                = "fast"
	KeyFailOnCorruptPage   = "fail-on-corrupt-page"
	KeyIncremental         = "incremental"
	KeyFullEvery           = "full-every"
	KeyChecksumDelta       = "checksum-delta"
	KeyLockMaxAge          = "lock-max-age"
	KeyLockWait            = "lock-wait"
	KeyRetainFull          = "retain-full"
	KeyRetainDays          = "retain-days"
	KeyWALPushQueueMax     = "wal-push-queue-max"

	KeyS3Endpoint        = "s3-endpoint"
	KeyS3Region          = "s3-region"
	KeyS3ForcePathStyle  = "s3-force-path-style"
	KeyS3AccessKeyID     = "s3-access-key-id"
	KeyS3SecretAccessKey = "s3-secret-access-key"
	KeyS3SessionToken    = "s3-session-token"
	KeyS3Profile         = "s3-profile"
	KeyS3SSE             = "s3-sse"
	KeyS3SSEKMSKeyID     = "s3-sse-kms-key-id"
	KeyS3StorageClass    = "s3-storage-class"
	KeyS3PartSize        = "s3-part-size"
	KeyS3Concurrency     = "s3-upload-concurrency"
	KeyS3MaxParts        = "s3-max-parts"
	KeyS3Checksum        = "s3-checksum"
	KeyS3MaxAttempts     = "s3-max-attempts"
	KeyS3RequestTimeout  = "s3-request-timeout"
	KeyS3RateLimit       = "s3-rate-limit"
	KeyS3Conditional     = "s3-conditional-writes"

	KeyEncryption               = "encryption"
	KeyEncryptionRecipients     = "encryption-recipients"
	KeyEncryptionRecipientsFile = "encryption-recipients-file"
	KeyEncryptionIdentityFile   = "encryption-identity-file"
	KeyEncryptionMACKey         = "encryption-mac-key"
	KeyEncryptionPassphrase     = "encryption-passphrase"

	KeyGCSCredentialsFile = "gcs-credentials-file"
	KeyGCSEndpoint        = "gcs-endpoint"
	KeyGCSChunkSize       = "gcs-chunk-size"
	KeyGCSConcurrency     = "gcs-upload-concurrency"
	KeyGCSStorageClass    = "gcs-storage-class"
	KeyGCSKMSKeyName      = "gcs-kms-key-name"
	KeyGCSMaxAttempts     = "gcs-max-attempts"
	KeyGCSRequestTimeout  = "gcs-request-timeout"
)

// Categories group settings in --help.
const (
	CategoryS3  = "S3 repository (s3://bucket/prefix)"
	CategoryGCS = "GCS repository (gs://bucket/prefix)"
	CategoryEnc = "Client-side encryption (age)"
)

// Settings is the table of every setting pgb knows.
var settings = []Setting{
	{Key: KeyConfig, Env: []string{"PGB_CONFIG"}, Usage: "YAML config `FILE` (default " + DefaultFile + " when it exists)"},
	{Key: KeyRepo, Env: []string{"PGB_REPO"}, Usage: "repository `URL`: /abs/path, file:///abs/path, s3://bucket/prefix or gs://bucket/prefix; with repos: the NAME of one (or NAME,NAME… or all) to work on"},
	{Key: KeyRepos, Env: []string{"PGB_REPOS"}, Usage: "several repositories, as `NAME=URL,NAME=URL…` (in the config file: a list of entries, each a name, a repo and that repository's own settings; see docs/multi-repo.md); every repository gets every WAL file, and --repo NAME picks one"},
	{Key: KeyPGData, Env: []string{"PGDATA"}, Usage: "PostgreSQL data `DIR` (default: backup-push reads the server's data_directory; wal-push the working directory when it holds global/pg_control, as under archive_command)"},
	{Key: KeyPGDSN, Env: []string{"PGB_PG_DSN"}, Usage: "PostgreSQL connection string; without it the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE… apply", Secret: true},
	{Key: KeyCompression, Env: []string{"PGB_COMPRESSION"}, Default: "lz4", Usage: "compression for new objects: lz4, zstd or none (reading never needs it)"},
	{Key: KeyCompressionLevel, Env: []string{"PGB_COMPRESSION_LEVEL"}, Default: "0", Kind: Int, Usage: "compression level: lz4 1-9, zstd 1-22, 0 = the default (lz4: fast, zstd: 3)"},
	{Key: KeyLogLevel, Env: []string{"PGB_LOG_LEVEL"}, Default: "info", Usage: "log level: debug, info, warn or error"},
	{Key: KeyLogFormat, Env: []string{"PGB_LOG_FORMAT"}, Default: "text", Usage: "log format on stderr: text or json"},
	{Key: KeyStorageTimeout, Env: []string{"PGB_STORAGE_TIMEOUT"}, Default: "60s", Kind: Duration, Usage: "deadline of one storage request attempt"},
	{Key: KeyStorageRetries, Env: []string{"PGB_STORAGE_RETRIES"}, Default: "5", Kind: Int, Usage: "attempts per storage request before giving up (1 = no retry)"},
	{Key: KeyAllowReadableConfig, Env: []string{"PGB_ALLOW_READABLE_CONFIG"}, Default: "false", Kind: Bool, Usage: "go on (with a warning) when the config file holds a secret and other users can read it; without it pgb refuses"},
	{Key: KeyArchiveTimeout, Env: []string{"PGB_ARCHIVE_TIMEOUT"}, Default: "60s", Kind: Duration, Usage: "how long check, backup-push and restore-point wait for a WAL segment to reach the repository"},
	{Key: KeyWALTimeout, Env: []string{"PGB_WAL_TIMEOUT"}, Default: "2m", Kind: Duration, Usage: "overall deadline of one wal-push or wal-fetch, retries included (wal-fetch then exits 255)"},
	{Key: KeyWALPushConc, Env: []string{"PGB_WAL_PUSH_CONCURRENCY"}, Default: "2", Kind: Int, Usage: "WAL segments wal-push compresses and uploads at once, ahead of PostgreSQL's calls, in a background archiver (1 = no look-ahead: each call ships its own segment)"},
	{Key: KeyWALFetchPrefetch, Env: []string{"PGB_WAL_FETCH_PREFETCH"}, Default: "8", Kind: Int, Usage: "segments wal-fetch prefetches ahead of PostgreSQL's request into pg_wal/pgb/fetch, by a background process (0 = off; at most 256)"},
	{Key: KeyPrimaryDSN, Env: []string{"PGB_PRIMARY_DSN"}, Secret: true, Usage: "backup-push on a hot standby: connection string of its primary, where pgb switches WAL to complete the backup's stop segment (and checkpoints first, with --fast); without it the backup waits until the primary completes that segment itself"},
	{Key: KeyStandbyMaxLag, Env: []string{"PGB_STANDBY_MAX_LAG"}, Default: "1GiB", Kind: Size, Usage: "backup-push on a hot standby, with primary-dsn: refuse a standby that has replayed more than this much WAL less than its primary"},
	{Key: KeyPartSize, Env: []string{"PGB_PART_SIZE"}, Default: "1GiB", Kind: Size, Usage: "uncompressed size of one backup part (KiB, MiB, GiB suffixes)"},
	{Key: KeyConcurrency, Env: []string{"PGB_CONCURRENCY"}, Default: "0", Kind: Int, Usage: "backup parts uploaded, or restored, or objects verified, at once (0 = number of CPUs)"},
	{Key: KeyFast, Env: []string{"PGB_BACKUP_FAST"}, Default: "false", Kind: Bool, Usage: "start the backup with an immediate checkpoint instead of a spread one"},
	{Key: KeyIncremental, Env: []string{"PGB_INCREMENTAL"}, Default: "off", NoFlag: true, Usage: "what backup-push takes: off (full backups), on (incremental on the newest backup when there is one) or auto (incremental, but a full one once a chain holds full-every backups); backup-push --incremental and --full override it"},
	{Key: KeyFullEvery, Env: []string{"PGB_FULL_EVERY"}, Default: "7", Kind: Int, Usage: "with incremental: auto, a chain holds at most `N` backups, its full one included, before backup-push takes a full one again"},
	{Key: KeyChecksumDelta, Env: []string{"PGB_CHECKSUM_DELTA"}, Default: "false", Kind: Bool, Usage: "an incremental backup reads every file instead of judging one with the size and modification time it had in the previous backup unchanged"},
	{Key: KeyFailOnCorruptPage, Env: []string{"PGB_FAIL_ON_CORRUPT_PAGE"}, Default: "false", Kind: Bool, Usage: "backup-push exits 1 when pages failed their data checksum (the backup is stored all the same: it is still the best copy there is); without it, a warning"},
	{Key: KeyLockMaxAge, Env: []string{"PGB_LOCK_MAX_AGE"}, Default: "24h", Kind: Duration, Usage: "a backup lock older than this is taken over even when its holder cannot be proven gone (another host, boot or container); must exceed the longest backup"},
	{Key: KeyLockWait, Env: []string{"PGB_LOCK_WAIT"}, Default: "0s", Kind: Duration, Usage: "wait up to this long for the backup lock another backup-push, delete or backup-mark holds, instead of failing at once (for cron jobs that may overlap)"},
	{Key: KeyRetainFull, Env: []string{"PGB_RETAIN_FULL"}, Default: "0", Kind: Int, Usage: "pgb delete keeps the newest `N` full backups and every backup after them (0 = not set)"},
	{Key: KeyRetainDays, Env: []string{"PGB_RETAIN_DAYS"}, Default: "0", Kind: Int, Usage: "pgb delete keeps what recovery to any point of the last `D` days needs (0 = not set)"},
	{Key: KeyWALPushQueueMax, Env: []string{"PGB_WAL_PUSH_QUEUE_MAX"}, Default: "0", Kind: Size, Usage: "DROP WAL rather than fill pg_wal: when a push fails and the segments waiting in pg_wal/archive_status (.ready) exceed this `SIZE` (e.g. 4GiB), wal-push logs an error, records the dropped segment as a gap and exits 0 — point-in-time recovery across it is then impossible (0 = off: archiving fails until the repository is back)"},

	{Key: KeyS3Endpoint, Env: []string{"PGB_S3_ENDPOINT"}, Category: CategoryS3, Usage: "endpoint `URL` of an S3-compatible store (MinIO, Ceph RGW, versitygw, R2…); empty = AWS"},
	{Key: KeyS3Region, Env: []string{"PGB_S3_REGION", "AWS_REGION"}, Category: CategoryS3, Usage: "region (default: the SDK's configuration, else us-east-1)"},
	{Key: KeyS3ForcePathStyle, Env: []string{"PGB_S3_FORCE_PATH_STYLE"}, Default: "false", Kind: Bool, Category: CategoryS3, Usage: "path-style addressing (http://endpoint/bucket/key), as most S3-compatible stores need"},
	{Key: KeyS3AccessKeyID, Env: []string{"AWS_ACCESS_KEY_ID"}, Category: CategoryS3, Usage: "static access key id (default: the SDK's credential chain: env, shared profile, web identity, container and instance roles)"},
	{Key: KeyS3SecretAccessKey, Env: []string{"AWS_SECRET_ACCESS_KEY"}, Category: CategoryS3, Secret: true, Usage: "static secret access key"},
	{Key: KeyS3SessionToken, Env: []string{"AWS_SESSION_TOKEN"}, Category: CategoryS3, Secret: true, Usage: "session token for temporary static credentials"},
	{Key: KeyS3Profile, Env: []string{"AWS_PROFILE"}, Category: CategoryS3, Usage: "shared-config profile"},
	{Key: KeyS3SSE, Env: []string{"PGB_S3_SSE"}, Category: CategoryS3, Usage: "server-side encryption: AES256 or aws:kms"},
	{Key: KeyS3SSEKMSKeyID, Env: []string{"PGB_S3_SSE_KMS_KEY_ID"}, Category: CategoryS3, Usage: "KMS key id for aws:kms"},
	{Key: KeyS3StorageClass, Env: []string{"PGB_S3_STORAGE_CLASS"}, Category: CategoryS3, Usage: "storage class of new objects (e.g. STANDARD_IA)"},
	{Key: KeyS3PartSize, Env: []string{"PGB_S3_PART_SIZE"}, Default: "16MiB", Kind: Size, Category: CategoryS3, Usage: "multipart part size, grown for very large objects to stay within s3-max-parts (memory per upload: upload concurrency × the current part size)"},
	{Key: KeyS3Concurrency, Env: []string{"PGB_S3_UPLOAD_CONCURRENCY"}, Default: "4", Kind: Int, Category: CategoryS3, Usage: "parts of one upload in flight"},
	{Key: KeyS3MaxParts, Env: []string{"PGB_S3_MAX_PARTS"}, Default: "10000", Kind: Int, Category: CategoryS3, Usage: "the store's limit on the parts of one multipart upload (AWS: 10000; some S3-compatible stores allow fewer, e.g. 1000): part sizes grow so that no upload needs more"},
	{Key: KeyS3Checksum, Env: []string{"PGB_S3_CHECKSUM"}, Default: "when-supported", Category: CategoryS3, Usage: "request checksums: when-supported (the SDK's default: CRC32 on every request that can carry one) or when-required (only where the API requires one, for S3-compatible stores that reject the newer checksum headers; pgb check tells)"},
	{Key: KeyS3MaxAttempts, Env: []string{"PGB_S3_MAX_ATTEMPTS"}, Category: CategoryS3, Usage: "ignored, kept so that existing configurations load: --storage-retries sets the attempts of every request"},
	{Key: KeyS3RequestTimeout, Env: []string{"PGB_S3_REQUEST_TIMEOUT"}, Default: "60s", Kind: Duration, Category: CategoryS3, Usage: "timeout of one HTTP request"},
	{Key: KeyS3RateLimit, Env: []string{"PGB_S3_RATE_LIMIT"}, Default: "0", Kind: Int, Category: CategoryS3, Usage: "at most this many requests per second (0 = no limit)"},
	{Key: KeyS3Conditional, Env: []string{"PGB_S3_CONDITIONAL_WRITES"}, Default: "enforced", Category: CategoryS3, Usage: "how put-if-absent works: enforced (If-None-Match, the safe default), head-check (for stores that ignore If-None-Match, as pgb check reports), unsupported"},

	{Key: KeyEncryption, Env: []string{"PGB_ENCRYPTION"}, Default: "auto", Category: CategoryEnc, Usage: "encrypt new WAL, backup parts and manifests before they leave this host: age, none, or auto (age when encryption-recipients(-file) or encryption-passphrase is given); reading an encrypted object needs an identity whatever this says"},
	{Key: KeyEncryptionRecipients, Env: []string{"PGB_ENCRYPTION_RECIPIENTS"}, Category: CategoryEnc, Usage: "age public keys (age1…, comma-separated) new objects are encrypted to; writers (wal-push, backup-push) need only these, not the secret keys"},
	{Key: KeyEncryptionRecipientsFile, Env: []string{"PGB_ENCRYPTION_RECIPIENTS_FILE"}, Category: CategoryEnc, Usage: "`FILE` of age public keys, one a line (# comments), added to encryption-recipients"},
	{Key: KeyEncryptionIdentityFile, Env: []string{"PGB_ENCRYPTION_IDENTITY_FILE"}, Category: CategoryEnc, Usage: "`FILE` of age secret keys (AGE-SECRET-KEY-1…, one a line; mode 0600) that readers (wal-fetch, restore, verify, drill…) decrypt with: old keys too after a rotation"},
	{Key: KeyEncryptionMACKey, Env: []string{"PGB_ENCRYPTION_MAC_KEY"}, Secret: true, Category: CategoryEnc, Usage: "secret every writer shares (pgb keygen makes one): keys the tag an encrypted object's trailer carries, so a writer recognises its own repeated upload without being able to decrypt"},

	{Key: KeyEncryptionPassphrase, Env: []string{"PGB_ENCRYPTION_PASSPHRASE"}, Secret: true, Category: CategoryEnc, Usage: "one secret that both writes and reads (instead of recipients and an identity file): the repository's key is kept in the repository, sealed with it (age scrypt: opening it costs about a second and 256 MiB, once per process that reads or writes encrypted objects)"},

	{Key: KeyGCSCredentialsFile, Env: []string{"GOOGLE_APPLICATION_CREDENTIALS"}, Category: CategoryGCS, Usage: "service-account key `FILE` (default: Application Default Credentials)"},
	{Key: KeyGCSEndpoint, Env: []string{"PGB_GCS_ENDPOINT", "STORAGE_EMULATOR_HOST"}, Category: CategoryGCS, Usage: "custom endpoint, e.g. an emulator (no authentication is used then)"},
	{Key: KeyGCSChunkSize, Env: []string{"PGB_GCS_CHUNK_SIZE"}, Default: "16MiB", Kind: Size, Category: CategoryGCS, Usage: "resumable upload chunk size (memory per upload)"},
	{Key: KeyGCSConcurrency, Env: []string{"PGB_GCS_UPLOAD_CONCURRENCY"}, Default: "4", Kind: Int, Category: CategoryGCS, Usage: "uploads at once; more wait for a slot (memory: one chunk each; 0 = no limit)"},
	{Key: KeyGCSStorageClass, Env: []string{"PGB_GCS_STORAGE_CLASS"}, Category: CategoryGCS, Usage: "storage class of new objects (e.g. NEARLINE)"},
	{Key: KeyGCSKMSKeyName, Env: []string{"PGB_GCS_KMS_KEY_NAME"}, Category: CategoryGCS, Usage: "Cloud KMS key name for CMEK"},
	{Key: KeyGCSMaxAttempts, Env: []string{"PGB_GCS_MAX_ATTEMPTS"}, Category: CategoryGCS, Usage: "ignored, kept so that existing configurations load: --storage-retries sets the attempts of every request"},
	{Key: KeyGCSRequestTimeout, Env: []string{"PGB_GCS_REQUEST_TIMEOUT"}, Default: "60s", Kind: Duration, Category: CategoryGCS, Usage: "timeout of one request"},
}

// ignoredKeys are settings that no longer do anything and are accepted, with a
// warning, so that existing config files and archive_commands keep working: the SDKs'
// own attempts, replaced by one retry policy (storage-retries).
var ignoredKeys = []string{KeyS3MaxAttempts, KeyGCSMaxAttempts}

// RepoKeys are the settings of every repository backend: every command that opens a
// repository takes them.
func RepoKeys() []string {
	var out []string
	for _, s := range settings {
		if s.Category == CategoryS3 || s.Category == CategoryGCS || s.Category == CategoryEnc {
			out = append(out, s.Key)
		}
	}
	return out
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
	File     string   // the config file that was read, "" if none
	Warnings []string // what the user should fix but pgb can work with, one line each
	// Given holds the values set above the file, by flag or environment, by key.
	Given map[string]string
	// Repo is the URL of the repository this configuration works on. With several
	// repositories (repos) it is "" in what Load returns: For gives each one's.
	Repo string
	// Repos are the repositories repos lists, in its order; nil when one repository
	// (repo) is configured. Selected are those --repo names, in its order (every one
	// of Repos when it names none, or all).
	Repos, Selected []Repository
	// RepoName is the name of the repository (from repos) this configuration is For;
	// "" for the one repository of repo.
	RepoName          string
	PGData            string
	PGDSN             string
	PrimaryDSN        string
	StandbyMaxLag     int64
	Compression       string
	CompressionLevel  int
	LogLevel          string
	LogFormat         string
	StorageTimeout    time.Duration
	StorageRetries    int
	ArchiveTimeout    time.Duration
	WALTimeout        time.Duration
	WALPushConc       int // segments the background archiver ships at once; 1: no look-ahead
	WALFetchPrefetch  int // segments; 0 = off
	PartSize          int64
	Concurrency       int
	Fast              bool
	FailOnCorruptPage bool
	Incremental       string // off, on or auto
	FullEvery         int
	ChecksumDelta     bool
	LockMaxAge        time.Duration
	LockWait          time.Duration
	RetainFull        int // 0: not set
	RetainDays        int // 0: not set
	S3                S3
	GCS               GCS
	Encryption        Encryption

	// WALPushQueueMax is the archiver backlog (bytes of .ready segments in pg_wal)
	// beyond which a failed wal-push drops its segment; 0: never drop.
	WALPushQueueMax int64
}

// Repository is one entry of repos: its name, URL and the settings each repository
// has of its own (each taken from the entry, else from the settings around it).
type Repository struct {
	Name, Repo             string
	S3                     S3
	GCS                    GCS
	Encryption             Encryption
	RetainFull, RetainDays int
}

// For is c working on the repository r: its URL and own settings in place of c's.
func (c Config) For(r Repository) Config {
	c.RepoName, c.Repo = r.Name, r.Repo
	c.S3, c.GCS, c.Encryption = r.S3, r.GCS, r.Encryption
	c.RetainFull, c.RetainDays = r.RetainFull, r.RetainDays
	c.Repos, c.Selected = nil, nil
	return c
}

// Multi reports whether several repositories (repos) are configured.
func (c Config) Multi() bool { return len(c.Repos) > 0 }

// RepoEntryKeys are the settings an entry of repos may set for its repository alone,
// besides its name: the URL, every backend's settings, encryption and retention.
func RepoEntryKeys() []string {
	return append([]string{KeyRepo, KeyRetainFull, KeyRetainDays}, RepoKeys()...)
}

// S3 holds the S3 repository settings.
type S3 struct {
	Endpoint, Region                           string
	ForcePathStyle                             bool
	AccessKeyID, SecretAccessKey, SessionToken string
	Profile, SSE, SSEKMSKeyID, StorageClass    string
	PartSize                                   int64
	Concurrency, RateLimit                     int
	MaxParts                                   int
	RequestTimeout                             time.Duration
	Conditional                                string // enforced, head-check or unsupported
	Checksum                                   string // when-supported or when-required
}

// Encryption holds the client-side encryption settings, as given: the keys are read
// and parsed by internal/crypt when a repository is opened.
type Encryption struct {
	Mode           string // none or age (auto is resolved by Load)
	Recipients     string
	RecipientsFile string
	IdentityFile   string
	MACKey         string
	Passphrase     string
}

// GCS holds the GCS repository settings.
type GCS struct {
	CredentialsFile, Endpoint, StorageClass, KMSKeyName string
	ChunkSize                                           int64
	Concurrency                                         int
	RequestTimeout                                      time.Duration
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
	fc := fileContents{vals: map[string]string{}}
	if file != "" {
		var err error
		if fc, err = readFile(file); err != nil {
			return Config{}, err
		}
	}
	c, err := resolve(src, file, fc.vals, true, fc.repos)
	if err != nil {
		return Config{}, err
	}
	return withRepos(c, src, file, fc)
}

// withRepos resolves the repositories of repos, given above the file (NAME=URL,…) or
// in it (a list, or the same string), and the selection --repo makes among them.
func withRepos(c Config, src Source, file string, fc fileContents) (Config, error) {
	entries, from := fc.repos, "repos in "+file
	if _, inFile := fc.vals[KeyRepo]; inFile && len(fc.repos) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: config file %s has both repo and repos: keep one (a single repository is an entry of repos too)", file)
	}
	if v, ok := src(KeyRepos); ok && strings.TrimSpace(v) != "" { // an empty PGB_REPOS is no list
		var err error
		if entries, err = parseReposString(v); err != nil {
			return Config{}, fmt.Errorf("invalid configuration: --%s / PGB_REPOS: %w", KeyRepos, err)
		}
		from = "--" + KeyRepos + " / PGB_REPOS"
		if _, inFile := fc.vals[KeyRepo]; inFile {
			if _, given := src(KeyRepo); !given {
				c.Repo = "" // the list given above the file replaces its one repository
			}
		}
	}
	if len(entries) == 0 {
		if strings.EqualFold(c.Repo, "all") {
			return Config{}, fmt.Errorf("invalid configuration: --repo all: no repositories are listed (repos)")
		}
		return c, nil
	}
	seen := map[string]bool{}
	for _, ent := range entries {
		name := ent[keyName]
		switch {
		case !validRepoName(name):
			return Config{}, fmt.Errorf("invalid configuration: %s: repository name %q: want 1 to 32 of a-z, 0-9, - and _, starting with a letter, and not all", from, name)
		case seen[name]:
			return Config{}, fmt.Errorf("invalid configuration: %s: repository name %q appears twice", from, name)
		case strings.TrimSpace(ent[KeyRepo]) == "":
			return Config{}, fmt.Errorf("invalid configuration: %s: repository %q has no repo (its URL)", from, name)
		}
		seen[name] = true
		entSrc := func(key string) (string, bool) {
			if v, ok := ent[key]; ok {
				return v, true
			}
			if key == KeyRepo {
				return "", false
			}
			return src(key)
		}
		rc, err := resolve(entSrc, file, fc.vals, false, nil)
		if err != nil {
			return Config{}, fmt.Errorf("%w (repository %s)", err, name)
		}
		for _, w := range rc.Warnings {
			if !slices.Contains(c.Warnings, w) {
				c.Warnings = append(c.Warnings, "repository "+name+": "+w)
			}
		}
		c.Repos = append(c.Repos, Repository{Name: name, Repo: rc.Repo, S3: rc.S3, GCS: rc.GCS,
			Encryption: rc.Encryption, RetainFull: rc.RetainFull, RetainDays: rc.RetainDays})
	}
	sel := strings.TrimSpace(c.Repo)
	c.Repo = ""
	if sel == "" || strings.EqualFold(sel, "all") {
		c.Selected = append([]Repository(nil), c.Repos...)
		return c, nil
	}
	picked := map[string]bool{}
	for _, n := range strings.Split(sel, ",") {
		n = strings.TrimSpace(n)
		r, ok := c.Repository(n)
		if !ok {
			return Config{}, fmt.Errorf("invalid configuration: --repo / PGB_REPO %q: with repos, give the name of a repository (%s), several separated by commas, or all", sel, strings.Join(c.RepoNames(), ", "))
		}
		if !picked[n] {
			picked[n] = true
			c.Selected = append(c.Selected, r)
		}
	}
	return c, nil
}

// Repository returns the repository of repos called name.
func (c Config) Repository(name string) (Repository, bool) {
	for _, r := range c.Repos {
		if r.Name == name {
			return r, true
		}
	}
	return Repository{}, false
}

// RepoNames are the names of repos, in its order.
func (c Config) RepoNames() []string { return Names(c.Repos) }

// Names are the names of rs, in their order.
func Names(rs []Repository) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// keyName is the key of a repos entry's name.
const keyName = "name"

// validRepoName reports whether s can name a repository: short, lower-case, no
// character that a URL or a list of names uses, and not the word all.
func validRepoName(s string) bool {
	if s == "" || len(s) > 32 || s == "all" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// parseReposString reads repos as flag, environment variable or a string in the file:
// NAME=URL entries separated by commas.
func parseReposString(s string) ([]map[string]string, error) {
	var out []map[string]string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, url, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not NAME=URL", part)
		}
		out = append(out, map[string]string{keyName: strings.TrimSpace(name), KeyRepo: strings.TrimSpace(url)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q lists no repository (NAME=URL,NAME=URL…)", s)
	}
	return out, nil
}

// resolve is Load on the values of src and the config file: top is the configuration
// itself (not one of its repositories), whose file is checked for exposed secrets
// (those of the entries too) and ignored keys.
func resolve(src Source, file string, fileVals map[string]string, top bool, entries []map[string]string) (Config, error) {
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
	if w := exposedSecret(file, fileVals, entries); top && file != "" && w != "" {
		v, where := get(KeyAllowReadableConfig)
		allow, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return Config{}, fmt.Errorf("%s: %q is not true or false", where, v)
		}
		if !allow {
			return Config{}, fmt.Errorf("%s (or --%s to go on regardless)", w, KeyAllowReadableConfig)
		}
		c.Warnings = append(c.Warnings, w)
	}
	c.Given = map[string]string{}
	for _, s := range settings {
		if v, ok := src(s.Key); ok {
			c.Given[s.Key] = v
		}
	}
	for _, k := range ignoredKeys {
		if !top {
			break
		}
		_, inFile := fileVals[k]
		if _, given := c.Given[k]; given || inFile {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s is ignored: storage-retries sets the attempts of every storage request, in one layer so that they do not multiply; remove %s", k, k))
		}
	}
	c.Repo = str(KeyRepo)
	c.PGData = str(KeyPGData)
	c.PGDSN = str(KeyPGDSN)
	c.PrimaryDSN = str(KeyPrimaryDSN)
	c.Compression = strings.ToLower(str(KeyCompression))
	c.CompressionLevel = integer(KeyCompressionLevel)
	c.LogLevel = strings.ToLower(str(KeyLogLevel))
	c.LogFormat = strings.ToLower(str(KeyLogFormat))
	c.StorageTimeout = duration(KeyStorageTimeout)
	c.StorageRetries = integer(KeyStorageRetries)
	c.ArchiveTimeout = duration(KeyArchiveTimeout)
	c.WALTimeout = duration(KeyWALTimeout)
	if c.WALPushConc = integer(KeyWALPushConc); c.WALPushConc < 1 || c.WALPushConc > 64 {
		v, where := get(KeyWALPushConc)
		errs = append(errs, fmt.Sprintf("%s: %q: want 1 (no look-ahead) to 64", where, v))
	}
	c.LockMaxAge = duration(KeyLockMaxAge)
	if v, where := get(KeyLockWait); true {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			errs = append(errs, fmt.Sprintf("%s: %q is not a duration of 0 or more (e.g. 10m)", where, v))
		}
		c.LockWait = d
	}
	if c.WALFetchPrefetch = integer(KeyWALFetchPrefetch); c.WALFetchPrefetch < 0 || c.WALFetchPrefetch > 256 {
		errs = append(errs, fmt.Sprintf("wal-fetch-prefetch %d: want 0 (off) to 256 segments", c.WALFetchPrefetch))
	}
	for _, k := range []string{KeyRetainFull, KeyRetainDays} {
		n := integer(k)
		if n < 0 {
			v, where := get(k)
			errs = append(errs, fmt.Sprintf("%s: %q is negative: want a count, or 0 for not set", where, v))
		}
		if k == KeyRetainFull {
			c.RetainFull = n
		} else {
			c.RetainDays = n
		}
	}
	if v, where := get(KeyPartSize); true {
		n, err := ParseSize(v)
		if err != nil || n < 1<<20 {
			errs = append(errs, fmt.Sprintf("%s: %q is not a size of at least 1MiB (e.g. 512MiB, 1GiB)", where, v))
		}
		c.PartSize = n
	}
	size := func(key string, minimum int64) int64 {
		v, where := get(key)
		n, err := ParseSize(v)
		if err != nil || n < minimum {
			errs = append(errs, fmt.Sprintf("%s: %q is not a size of at least %d bytes (e.g. 16MiB)", where, v, minimum))
		}
		return n
	}
	c.StandbyMaxLag = size(KeyStandbyMaxLag, 1)
	boolean := func(key string) bool {
		v, where := get(key)
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not true or false", where, v))
		}
		return b
	}
	c.S3 = S3{
		Endpoint: str(KeyS3Endpoint), Region: str(KeyS3Region), ForcePathStyle: boolean(KeyS3ForcePathStyle),
		AccessKeyID: str(KeyS3AccessKeyID), SecretAccessKey: str(KeyS3SecretAccessKey), SessionToken: str(KeyS3SessionToken),
		Profile: str(KeyS3Profile), SSE: str(KeyS3SSE), SSEKMSKeyID: str(KeyS3SSEKMSKeyID), StorageClass: str(KeyS3StorageClass),
		PartSize: size(KeyS3PartSize, 5<<20), Concurrency: integer(KeyS3Concurrency),
		RateLimit: integer(KeyS3RateLimit), RequestTimeout: duration(KeyS3RequestTimeout),
		Conditional: str(KeyS3Conditional), MaxParts: integer(KeyS3MaxParts), Checksum: str(KeyS3Checksum),
	}
	switch c.S3.Checksum {
	case "when-supported", "when-required":
	default:
		errs = append(errs, fmt.Sprintf("s3-checksum %q: want when-supported or when-required", c.S3.Checksum))
	}
	if c.S3.MaxParts < 1 || c.S3.MaxParts > 10000 {
		errs = append(errs, fmt.Sprintf("s3-max-parts %d: want 1 to 10000 (the store's limit on the parts of one upload)", c.S3.MaxParts))
	}
	switch c.S3.Conditional {
	case "enforced", "head-check", "unsupported":
	default:
		errs = append(errs, fmt.Sprintf("s3-conditional-writes %q: want enforced, head-check or unsupported", c.S3.Conditional))
	}
	switch c.S3.SSE {
	case "", "AES256", "aws:kms":
	default:
		errs = append(errs, fmt.Sprintf("s3-sse %q: want AES256 or aws:kms", c.S3.SSE))
	}
	c.GCS = GCS{
		CredentialsFile: str(KeyGCSCredentialsFile), Endpoint: str(KeyGCSEndpoint), StorageClass: str(KeyGCSStorageClass),
		KMSKeyName: str(KeyGCSKMSKeyName), ChunkSize: size(KeyGCSChunkSize, 256<<10),
		Concurrency:    integer(KeyGCSConcurrency),
		RequestTimeout: duration(KeyGCSRequestTimeout),
	}
	c.Encryption = Encryption{
		Mode: strings.ToLower(str(KeyEncryption)), Recipients: str(KeyEncryptionRecipients),
		RecipientsFile: str(KeyEncryptionRecipientsFile), IdentityFile: str(KeyEncryptionIdentityFile),
		MACKey: str(KeyEncryptionMACKey), Passphrase: str(KeyEncryptionPassphrase),
	}
	switch c.Encryption.Mode {
	case "none", "age":
	case "auto":
		c.Encryption.Mode = "none"
		if c.Encryption.Recipients != "" || c.Encryption.RecipientsFile != "" || c.Encryption.Passphrase != "" {
			c.Encryption.Mode = "age"
		}
	default:
		errs = append(errs, fmt.Sprintf("encryption %q: want age, none or auto", c.Encryption.Mode))
	}
	if c.Encryption.Mode == "none" && (c.Encryption.Recipients != "" || c.Encryption.RecipientsFile != "" || c.Encryption.Passphrase != "") {
		c.Warnings = append(c.Warnings, "encryption: none although encryption keys are given: new WAL and backups are stored unencrypted (in a repository created encrypted, writing is refused)")
	}
	if v, where := get(KeyWALPushQueueMax); true {
		n, err := ParseSize(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not a size (e.g. 4GiB; 0 = off)", where, v))
		}
		c.WALPushQueueMax = n
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
	c.Incremental = strings.ToLower(str(KeyIncremental))
	switch c.Incremental {
	case "off", "on", "auto":
	default:
		v, where := get(KeyIncremental)
		errs = append(errs, fmt.Sprintf("%s: %q: want off, on or auto", where, v))
	}
	if c.FullEvery = integer(KeyFullEvery); c.FullEvery < 1 {
		errs = append(errs, fmt.Sprintf("full-every: %d: want 1 or more", c.FullEvery))
	}
	if v, where := get(KeyChecksumDelta); true {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not true or false", where, v))
		}
		c.ChecksumDelta = b
	}
	if v, where := get(KeyFailOnCorruptPage); true {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not true or false", where, v))
		}
		c.FailOnCorruptPage = b
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

// ReadFile reads a flat YAML map of setting keys to scalar values. Each value is taken
// exactly as written (0123_4567 stays 0123_4567, not the number YAML would make of it),
// so that a secret cannot silently change. Unknown keys are an error, so a typo cannot
// silently leave a setting at its default; so are a key given twice and a value that is
// not a scalar. true/false are accepted only for boolean settings. repos, the one key
// that takes a list, is left out: see readFile.
func ReadFile(path string) (map[string]string, error) {
	fc, err := readFile(path)
	return fc.vals, err
}

// fileContents is what a config file holds: its settings, and the entries of its repos
// list (each the settings of one repository, its name under "name").
type fileContents struct {
	vals  map[string]string
	repos []map[string]string
}

func readFile(path string) (fileContents, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileContents{}, fmt.Errorf("config file: %w", err)
	}
	return parseFile(path, b)
}

// parseFile is readFile on the bytes b of the file at path.
func parseFile(path string, b []byte) (fileContents, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fileContents{}, fmt.Errorf("config file %s is not valid YAML: %w", path, err)
	}
	fc := fileContents{vals: map[string]string{}}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return fc, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fileContents{}, fmt.Errorf("config file %s is not a map of settings (key: value, one a line)", path)
	}
	vals, err := parseMap(path, root, func(k string) bool { _, ok := Lookup(k); return ok })
	if err != nil {
		return fileContents{}, err
	}
	fc.vals = vals
	if v, ok := vals[KeyRepos]; ok {
		delete(fc.vals, KeyRepos)
		if v != "" {
			if fc.repos, err = parseReposString(v); err != nil {
				return fileContents{}, fmt.Errorf("config file %s: repos: %w", path, err)
			}
		}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != KeyRepos || scalar(root.Content[i+1]).Kind != yaml.SequenceNode {
			continue
		}
		entryKeys := map[string]bool{keyName: true}
		for _, k := range RepoEntryKeys() {
			entryKeys[k] = true
		}
		for _, en := range scalar(root.Content[i+1]).Content {
			en = scalar(en)
			if en.Kind != yaml.MappingNode {
				return fileContents{}, fmt.Errorf("config file %s line %d: an entry of repos is a map (name: NAME, repo: URL, and that repository's own settings)", path, en.Line)
			}
			ent, err := parseMap(path, en, func(k string) bool { return entryKeys[k] })
			if err != nil {
				return fileContents{}, fmt.Errorf("%w (in repos: an entry takes name, %s)", err, strings.Join(RepoEntryKeys(), ", "))
			}
			fc.repos = append(fc.repos, ent)
		}
		if len(fc.repos) == 0 {
			return fileContents{}, fmt.Errorf("config file %s line %d: repos lists no repository", path, root.Content[i].Line)
		}
	}
	return fc, nil
}

// parseMap reads the mapping node m of the file at path: keys that known accepts, to
// scalar values taken as written; a repos key with a list as value is left to the
// caller.
func parseMap(path string, m *yaml.Node, known func(string) bool) (map[string]string, error) {
	out := map[string]string{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], scalar(m.Content[i+1])
		k := kn.Value
		s, _ := Lookup(k)
		if kn.Kind != yaml.ScalarNode || !known(k) || k == KeyConfig {
			return nil, fmt.Errorf("config file %s line %d: unknown key %q (keys are the flag names, e.g. repo, compression)", path, kn.Line, k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("config file %s line %d: key %q appears twice", path, kn.Line, k)
		}
		switch {
		case k == KeyRepos && vn.Kind == yaml.SequenceNode:
			out[k] = ""
		case vn.Kind != yaml.ScalarNode:
			return nil, fmt.Errorf("config file %s line %d: key %q wants a single value", path, kn.Line, k)
		case vn.Tag == "!!null":
			out[k] = ""
		case vn.Tag == "!!bool" && s.Kind != Bool:
			return nil, fmt.Errorf("config file %s line %d: key %q wants a %s, not true/false", path, kn.Line, k, kindName(s.Kind))
		default:
			out[k] = vn.Value
		}
	}
	return out, nil
}

// scalar follows an alias to the node it names.
func scalar(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// exposedSecret warns when the config file holds a secret (at its top or in an entry
// of repos) and other users can read it.
func exposedSecret(path string, vals map[string]string, entries []map[string]string) string {
	var secrets []string
	for _, m := range append([]map[string]string{vals}, entries...) {
		for k, v := range m {
			if s, _ := Lookup(k); s.Secret && v != "" && (k != KeyPGDSN && k != KeyPrimaryDSN || dsnHasPassword(v)) && !slices.Contains(secrets, k) {
				secrets = append(secrets, k)
			}
		}
	}
	if len(secrets) == 0 {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || !readableByOthers(fi) {
		return ""
	}
	sort.Strings(secrets)
	return fmt.Sprintf("config file %s holds a secret (%s) and other users can read it (mode %04o): chmod 600 %s, owned by the user pgb runs as (or chmod 640 with a group of that user's own, as the packages install it: root:postgres)",
		path, strings.Join(secrets, ", "), fi.Mode().Perm(), path)
}

// readableByOthers reports whether users other than the one pgb runs as (and root)
// can read the file: anyone (o+r), or a group (g+r) other than the private group of
// the service user — the user pgb runs as, or postgres when pgb runs as root — in a
// file owned by root or by pgb's user. The packages install /etc/pgb/pgb.yaml
// root:postgres 0640: read by root and by postgres, whose own group it is (a user
// named like the group, whose primary group it is). Another user's group (www-data),
// a shared group (users) or a group that cannot be looked up counts as others. A
// user added to the postgres group can read the file, as it can read a data
// directory with group access.
func readableByOthers(fi os.FileInfo) bool {
	perm := fi.Mode().Perm()
	if perm&0o004 != 0 {
		return true
	}
	if perm&0o040 == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	me, err := user.Current()
	if err != nil {
		return true
	}
	owner := strconv.FormatUint(uint64(st.Uid), 10)
	if owner != "0" && owner != me.Uid {
		return true
	}
	service := me
	if me.Uid == "0" {
		if service, err = user.Lookup(serviceUser); err != nil {
			return true
		}
	}
	return !privateGroupOf(service, st.Gid)
}

// serviceUser is the user PostgreSQL, and so pgb, runs as.
const serviceUser = "postgres"

// privateGroupOf reports whether gid is u's private group: its primary group, named
// as u.
func privateGroupOf(u *user.User, gid uint32) bool {
	id := strconv.FormatUint(uint64(gid), 10)
	if u.Gid != id {
		return false
	}
	g, err := user.LookupGroupId(id)
	return err == nil && g.Name == u.Username
}

// dsnHasPassword reports whether a PostgreSQL connection string holds a password: a
// password keyword, or a URL with one (postgres://user:secret@host/db). Without one,
// it names a server and a user, which are no secret.
func dsnHasPassword(dsn string) bool {
	if strings.Contains(strings.ToLower(dsn), "password") {
		return true
	}
	if u, err := url.Parse(strings.TrimSpace(dsn)); err == nil && u.User != nil {
		_, set := u.User.Password()
		return set
	}
	return false
}

// ParseSize reads a byte size: a number with an optional k/KiB, m/MiB, g/GiB, t/TiB
// suffix (powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	orig := s
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
		return 0, fmt.Errorf("%q is not a size", orig)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large a size", orig)
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

// PassOn carries the settings given by flag or environment over to a pgb command that
// another process runs later, in another environment (restore_command, run by
// PostgreSQL): flags --key=value, in the order of keys, for each non-secret setting
// given, even one equal to its default (it overrides the config file the other
// process reads too, so that both resolve the same value); and the keys of the
// secrets given that way, which are never written down (the other process must find
// them itself: in its environment or the config file). Settings from the config file
// travel with --config.
func PassOn(c Config, keys []string) (flags, secrets []string) {
	for _, k := range keys {
		v, ok := c.Given[k]
		s, known := Lookup(k)
		if !ok || !known {
			continue
		}
		if s.Secret {
			if strings.TrimSpace(v) != "" {
				secrets = append(secrets, k)
			}
			continue
		}
		flags = append(flags, "--"+k+"="+strings.TrimSpace(v))
	}
	return flags, secrets
}
