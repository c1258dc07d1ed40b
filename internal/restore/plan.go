package restore

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
)

// Plan chooses the backup to restore from rp: backup name, or with name "" the newest
// that can reach the target (see Choose), and reads its manifest (ChooseManifest). t nil
// means files only (backup-fetch): no recovery follows, so the end of the archive on
// the backup's own timeline is the target and no timeline constrains the choice. It
// returns the manifest, which the caller closes, and the target as Choose settled it
// (the timeline pinned, a 32-bit XID made full).
//
// A damaged backup (found so by the listing, see repo.ListBackups, or when its manifest
// is read) is skipped with a warning on log, unless it is the one named: that is an
// error.
func Plan(ctx context.Context, rp *repo.Repo, log *slog.Logger, name string, t *Target) (*repo.Manifest, Target, error) {
	target := Target{Kind: ToEnd, Timeline: "current", filesOnly: true}
	if t != nil {
		target = *t
	}
	backups, damaged, err := rp.ListBackups(ctx)
	if err != nil {
		return nil, target, err
	}
	skip := func(d repo.DamagedBackup) {
		log.Warn("skipping a damaged backup", "backup", d.Name, "reason", d.Err.Error())
	}
	for _, d := range damaged {
		if d.Name == name {
			return nil, target, fmt.Errorf("backup %s cannot be restored: %w; pick another (pgb backup-list shows them)", name, d.Err)
		}
		skip(d)
	}
	m, err := ChooseManifest(ctx, rp, backups, &target, name, skip)
	if err != nil {
		return nil, target, err
	}
	return m, target, nil
}

// restoreCommandKeys are the settings restore_command carries besides --repo and
// --config: every repository backend's, and how storage calls are timed and retried.
func restoreCommandKeys() []string {
	return append(config.RepoKeys(), config.KeyRepos, config.KeyStorageTimeout, config.KeyStorageRetries, config.KeyAllowReadableConfig)
}

// RestoreCommand is the restore_command the restored cluster runs: the pgb at self (an
// absolute path), wal-fetch, from cfg.Repo (a URL, or names of repos), with the
// repository settings of cfg it needs. Settings
// given by flag or environment become flags (PostgreSQL runs it in its own
// environment); the config file travels as --config, by absolute path, and so does a
// key file (gcs-credentials-file) given by a relative path. Every word is
// shell-quoted and every % in it doubled (PostgreSQL reads a lone % as a placeholder),
// so only the trailing %f %p are placeholders. Secrets are never written: their keys
// come back so that restore can say what the server must provide.
func RestoreCommand(self string, cfg config.Config) (cmd string, secrets []string) {
	parts := []string{self, "wal-fetch", "--repo", cfg.Repo}
	if cfg.File != "" {
		f, _ := filepath.Abs(cfg.File) // only fails without a working directory; the path then stays as given
		parts = append(parts, "--config", f)
	}
	flags, secrets := config.PassOn(absolutePaths(cfg), restoreCommandKeys())
	parts = append(parts, flags...)
	for i, p := range parts {
		parts[i] = commandWord(p)
	}
	return strings.Join(append(parts, "%f", "%p"), " "), secrets
}

// absolutePaths is cfg with the file settings given by a relative path made absolute:
// PostgreSQL runs restore_command in the data directory, not where restore ran.
func absolutePaths(cfg config.Config) config.Config {
	given := make(map[string]string, len(cfg.Given))
	for k, v := range cfg.Given {
		given[k] = v
	}
	for _, k := range []string{config.KeyGCSCredentialsFile, config.KeyEncryptionIdentityFile, config.KeyEncryptionRecipientsFile} { // the settings that name a local file
		if v := strings.TrimSpace(given[k]); v != "" && !filepath.IsAbs(v) {
			if abs, err := filepath.Abs(v); err == nil {
				given[k] = abs
			}
		}
	}
	cfg.Given = given
	return cfg
}

// commandWord is s as one word of restore_command: shell-quoted, and every % doubled,
// since PostgreSQL reads a lone % as a placeholder (%f, %p, %r) and %% as a %.
func commandWord(s string) string {
	return strings.ReplaceAll(ShellQuote(s), "%", "%%")
}

// ShellQuote is s as one word for a POSIX shell: as it is when it holds only
// characters no shell treats specially, else in single quotes (a ' inside as '"'"').
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("/._-:+=@,", r)
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
