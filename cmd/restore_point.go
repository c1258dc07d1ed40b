package cmd

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restorepoint"
)

func restorePointCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore-point",
		Usage:     "create a named restore point (before a risky change), or list them",
		ArgsUsage: "NAME",
		Description: "Runs pg_create_restore_point(NAME), records name, LSN, timeline and time in the repository,\n" +
			"and switches WAL so that the point reaches the archive promptly (waiting up to\n" +
			"--archive-timeout). restore --target-name NAME then recovers to exactly that point.\n" +
			"A name is used once; one whose record cannot be read (damaged, or the store failing) is\n" +
			"refused before PostgreSQL is asked, and nothing is created.",
		Flags: flags(config.KeyPGDSN, config.KeyArchiveTimeout),
		Action: action(1, "NAME", func(c *cli.Context, e *env) error {
			return e.restorePoint(c.Context, c.Args().First())
		}),
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list restore points, oldest first",
			Flags: append(flags(), &cli.BoolFlag{Name: "json", Usage: "print a JSON array"}),
			Action: action(0, "none", func(c *cli.Context, e *env) error {
				return e.each(c, func(e *env) error { return e.restorePointList(c.Context, c.Bool("json")) })
			}),
		}},
	}
}

func (e *env) restorePoint(ctx context.Context, name string) error {
	if err := repo.ValidRestorePointName(name); err != nil {
		return usageError{err}
	}
	conn, err := pg.Connect(ctx, e.cfg.PGDSN)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }() // ends the session: nothing is pending on it
	// With several repositories, one point in PostgreSQL, recorded in each selected.
	envs := e.selected()
	var rps []*repo.Repo
	defer func() {
		for _, r := range rps {
			_ = r.Close() // releases connections only: every write has completed or failed by now
		}
	}()
	for _, e := range envs {
		r, err := e.openRepo(ctx, false, nil)
		if err != nil {
			if e.cfg.RepoName != "" {
				return fmt.Errorf("repository %s: %w; nothing was created", e.cfg.RepoName, err)
			}
			return err
		}
		rps = append(rps, r)
	}
	c, err := restorepoint.Create(ctx, conn, rps[0], name, restorepoint.Options{ArchiveTimeout: e.cfg.ArchiveTimeout, Also: rps[1:]})
	if err != nil {
		return err
	}
	rp := c.Point
	// The restore point exists: failing to print this is no reason to fail.
	_, _ = fmt.Fprintf(e.stdout, "restore point %s created at LSN %s on timeline %d (%s)\n", name, rp.LSN, rp.Timeline, rp.Time.Format(time.RFC3339))
	if c.Archived != nil {
		e.log.Warn("the restore point's WAL has not reached the repository yet; recovering to it needs it", "segment", c.Segment, "error", c.Archived)
	}
	return nil
}

func (e *env) restorePointList(ctx context.Context, asJSON bool) error {
	r, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }() // releases connections only: nothing is written
	rps, err := r.ListRestorePoints(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(rps)
	}
	if len(rps) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no restore points")
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	// tabwriter holds every line (each has a tab) until Flush, which reports write errors.
	_, _ = fmt.Fprintln(tw, "NAME\tTIME\tLSN\tTL")
	for _, rp := range rps {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", rp.Name, rp.Time.Format(time.RFC3339), rp.LSN, rp.Timeline)
	}
	return tw.Flush()
}
