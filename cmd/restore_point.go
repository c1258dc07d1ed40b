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
)

func restorePointCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore-point",
		Usage:     "create a named restore point (before a risky change), or list them",
		ArgsUsage: "NAME",
		Description: "Runs pg_create_restore_point(NAME), records name, LSN, timeline and time in the repository,\n" +
			"and switches WAL so that the point reaches the archive promptly (waiting up to\n" +
			"--archive-timeout). restore --target-name NAME then recovers to exactly that point.",
		Flags: flags(config.KeyPGDSN, config.KeyArchiveTimeout),
		Action: action(1, "NAME", func(c *cli.Context, e *env) error {
			return e.restorePoint(c.Context, c.Args().First())
		}),
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list restore points, oldest first",
			Flags: append(flags(), &cli.BoolFlag{Name: "json", Usage: "print a JSON array"}),
			Action: action(0, "none", func(c *cli.Context, e *env) error {
				return e.restorePointList(c.Context, c.Bool("json"))
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
	sysid, err := conn.SystemID(ctx)
	if err != nil {
		return err
	}
	r, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }() // releases connections only: every write has completed or failed by now
	id, err := r.Identity(ctx)
	if err != nil {
		return err
	}
	if err := id.Matches(repo.SystemID(sysid), conn.Major()); err != nil {
		return err
	}
	if _, err := r.ReadRestorePoint(ctx, name); err == nil {
		return fmt.Errorf("%w: %q; pick another name", repo.ErrRestorePointExists, name)
	}
	lsn, tli, err := conn.CreateRestorePoint(ctx, name)
	if err != nil {
		return err
	}
	rp := repo.RestorePoint{Name: name, LSN: lsn, Timeline: tli, Time: time.Now().UTC()}
	if err := r.PutRestorePoint(ctx, rp); err != nil {
		return err
	}
	seg, archived := switchWAL(ctx, conn, r, e.cfg.ArchiveTimeout)
	if archived != nil && seg == "" {
		return archived
	}
	// The restore point exists: failing to print this is no reason to fail.
	_, _ = fmt.Fprintf(e.stdout, "restore point %s created at LSN %s on timeline %d (%s)\n", name, lsn, tli, rp.Time.Format(time.RFC3339))
	if archived != nil {
		e.log.Warn("the restore point's WAL has not reached the repository yet; recovering to it needs it", "segment", seg, "error", archived)
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
