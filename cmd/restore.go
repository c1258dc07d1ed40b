package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/readonly"
	"github.com/pgb-project/pgb/internal/wal"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "restore a backup and set up recovery to a target (point-in-time recovery)",
		Description: "Restores the newest backup that can reach the target into --pgdata (which must be absent or\n" +
			"empty), verifying every file against the manifest, and writes recovery.signal and, to\n" +
			"postgresql.auto.conf, a restore_command that fetches WAL from this repository (with --config and\n" +
			"every non-secret setting given by flag or environment, even one equal to its default since it\n" +
			"overrides the file; file paths made absolute (PostgreSQL runs it in the data directory); never\n" +
			"a secret; every value shell-quoted, each % in it doubled so that only\n" +
			"%f %p are placeholders) plus the recovery_target_* settings. Start PostgreSQL on the directory\n" +
			"to replay WAL to the target.\n" +
			"Without a target, recovery replays the whole archive. global/pg_control is written last, so an\n" +
			"interrupted restore never leaves a directory PostgreSQL would start. It leaves the directory\n" +
			"marked with " + restore.IncompleteMarker + " (removed as the very last step): --force clears\n" +
			"such a directory, and its tablespace directories, then restores; it refuses any directory\n" +
			"without that marker, and one that holds global/pg_control or postmaster.pid (a restore that\n" +
			"finished, or a server ran on it): remove the marker or the directory yourself. As root, files\n" +
			"belong to --owner, else to the backed-up data directory's owner recorded in the manifest\n" +
			"(refused if this host lacks that user), never to root; and restore warns when that user cannot\n" +
			"read the --config file restore_command names (judged from mode bits and primary group only),\n" +
			"saying what to chown before starting PostgreSQL.\n\n" +
			"The restored cluster does not archive (archive_mode = off) unless --archive-mode preserve says it\n" +
			"is the new primary: a promoted drill or copy would otherwise archive a new timeline into the\n" +
			"source's repository. The backup is chosen on the target timeline's history; when the repository's\n" +
			"history forked (a timeline that is no ancestor of the newest, or one archived on after a child\n" +
			"branched from it), \"latest\" is refused: choose with --target-timeline N.\n\n" +
			"Before writing anything, restore checks the target against the recoverable window (what pgb\n" +
			"status shows, from the archived WAL's summaries): a target before the end of the oldest usable\n" +
			"backup, in a gap of the archived WAL, or after the last archived commit is refused with the\n" +
			"window (PostgreSQL would otherwise replay everything and stop with \"recovery ended before\n" +
			"configured recovery target was reached\"). For the newest state there is, give no target: restore\n" +
			"to the end of the archive. That too is refused when the chosen backup's window is cut (dropped,\n" +
			"missing or damaged WAL, or WAL that ends early) before WAL archived after the cut: PostgreSQL would\n" +
			"promote at the cut, the later WAL never replayed; the line says what --target-lsn restores to the\n" +
			"cut, or which backup after it reaches the end. --target-beyond-archive accepts a target after the last archived\n" +
			"commit only for WAL that will be archived before replay gets there: recovery does not wait for\n" +
			"it (wal-fetch reports a segment not archived yet as the end of the archive).\n\n" +
			"--dry-run writes nothing: it chooses the backup and checks the target as above (and --pgdata, if\n" +
			"given, --tablespace-map and the owner, refusing what the restore refuses), then prints the backup, the WAL to replay and an RTO estimate from the restore and replay\n" +
			"throughput the newest successful pgb drill runs measured on this repository (the median of the\n" +
			"last 5), or says that no drill is recorded.",
		Flags: append(append(flags(config.KeyPGData, config.KeyConcurrency), restoreFlags(true)...),
			&cli.BoolFlag{Name: "json", Usage: "with --dry-run: print the plan as one JSON document (backup, target, RTO estimate)"}),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			if c.Bool("json") && !c.Bool("dry-run") {
				return usagef("--json goes with --dry-run: a restore prints its progress and what to do next")
			}
			t, err := parseTarget(c)
			if err != nil {
				return err
			}
			return e.restore(c, c.String("backup"), e.cfg.PGData, &t)
		}),
	}
}

func backupFetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup-fetch",
		Usage:     "restore the files of one backup, without recovery settings",
		ArgsUsage: "NAME DIR",
		Description: "Restores backup NAME (or LATEST) into DIR (absent or empty), with backup_label and\n" +
			"tablespace_map, verifying every file, but writes no recovery.signal and no restore_command:\n" +
			"for those who set up recovery themselves. --force clears what an interrupted restore or\n" +
			"backup-fetch left (a directory holding " + restore.IncompleteMarker + "), and nothing else.",
		Flags: append(flags(config.KeyConcurrency), restoreFlags(false)...),
		Action: action(2, "NAME DIR", func(c *cli.Context, e *env) error {
			name := c.Args().Get(0)
			if strings.EqualFold(name, "LATEST") {
				name = ""
			}
			return e.restore(c, name, c.Args().Get(1), nil)
		}),
	}
}

func restoreFlags(targets bool) []cli.Flag {
	out := []cli.Flag{
		&cli.StringSliceFlag{Name: "tablespace-map", Usage: "restore the tablespace at OLD to NEW (`OLD=NEW`, repeatable)"},
		&cli.StringFlag{Name: "owner", Usage: "when run as root, the OS `USER` the restored files belong to (default: the owner of the backed-up data directory)"},
		&cli.BoolFlag{Name: "force", Usage: "first clear what an interrupted restore left (only directories holding " + restore.IncompleteMarker + "); with --delta, go on despite a stale postmaster.pid or a missing pg_control"},
		&cli.BoolFlag{Name: "delta", Usage: "restore into --pgdata holding an older copy of the same cluster, its server stopped: files whose size and checksum match the backup's are kept, the others written, the rest removed"},
		&cli.BoolFlag{Name: "trust-time", Usage: "with --delta: keep, without reading it, a file whose size and modification time are the backup's and that nothing changed since the restore that wrote it (its record in .pgb-restored), or whose time is over a second before the backup started; trusts the clock and that nobody set times back or forged the record; by default every file is read and checksummed"},
	}
	if !targets {
		return out
	}
	return append(out,
		&cli.StringFlag{Name: "backup", Usage: "restore this backup (`NAME`) instead of the newest that can reach the target"},
		&cli.StringFlag{Name: "target-time", Usage: "recover to `TIMESTAMP` (RFC 3339 or PostgreSQL's format, with a time zone)"},
		&cli.StringFlag{Name: "target-name", Usage: "recover to the restore point `NAME` made with pgb restore-point"},
		&cli.StringFlag{Name: "target-lsn", Usage: "recover to `LSN` (e.g. 0/3000060)"},
		&cli.StringFlag{Name: "target-xid", Usage: "recover to the commit of transaction `XID`: the 32-bit form logs and pg_stat_activity show, or the full 64-bit one (pg_current_xact_id())"},
		&cli.BoolFlag{Name: "target-immediate", Usage: "stop as soon as the backup is consistent"},
		&cli.BoolFlag{Name: "target-exclusive", Usage: "stop just before the target (time, LSN, XID) instead of just after it"},
		&cli.BoolFlag{Name: "target-beyond-archive", Usage: "accept a time or LSN target after the last archived commit, for WAL that will be archived before replay gets there (recovery does not wait: a segment not archived when it is asked for ends recovery); to recover as far as the archive goes, give no target"},
		&cli.StringFlag{Name: "target-action", Value: "pause", Usage: "at the target: pause, promote or shutdown"},
		&cli.StringFlag{Name: "target-timeline", Value: "latest", Usage: "timeline to follow: latest, current or a number"},
		&cli.BoolFlag{Name: "dry-run", Usage: "write nothing: say which backup and WAL the restore would use and estimate how long recovery takes, from the throughput pgb drill measured"},
		&cli.StringFlag{Name: "archive-mode", Value: "off", Usage: "archive_mode of the restored cluster: off (the default: a drill or a copy never archives into the source's repository) or preserve (this copy is the new primary: it archives as the source did once promoted)"},
	)
}

// targetFlags names the flags that give a recovery target's point: restore's
// --target-*, status's shorter forms.
type targetFlags struct{ time, name, lsn, xid string }

