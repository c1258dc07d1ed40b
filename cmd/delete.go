package cmd

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/retention"
)

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:  "delete",
		Usage: "delete old backups and the WAL only they need, by a retention policy (dry run unless --confirm)",
		Description: "Policies: --retain-full N keeps the newest N full backups and every backup after them;\n" +
			"--retain-days D keeps what recovery to\n" +
			"any point of the last D days needs (the newest backup that ended before then, and every later\n" +
			"one); --before TIMESTAMP|BACKUP deletes the backups that ended before the time, or that are older\n" +
			"than the named backup. With several, a backup is kept when any keeps it. retain-full and\n" +
			"retain-days can be set in the config file; a policy given on the command line replaces the file's.\n\n" +
			"A chain is one unit: a kept incremental backup keeps every backup it builds on, its full one\n" +
			"included, and the WAL from there on.\n\n" +
			"Never deleted: the newest backup, a backup marked permanent (backup-push --permanent,\n" +
			"backup-mark) and the WAL it needs to become consistent, timeline history files, and any WAL\n" +
			"from the lowest start of the kept backups on (every timeline). Restore points before the\n" +
			"lowest end of the kept backups can no longer be reached and go too.\n\n" +
			"Without --confirm nothing is deleted: pgb prints what it would delete, the bytes freed and the\n" +
			"window that remains. With --confirm it takes the backup lock (never while a backup runs) and\n" +
			"deletes each backup's manifest first (the backup disappears), then its parts and summary, then\n" +
			"WAL from the oldest: a delete that is interrupted is finished by running it again.\n\n" +
			"--garbage instead removes what interrupted writes left behind, older than --grace: backups without\n" +
			"a manifest (parts, summaries) and pgb check probes.\n\n" +
			"--json prints the plan (or, with --confirm, what was deleted) as one JSON document, described in\n" +
			"README's pgb delete section: backups, WAL count and bytes, restore points, bytes freed, the\n" +
			"window that remains, and whether it was a dry run.",
		Flags: append(flags(config.KeyRetainFull, config.KeyRetainDays, config.KeyLockMaxAge, config.KeyLockWait),
			&cli.StringFlag{Name: "before", Usage: "delete the backups that ended before `TIMESTAMP` (RFC 3339), or that are older than the backup named"},
			&cli.BoolFlag{Name: "confirm", Usage: "delete; without it, only print what would be deleted"},
			&cli.BoolFlag{Name: "garbage", Usage: "remove what interrupted writes left behind instead of applying a policy"},
			&cli.DurationFlag{Name: "grace", Value: 24 * time.Hour, Usage: "--garbage removes only leftovers older than this"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan, or what was deleted, as one JSON document (README: pgb delete)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			if err := e.deleteTestHook(); err != nil {
				return err
			}
			if c.Bool("garbage") {
				if c.Bool("json") {
					return usagef("--json is for a retention policy, not --garbage")
				}
				if c.Duration("grace") <= 0 {
					return usagef("--grace %s: want a positive duration, e.g. 24h", c.Duration("grace"))
				}
				return e.each(c, func(e *env) error { return e.deleteGarbage(c.Context, c.Duration("grace"), c.Bool("confirm")) })
			}
			return e.each(c, func(e *env) error {
				e.retentionFlags(c)
				pol, err := e.policy(c.String("before"))
				if err != nil {
					return err
				}
				return e.delete(c.Context, pol, c.Bool("confirm"), c.Bool("json"))
			})
		}),
	}
}

// retentionFlags makes --retain-full and --retain-days given on the command line the
// retention of e's repository, over its entry of repos: what this run is asked to
// keep, in every repository. (An entry's own setting beats the environment: a
// host-wide PGB_RETAIN_FULL does not shorten what one repository keeps.)
func (e *env) retentionFlags(c *cli.Context) {
	if e.cfg.RepoName == "" {
		return
	}
	for key, to := range map[string]*int{config.KeyRetainFull: &e.cfg.RetainFull, config.KeyRetainDays: &e.cfg.RetainDays} {
		if !flagGiven(c, key) {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(c.String(key))); err == nil { // checked by config.Load already
			*to = n
		}
	}
}

// policy is the retention policy in effect: the command line's when it gives one,
// else the config file's.
func (e *env) policy(before string) (retention.Policy, error) {
	p := retention.Policy{RetainFull: e.cfg.RetainFull, RetainDays: e.cfg.RetainDays}
	_, full := e.cfg.Given[config.KeyRetainFull]
	_, days := e.cfg.Given[config.KeyRetainDays]
	if before != "" || full || days {
		if !full {
			p.RetainFull = 0
		}
		if !days {
			p.RetainDays = 0
		}
	}
	if before != "" {
		if t, err := restore.ParseTime(before); err == nil {
			p.BeforeTime = t
		} else {
			p.BeforeBackup = before
		}
	}
	if !p.Set() {
		return p, usagef("%w: give --retain-full N, --retain-days D or --before TIMESTAMP|BACKUP, or set retain-full or retain-days in the config file", retention.ErrNoPolicy)
	}
	return p, nil
}

func (e *env) delete(ctx context.Context, pol retention.Policy, confirm, asJSON bool) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: every delete has completed or failed by now
	res, err := retention.Delete(ctx, rp, retention.Options{Policy: pol, Now: time.Now(), Confirm: confirm,
		Lock: repo.LockOptions{MaxAge: e.cfg.LockMaxAge, Wait: e.cfg.LockWait, Log: e.log}, Log: e.log})
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if asJSON {
		printDeleteJSON(e.stdout, res)
		return nil
	}
	printDeletePlan(e.stdout, res)
	return nil
}

