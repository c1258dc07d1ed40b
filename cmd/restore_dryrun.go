package cmd

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
)

// restoreDryRun is pgb restore --dry-run: the backup and target restore would use,
// checked as restore checks them, and an RTO estimate; nothing is written.
func (e *env) restoreDryRun(c *cli.Context, name, dir string, t *restore.Target) error {
	ctx := c.Context
	where := ""
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		if err := restore.CheckTarget(abs, c.Bool("force")); err != nil {
			return err
		}
		where = " into " + abs
	}
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: a dry run writes nothing
	m, target, err := restore.Plan(ctx, rp, e.log, name, t)
	if err != nil {
		return err
	}
	est, err := status.EstimateRestore(ctx, rp, &m.Summary, target)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(e.stdout, "dry run: would restore backup %s (%s, %d files)%s\n", m.Name, human(m.Size), len(m.Files), where)
	_, _ = fmt.Fprintf(e.stdout, "recovery target: %s, timeline %s (backup ends at %s, LSN %s)\n", target, target.Timeline,
		m.StopTime.UTC().Format("2006-01-02 15:04:05Z"), m.StopLSN)
	for _, l := range est.Text("") {
		_, _ = fmt.Fprintln(e.stdout, l)
	}
	_, _ = fmt.Fprintln(e.stdout, "nothing was written")
	return nil
}