// readTargetPoint sets t's kind and point from the flags f names; n is how many of
// them were given.
func readTargetPoint(c *cli.Context, t *restore.Target, f targetFlags) (n int, err error) {
	if v := c.String(f.time); v != "" {
		tm, err := restore.ParseTime(v)
		if err != nil {
			return n, usageError{err}
		}
		t.Kind, t.Time, n = restore.ToTime, tm, n+1
	}
	if v := c.String(f.name); v != "" {
		t.Kind, t.Name, n = restore.ToName, v, n+1
	}
	if v := c.String(f.lsn); v != "" {
		l, err := wal.ParseLSN(v)
		if err != nil {
			return n, usageError{fmt.Errorf("--%s: %w", f.lsn, err)}
		}
		t.Kind, t.LSN, n = restore.ToLSN, l, n+1
	}
	if v := c.String(f.xid); v != "" {
		x, err := strconv.ParseUint(v, 10, 64)
		if err != nil || uint32(x) < 3 {
			return n, usagef("--%s %q is not a transaction id", f.xid, v)
		}
		t.Kind, t.XID, n = restore.ToXID, x, n+1
	}
	return n, nil
}

func parseTarget(c *cli.Context) (restore.Target, error) {
	t := restore.Target{Action: c.String("target-action"), Timeline: c.String("target-timeline"), Exclusive: c.Bool("target-exclusive"),
		BeyondArchive: c.Bool("target-beyond-archive")}
	n, err := readTargetPoint(c, &t, targetFlags{"target-time", "target-name", "target-lsn", "target-xid"})
	if err != nil {
		return t, err
	}
	if c.Bool("target-immediate") {
		t.Kind, n = restore.ToImmediate, n+1
	}
	if n > 1 {
		return t, usagef("give at most one of --target-time, --target-name, --target-lsn, --target-xid, --target-immediate")
	}
	switch t.Action {
	case "pause", "promote", "shutdown":
	default:
		return t, usagef("--target-action %q: want pause, promote or shutdown", t.Action)
	}
	if tl := t.Timeline; tl != "latest" && tl != "current" {
		if _, err := strconv.ParseUint(tl, 10, 32); err != nil {
			return t, usagef("--target-timeline %q: want latest, current or a timeline number", tl)
		}
	}
	if m := c.String("archive-mode"); m != "preserve" && m != "off" {
		return t, usagef("--archive-mode %q: want preserve or off", m)
	}
	if t.Exclusive && (t.Kind == restore.ToEnd || t.Kind == restore.ToImmediate || t.Kind == restore.ToName) {
		return t, usagef("--target-exclusive applies to --target-time, --target-lsn and --target-xid only")
	}
	return t, nil
}

