package cmd

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/open"
)

// openStore opens the configured repository with retries and deadlines.
// create allows a missing filesystem repository directory to be created.
func (e *env) openStore(ctx context.Context, create bool) (storage.Store, error) {
	if strings.HasPrefix(e.cfg.Repo, "s3://") && e.cfg.S3.Conditional == "head-check" {
		e.log.Warn("this S3 store does not enforce conditional writes: put-if-absent falls back to a HEAD check before each write, which two racing writers could both pass")
	}
	return open.Open(ctx, e.cfg.Repo, open.Options{
		Timeout:     e.cfg.StorageTimeout,
		MaxAttempts: e.cfg.StorageRetries,
		Create:      create,
		S3:          e.cfg.S3,
		GCS:         e.cfg.GCS,
	})
}

func (e *env) codec() (compress.Codec, error) {
	return compress.New(e.cfg.Compression, e.cfg.CompressionLevel)
}

// dataDir is --pgdata / PGDATA, else the working directory when it is a data
// directory (archive_command and restore_command run there). "" when neither.
func (e *env) dataDir() string {
	if e.cfg.PGData != "" {
		return e.cfg.PGData
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join(wd, "global", "pg_control")); err == nil {
		return wd
	}
	if _, err := os.Stat(filepath.Join(wd, "PG_VERSION")); err == nil {
		return wd
	}
	return ""
}

// oneShotMemory tunes the garbage collector for a short process that handles one WAL
// file: its memory is bounded by the file (16 MiB segments by default), so collecting
// while it runs only costs time. The limit keeps a collection as a backstop for
// unusually large segments.
func oneShotMemory() {
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(512 << 20)
}