// printDeletePlan says what was, or would be, deleted. Writes to stdout are unchecked:
// the deletion is done or not whatever the terminal does.
func printDeletePlan(w io.Writer, res retention.Result) {
	verb := "would delete"
	if res.Deleted {
		verb = "deleted"
	}
	for _, b := range res.Unfinished {
		_, _ = fmt.Fprintf(w, "%s what is left of backup %s (a delete that was interrupted): %d object(s), %s\n", verb, b.Name, b.Objects, human(b.Size))
	}
	for _, b := range res.Delete {
		_, _ = fmt.Fprintf(w, "%s backup %s (ended %s, LSN %s, timeline %d, %s stored)\n", verb, b.Name,
			b.StopTime.UTC().Format(time.RFC3339), b.StopLSN, b.Timeline, human(b.StoredSize))
	}
	for _, rp := range res.RestorePoints {
		_, _ = fmt.Fprintf(w, "%s restore point %s (LSN %s, before the window)\n", verb, rp.Name, rp.LSN)
	}
	if n := len(res.WAL); n > 0 {
		var size int64
		for _, o := range res.WAL {
			size += o.Size
		}
		_, _ = fmt.Fprintf(w, "%s %d WAL file(s), %s to %s (%s)\n", verb, n, res.WAL[0].Name, res.WAL[n-1].Name, human(size))
	}
	if n := len(res.Streamed); n > 0 {
		_, _ = fmt.Fprintf(w, "%s the streamed chunks of %d segment(s) before the window (wal-stream), %s to %s\n", verb, n, res.Streamed[0].Name, res.Streamed[n-1].Name)
	}
	if n := len(res.Drills); n > 0 {
		_, _ = fmt.Fprintf(w, "%s %d drill record(s), %s to %s (keeping the newest %d and the newest successful one)\n", verb, n,
			res.Drills[0].Finished.UTC().Format(time.RFC3339), res.Drills[n-1].Finished.UTC().Format(time.RFC3339), retention.KeepDrills)
	}
	if n := len(res.Verifies); n > 0 {
		_, _ = fmt.Fprintf(w, "%s %d verify record(s), %s to %s (keeping the newest %d and the newest that passed)\n", verb, n,
			res.Verifies[0].Finished.UTC().Format(time.RFC3339), res.Verifies[n-1].Finished.UTC().Format(time.RFC3339), retention.KeepDrills)
	}
	permanent := 0
	for _, b := range res.Keep {
		if b.Permanent {
			permanent++
		}
	}
	_, _ = fmt.Fprintf(w, "%s %s: %d backup(s) deleted, %d kept (%d permanent)\n", map[bool]string{true: "freed", false: "would free"}[res.Deleted],
		human(res.Bytes), len(res.Delete), len(res.Keep), permanent)
	if res.Window.FromBackup != "" {
		_, _ = fmt.Fprintf(w, "recoverable window: from %s (end of backup %s, LSN %s, timeline %d) to the last archived WAL\n",
			res.Window.FromTime.UTC().Format(time.RFC3339), res.Window.FromBackup, res.Window.FromLSN, res.Window.Timeline)
	} else {
		_, _ = fmt.Fprintln(w, "no backups: nothing to recover from, nothing deleted")
	}
	if !res.Deleted {
		_, _ = fmt.Fprintln(w, "dry run: nothing was deleted; add --confirm to delete")
	}
}

func (e *env) deleteGarbage(ctx context.Context, grace time.Duration, confirm bool) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: every delete has completed or failed by now
	g, err := retention.CollectGarbage(ctx, rp, time.Now(), grace, confirm, repo.LockOptions{MaxAge: e.cfg.LockMaxAge, Wait: e.cfg.LockWait, Log: e.log})
	if err != nil {
		return fmt.Errorf("delete --garbage: %w", err)
	}
	verb := "would remove"
	if g.Deleted {
		verb = "removed"
	}
	for _, b := range g.Backups {
		_, _ = fmt.Fprintf(e.stdout, "%s backup %s without a manifest: %d object(s), %s, last written %s\n", verb, b.Name, b.Objects, human(b.Size), b.Newest.UTC().Format(time.RFC3339))
	}
	for _, p := range g.Probes {
		_, _ = fmt.Fprintf(e.stdout, "%s %s\n", verb, p.Key)
	}
	if n := len(g.Summaries); n > 0 {
		_, _ = fmt.Fprintf(e.stdout, "%s %d cached WAL summar%s whose segment is gone (walsum/)\n", verb, n, map[bool]string{true: "y", false: "ies"}[n == 1])
	}
	if n := len(g.Streamed); n > 0 {
		_, _ = fmt.Fprintf(e.stdout, "%s the streamed chunks of %d segment(s) stored whole since (wal-stream stopped before removing them)\n", verb, n)
	}
	if g.TempsSkipped != "" {
		_, _ = fmt.Fprintf(e.stdout, "WARNING: unfinished uploads were not looked for: %s (grant listing and aborting multipart uploads, or set a bucket lifecycle rule AbortIncompleteMultipartUpload)\n", g.TempsSkipped)
	}
	if n := g.TempFiles; n > 0 {
		_, _ = fmt.Fprintf(e.stdout, "%s %d temp file(s) or incomplete upload(s) killed backups left (fs: .tmp-* files below backups/ and wal/; S3: multipart uploads there)\n", verb, n)
	}
	_, _ = fmt.Fprintf(e.stdout, "%s %s of leftovers older than %s\n", verb, human(g.Bytes), grace)
	if !g.Deleted {
		_, _ = fmt.Fprintln(e.stdout, "dry run: nothing was removed; add --confirm to remove")
	}
	return nil
}