// restore restores backup name ("" = choose) into dir; t nil means files only.
func (e *env) restore(c *cli.Context, name, dir string, t *restore.Target) error {
	ctx := c.Context
	dry := t != nil && c.Bool("dry-run")
	pl, err := e.planRestore(c, name, dir, t, dry)
	if pl != nil {
		defer func() {
			if pl.m != nil {
				_ = pl.m.Close() // its file list, a temporary file
			}
			if pl.rp != nil {
				_ = pl.rp.Close() // releases connections only: restore reads, and its writes are local
			}
		}()
	}
	if err != nil {
		return err
	}
	if dry {
		return e.restoreDryRun(ctx, pl, c.Bool("json"))
	}
	abs, rp, m, target, owner := pl.abs, pl.rp, pl.m, pl.target, pl.owner
	var serverNeeds []string
	opt := restore.Options{DataDir: abs, TablespaceMap: pl.spcMap, Owner: owner, Concurrency: e.cfg.Concurrency,
		Force: c.Bool("force"), Delta: c.Bool("delta"), TrustTime: c.Bool("trust-time"), Progress: progress(e.stderr, "restore")}
	if t != nil {
		for _, k := range pl.secrets {
			serverNeeds = append(serverNeeds, secretOrigin(c, k))
		}
		opt.Recovery = &restore.Recovery{RestoreCommand: pl.restoreCommand, Target: target, ArchiveOff: c.String("archive-mode") == "off"}
	}
	e.log.Info("restoring", "backup", m.Name, "into", abs, "target", target.String())
	start := time.Now()
	r := &restore.Restorer{Repo: rp, Log: e.log, Opt: opt}
	if err := r.Run(ctx, m); err != nil {
		return fmt.Errorf("restore of backup %s into %s failed: %w (if it wrote anything, the directory is incomplete, without global/pg_control, and marked %s: retry with --force to clear it)",
			m.Name, abs, err, restore.IncompleteMarker)
	}
	d := time.Since(start)
	kept, verified := "", "every file verified"
	if opt.Delta {
		kept = fmt.Sprintf(" (--delta: %d of them already there and kept)", r.Kept)
	}
	if r.KeptByTime > 0 {
		verified = fmt.Sprintf("every file verified but the %d kept by size and time (--trust-time), which were not read", r.KeptByTime)
	}
	_, _ = fmt.Fprintf(e.stdout, "restored backup %s (%s, %d files%s) into %s in %s, %.0f MB/s, %s\n",
		m.Name, human(m.Size), m.FileCount, kept, abs, d.Round(time.Millisecond), float64(m.Size)/d.Seconds()/(1<<20), verified)
	if t == nil {
		_, _ = fmt.Fprintf(e.stdout, "no recovery settings written: add recovery.signal and a restore_command yourself\n")
		return nil
	}
	_, _ = fmt.Fprintf(e.stdout, "recovery target: %s, timeline %s (backup ends at %s, LSN %s, on timeline %d)\n",
		target, target.Timeline, m.StopTime.Format(time.RFC3339), m.StopLSN, m.Timeline)
	_, _ = fmt.Fprintf(e.stdout, "next: start PostgreSQL on it, e.g.  pg_ctl -D %s start\n", abs)
	_, _ = fmt.Fprintln(e.stdout, "      it has the source's port and socket: beside a running server, set port (and unix_socket_directories)")
	_, _ = fmt.Fprintln(e.stdout, "      in its postgresql.auto.conf first (docs/runbook.md, step 4)")
	switch {
	case target.Kind == restore.ToEnd:
		_, _ = fmt.Fprintln(e.stdout, "      it replays every archived WAL file, then promotes and opens for writes")
	case target.Action == "pause":
		_, _ = fmt.Fprintln(e.stdout, "      at the target it pauses, read-only: check the data, then SELECT pg_wal_replay_resume(); to promote")
		_, _ = fmt.Fprintln(e.stdout, "      (or restore again with another target if this is not the right point)")
		if target.Exclusive {
			_, _ = fmt.Fprintln(e.stdout, "      paused just before a commit, recovery still holds that transaction's locks: a query on a table it")
			_, _ = fmt.Fprintln(e.stdout, "      dropped or truncated waits until the copy is promoted (SET lock_timeout = '5s' first; docs/runbook.md, step 5)")
		}
	case target.Action == "promote":
		_, _ = fmt.Fprintln(e.stdout, "      at the target it promotes and opens for writes on a new timeline")
	default:
		_, _ = fmt.Fprintln(e.stdout, "      at the target it shuts down; remove the recovery_target_* settings and start it again to promote")
	}
	if w := pl.env.serverCannotRead(owner); w != "" {
		e.log.Warn(w)
	}
	for _, n := range serverNeeds {
		_, _ = fmt.Fprintf(e.stdout, "      %s: the server needs it in its environment or in the config file (restore_command never carries secrets)\n", n)
	}
	if c.String("archive-mode") == "off" {
		_, _ = fmt.Fprintln(e.stdout, "      archiving is off (archive_mode = off in postgresql.auto.conf): this copy does not archive into the repository")
		_, _ = fmt.Fprintln(e.stdout, "      if it becomes the new primary: restore with --archive-mode preserve; or, once it is promoted,")
		_, _ = fmt.Fprintln(e.stdout, "      ALTER SYSTEM RESET archive_mode; restart it, pgb wal-push pg_wal/<its timeline>.history, and take a new pgb backup-push")
		_, _ = fmt.Fprintln(e.stdout, "      (WAL written while archiving was off never reaches the repository: recovery of the new primary starts at that backup)")
	} else {
		_, _ = fmt.Fprintln(e.stdout, "      archiving is as the source's (--archive-mode preserve): once promoted it archives a new timeline into the repository")
	}
	return nil
}

// restorePlan is what restore and restore --dry-run settle before anything is
// written, by the same checks, so that a dry run refuses what the restore refuses.
type restorePlan struct {
	abs            string // the target directory; "" for a dry run without --pgdata
	spcMap         map[string]string
	env            *env // working on the repository rp is (of several, the one chosen)
	rp             *repo.Repo
	m              *repo.Manifest
	target         restore.Target
	owner          *restore.Owner
	restoreCommand string   // with a target
	secrets        []string // the settings restoreCommand leaves to the server's environment
}

