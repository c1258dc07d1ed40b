package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/retention"
	"github.com/urfave/cli/v2"
)

func backupMarkCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup-mark",
		Usage:     "mark a backup permanent, or lift the mark",
		ArgsUsage: "NAME",
		Description: "--permanent protects backup NAME, and the WAL it needs to become consistent, from every\n" +
			"retention policy of pgb delete; --no-permanent lifts that. The manifest is not changed: the mark\n" +
			"is an object of its own (backups/NAME/permanent). It takes the backup lock: while a backup-push\n" +
			"or delete runs it is refused (run it again once that is done).",
		Flags: append(flags(config.KeyLockMaxAge, config.KeyLockWait),
			&cli.BoolFlag{Name: "permanent", Usage: "mark the backup permanent"},
			&cli.BoolFlag{Name: "no-permanent", Usage: "lift the permanent mark"},
		),
		Action: action(1, "NAME", func(c *cli.Context, e *env) error {
			on, off := c.Bool("permanent"), c.Bool("no-permanent")
			if on == off {
				return usagef("backup-mark wants exactly one of --permanent and --no-permanent")
			}
			e, err := e.one(c) // a backup's name is its repository's own
			if err != nil {
				return err
			}
			return e.backupMark(c.Context, c.Args().First(), on)
		}),
	}
}

func (e *env) backupMark(ctx context.Context, name string, permanent bool) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: the write has completed or failed by now
	err = retention.Mark(ctx, rp, name, permanent, time.Now(), repo.LockOptions{MaxAge: e.cfg.LockMaxAge, Wait: e.cfg.LockWait, Log: e.log})
	if err != nil {
		return fmt.Errorf("backup-mark: %w", err)
	}
	state := map[bool]string{true: "permanent: pgb delete keeps it", false: "no longer permanent"}[permanent]
	_, _ = fmt.Fprintf(e.stdout, "backup %s is %s\n", name, state) // the mark is stored whatever the terminal does
	return nil
}
