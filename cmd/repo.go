package cmd

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"filippo.io/age"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/open"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// openStore opens the configured repository with retries and deadlines.
// create allows a missing filesystem repository directory to be created.
func (e *env) openStore(ctx context.Context, create bool) (storage.Store, error) {
	if strings.HasPrefix(e.cfg.Repo, "s3://") && e.cfg.S3.Conditional == "head-check" {
		e.log.Warn("this S3 store does not enforce conditional writes: put-if-absent falls back to a HEAD check before each write, which two racing writers could both pass")
	}
	return open.Open(ctx, e.cfg.Repo, open.Options{
		Timeout: e.cfg.StorageTimeout,
		Retry:   retry.Policy{MaxAttempts: e.cfg.StorageRetries},
		Create:  create,
		S3:      e.cfg.S3,
		GCS:     e.cfg.GCS,
	})
}

// openRepo opens the configured repository (see openStore) as pgb's repository layer,
// writing bulk data with codec (nil: the configured compression).
func (e *env) openRepo(ctx context.Context, create bool, codec compress.Codec) (*repo.Repo, error) {
	return e.openRepoThrough(ctx, create, codec, nil)
}

// openRepoThrough is openRepo with the store wrapped last by wrap (nil: none).
func (e *env) openRepoThrough(ctx context.Context, create bool, codec compress.Codec, wrap func(storage.Store) storage.Store) (*repo.Repo, error) {
	if codec == nil {
		var err error
		if codec, err = e.codec(); err != nil {
			return nil, err
		}
	}
	st, err := e.openStore(ctx, create)
	if err != nil {
		return nil, err
	}
	if e.wrapStore != nil {
		st = e.wrapStore(st)
	}
	if wrap != nil {
		st = wrap(st)
	}
	opt, err := e.repoOptions(codec)
	if err != nil {
		_ = st.Close() // nothing was written
		return nil, err
	}
	return repo.New(st, opt), nil
}

// repoOptions are the options of a Repo writing bulk data with codec: with the
// encryption keys the configuration names, read once per process.
func (e *env) repoOptions(codec compress.Codec) (repo.Options, error) {
	opt := repo.Options{Codec: codec, Log: e.log}
	k, err := e.encryptionKeys()
	if err != nil {
		return repo.Options{}, err
	}
	opt.Keys, opt.EncryptNew, opt.Passphrase = k, e.cfg.Encryption.Mode == "age", e.cfg.Encryption.Passphrase
	return opt, nil
}

// encryptionKeys reads and parses the keys the configuration names (recipients, the
// identity file, the MAC key); none named gives empty keys. A key that cannot be read
// or parsed is a usage error: the command must not go on without it.
func (e *env) encryptionKeys() (*crypt.Keys, error) {
	e.keysOnce.Do(func() { e.keys, e.keysErr = loadKeys(e.cfg.Encryption) })
	return e.keys, e.keysErr
}

func loadKeys(c config.Encryption) (*crypt.Keys, error) {
	var rs []age.Recipient
	var names []string
	if c.Recipients != "" {
		r, n, err := crypt.ParseRecipients(c.Recipients)
		if err != nil {
			return nil, usageError{fmt.Errorf("encryption-recipients: %w", err)}
		}
		rs, names = append(rs, r...), append(names, n...)
	}
	if c.RecipientsFile != "" {
		r, n, err := crypt.ReadRecipientsFile(c.RecipientsFile)
		if err != nil {
			return nil, usageError{err}
		}
		rs, names = append(rs, r...), append(names, n...)
	}
	var ids []age.Identity
	if c.IdentityFile != "" {
		var err error
		if ids, err = crypt.ReadIdentityFile(c.IdentityFile); err != nil {
			return nil, usageError{err}
		}
	}
	macs, err := crypt.ParseMACKeys(c.MACKey)
	if err != nil {
		return nil, usageError{err}
	}
	var mac []byte
	if len(macs) > 0 {
		mac = macs[0]
	}
	return crypt.New(rs, names, ids, mac).WithReadMACKeys(macs...), nil
}

// canEncrypt fails, as a usage error, when new objects are to be encrypted and the
// keys to do so are missing: wal-push and backup-push check it before anything else.
func (e *env) canEncrypt() error {
	if e.cfg.Encryption.Mode != "age" {
		return nil
	}
	k, err := e.encryptionKeys()
	if err != nil {
		return err
	}
	if e.cfg.Encryption.Passphrase != "" && !k.HasRecipients() {
		return nil // the passphrase key: opened (or made) by the first write
	}
	if err := k.CanWrite(); err != nil {
		return usageError{err}
	}
	return nil
}

func (e *env) codec() (compress.Codec, error) {
	return compress.New(e.cfg.Compression, e.cfg.CompressionLevel)
}

// dataDir is the data directory of the cluster whose WAL wal-push archives: --pgdata or
// PGDATA when given; else the working directory when it is a data directory
// (archive_command runs there); else the config file's pgdata. The config file comes
// last because it may be shared with other clusters, or written for backup-push: the
// directory PostgreSQL runs archive_command in is the surer word. "" when none.
func (e *env) dataDir() string {
	if _, given := e.cfg.Given[config.KeyPGData]; given && e.cfg.PGData != "" {
		return e.cfg.PGData
	}
	if wd := workingDataDir(); wd != "" {
		return wd
	}
	return e.cfg.PGData
}

// workingDataDir is the working directory when it is a data directory, else "".
func workingDataDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for _, f := range []string{filepath.Join("global", "pg_control"), "PG_VERSION"} {
		if _, err := os.Stat(filepath.Join(wd, f)); err == nil {
			return wd
		}
	}
	return ""
}

// oneShotMemory tunes the garbage collector for a short process that handles one WAL
// file: its memory is bounded by the file (16 MiB segments by default), so collecting
// while it runs only costs time. The limit keeps a collection as a backstop for
// unusually large segments. The collector is turned off by a percentage too large to
// reach, not by -1: SetGCPercent(-1) waits for the collection that start-up began to
// finish (about 3 ms of a call's CPU); this lets it finish in the background.
func oneShotMemory() {
	debug.SetMemoryLimit(512 << 20)
	debug.SetGCPercent(math.MaxInt32)
}