// planRestore checks the flags, opens the repository, chooses the backup and the
// target and the owner of the files. A dry run may go without a directory. The plan
// returned with an error, if any, holds an open repository to close.
func (e *env) planRestore(c *cli.Context, name, dir string, t *restore.Target, dry bool) (*restorePlan, error) {
	ctx := c.Context
	pl := &restorePlan{}
	if dir == "" && !dry {
		return nil, usagef("restore needs the target directory: --pgdata DIR")
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		if c.Bool("trust-time") && !c.Bool("delta") {
			return nil, usagef("--trust-time goes with --delta: it says which files already in --pgdata to keep unread")
		}
		if c.Bool("delta") {
			if err := restore.CheckDeltaTarget(abs, 0, true); err != nil && !errors.Is(err, restore.ErrOtherCluster) {
				return nil, err // the cluster is checked once the backup is chosen
			}
		} else if err := restore.CheckTarget(abs, c.Bool("force")); err != nil {
			return nil, err
		}
		pl.abs = abs
	}
	spcMap, err := parseTablespaceMap(c.StringSlice("tablespace-map"))
	if err != nil {
		return nil, err
	}
	pl.spcMap = spcMap
	if c.String("owner") != "" && os.Geteuid() != 0 {
		return nil, usagef("--owner needs root")
	}
	var wrap func(storage.Store) storage.Store
	if dry {
		wrap = readonly.New // a dry run writes nothing, not even a WAL summary
	}
	fetchFrom, err := e.pickRepo(ctx, pl, name, t, wrap)
	if err != nil {
		return pl, err
	}
	if t != nil {
		if pl.restoreCommand, pl.secrets, err = e.restoreCommand(fetchFrom); err != nil {
			return pl, err
		}
	}
	// Without a directory (a dry run) the owner of its parent is unknown: checked
	// only when --owner or the manifest names one.
	if pl.abs != "" || c.String("owner") != "" || pl.m.DataDirOwner != nil {
		pl.owner, err = restore.ChooseOwner(restore.OwnerRequest{EUID: os.Geteuid(), Flag: c.String("owner"),
			Recorded: pl.m.DataDirOwner, Dir: pl.abs, Users: restore.HostUsers})
		if err != nil {
			return pl, err
		}
	}
	return pl, nil
}

// pickRepo opens the repository the restore reads, chooses the backup and target in
// it and sets them in pl (pl.rp, pl.m, pl.target, pl.env). With several repositories,
// of those selected that open and can reach the target, the one whose backup is
// newest, the first listed among equals; one that cannot be opened is left out with a
// warning. fetchFrom is what restore_command's --repo names: the repository's URL, or
// the names of the repositories that opened, the chosen one first.
func (e *env) pickRepo(ctx context.Context, pl *restorePlan, name string, t *restore.Target, wrap func(storage.Store) storage.Store) (fetchFrom string, err error) {
	if !e.cfg.Multi() {
		rp, err := e.openRepoThrough(ctx, false, nil, wrap)
		if err != nil {
			return "", err
		}
		pl.rp, pl.env = rp, e
		pl.m, pl.target, err = restore.Plan(ctx, rp, e.log, name, t)
		return e.cfg.Repo, err
	}
	type candidate struct {
		env    *env
		rp     *repo.Repo
		m      *repo.Manifest
		target restore.Target
	}
	var best *candidate
	var opened []string
	var errs []error
	for _, r := range e.cfg.Selected {
		child := e.forRepo(r)
		rp, err := child.openRepoThrough(ctx, false, nil, wrap)
		if err != nil {
			e.log.Warn("this repository cannot be opened: the restore goes on without it, and restore_command leaves it out", "repo", r.Name, "error", err)
			errs = append(errs, fmt.Errorf("repository %s: %w", r.Name, err))
			continue
		}
		opened = append(opened, r.Name)
		m, target, err := restore.Plan(ctx, rp, child.log, name, t)
		if err != nil {
			e.log.Info("this repository cannot restore to the target", "repo", r.Name, "error", err)
			errs = append(errs, fmt.Errorf("repository %s: %w", r.Name, err))
			_ = rp.Close() // releases connections only: nothing was written
			continue
		}
		if best == nil || m.StopLSN > best.m.StopLSN {
			if best != nil {
				_ = best.m.Close() // its file list, a temporary file
				_ = best.rp.Close()
			}
			best = &candidate{child, rp, m, target}
			continue
		}
		_ = m.Close()
		_ = rp.Close()
	}
	if best == nil {
		return "", errors.Join(errs...)
	}
	pl.env, pl.rp, pl.m, pl.target = best.env, best.rp, best.m, best.target
	e.log.Info("restoring from repository "+best.env.cfg.RepoName, "backup", best.m.Name)
	order := []string{best.env.cfg.RepoName}
	for _, n := range opened {
		if n != best.env.cfg.RepoName {
			order = append(order, n)
		}
	}
	return strings.Join(order, ","), nil
}

// restoreCommand is the restore_command the restored cluster runs: this pgb, by
// absolute path, wal-fetch from fetchFrom (pickRepo), with the repository settings it
// needs (see restore.RestoreCommand).
func (e *env) restoreCommand(fetchFrom string) (cmd string, secrets []string, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find pgb's own path for restore_command: %w", err)
	}
	cfg := e.cfg
	cfg.Repo = fetchFrom
	cmd, secrets = restore.RestoreCommand(self, cfg)
	return cmd, secrets, nil
}

// configUnreadable is a warning when the server's OS user (owner, chosen as root)
// cannot read the config file restore_command passes with --config; "" otherwise. It
// warns rather than refuses: the check ignores supplementary groups and ACLs, so it can
// be wrong, and when it is right the cost is a recovery that stops (exit 255) at the
// first WAL file with a clear line, fixed by a chown before starting PostgreSQL, not
// by restoring again.
func configUnreadable(file string, owner *restore.Owner) string {
	return unreadable(file, "--config", owner)
}

// serverCannotRead is configUnreadable for every file restore_command reads: the
// config file and the encryption identity file.
func (e *env) serverCannotRead(owner *restore.Owner) string {
	w := configUnreadable(e.cfg.File, owner)
	if iw := unreadable(e.cfg.Encryption.IdentityFile, "encryption-identity-file", owner); iw != "" {
		if w != "" {
			w += "; and "
		}
		w += iw
	}
	return w
}

// unreadable is configUnreadable for the file restore_command reads as setting.
func unreadable(file, setting string, owner *restore.Owner) string {
	if file == "" || owner == nil {
		return ""
	}
	abs, _ := filepath.Abs(file)
	blocked, err := restore.CannotRead(abs, *owner)
	if err != nil || blocked == "" {
		return ""
	}
	who, name := "uid "+strconv.Itoa(owner.UID), strconv.Itoa(owner.UID)
	if u, err := restore.HostUsers.ByID(name); err == nil {
		who, name = u.Username, u.Username
	}
	fix := "chown " + name + " " + shellQuote(abs)
	if blocked != abs {
		fix = "give " + who + " search permission on " + shellQuote(blocked) + " (e.g. chmod o+x " + shellQuote(blocked) + ")"
	}
	return fmt.Sprintf("the server's OS user %s cannot read %s, which restore_command reads (%s): wal-fetch would stop recovery at the first WAL file; "+
		"before starting PostgreSQL, %s, or restore with a %s it can read (judged from mode bits and primary group; supplementary groups and ACLs not checked)",
		who, abs, setting, fix, setting)
}

// secretOrigin says where a secret that restore_command does not carry came from.
func secretOrigin(c *cli.Context, key string) string {
	s, _ := config.Lookup(key)
	if flagGiven(c, key) {
		return "--" + key + " came from a flag"
	}
	for _, name := range s.Env {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			return name + " came from the environment"
		}
	}
	return key + " came from a flag or the environment"
}

func shellQuote(s string) string { return restore.ShellQuote(s) }

func parseTablespaceMap(specs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range specs {
		old, nw, ok := strings.Cut(s, "=")
		if !ok || !filepath.IsAbs(old) || !filepath.IsAbs(nw) {
			return nil, usagef("--tablespace-map %q: want OLD=NEW with absolute paths", s)
		}
		out[filepath.Clean(old)] = filepath.Clean(nw)
	}
	return out, nil
}
