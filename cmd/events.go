package cmd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/events"
	"github.com/pgb-project/pgb/internal/restore"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "find the destructive events in the archived WAL, and the restore command that undoes each",
		Description: "Reads the archived WAL from the oldest backup's start (with --since, from the start of the\n" +
			"newest backup taken before it) and lists, oldest first per timeline: tables dropped; tables\n" +
			"truncated or rewritten (VACUUM FULL, CLUSTER, a rewriting ALTER TABLE); databases dropped;\n" +
			"and transactions that deleted or updated at least --min-rows rows of one table. Each shows\n" +
			"its commit time, transaction id, LSN and timeline, and the pgb restore command that stops\n" +
			"just before it (--target-lsn L --target-exclusive: L is the commit record, for DROP DATABASE\n" +
			"the first record that made the drop irreversible). Aborted transactions are not shown.\n\n" +
			"Names come from the relation names backup-push records: the newest backup taken before the\n" +
			"event. A table created after that backup is shown as its file (tablespace/database/\n" +
			"relfilenode). Exits 1 when some archived WAL could not be read (each stretch is named):\n" +
			"events in it are not listed. --json prints one document instead (docs/events.md).",
		Flags: append(flags(),
			&cli.StringFlag{Name: "since", Usage: "only events committed at or after `TIMESTAMP` (RFC 3339 or PostgreSQL's format)"},
			&cli.StringFlag{Name: "until", Usage: "only events committed at or before `TIMESTAMP`; the scan stops there"},
			&cli.StringFlag{Name: "table", Usage: "only events on the table `NAME` (name or schema.name)"},
			&cli.Int64Flag{Name: "min-rows", Value: events.DefaultMinRows, Usage: "list a transaction that deleted or updated at least `N` rows of one table"},
			&cli.StringFlag{Name: "timeline", Usage: "only timeline `N` and the history leading to it (default: every timeline)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document (docs/events.md)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			opt, err := eventsOptions(c)
			if err != nil {
				return err
			}
			opt.Log = e.log
			return e.first().events(c.Context, opt, c.Bool("json"))
		}),
	}
}

func eventsOptions(c *cli.Context) (events.Options, error) {
	opt := events.Options{Table: c.String("table"), MinRows: c.Int64("min-rows")}
	var err error
	for _, f := range []struct {
		name string
		to   *time.Time
	}{{"since", &opt.Since}, {"until", &opt.Until}} {
		if v := c.String(f.name); v != "" {
			if *f.to, err = restore.ParseTime(v); err != nil {
				return opt, usageError{fmt.Errorf("--%s: %w", f.name, err)}
			}
		}
	}
	if !opt.Since.IsZero() && !opt.Until.IsZero() && opt.Until.Before(opt.Since) {
		return opt, usagef("--until %s is before --since %s", c.String("until"), c.String("since"))
	}
	if opt.MinRows < 1 {
		return opt, usagef("--min-rows %d: want 1 or more", opt.MinRows)
	}
	if v := c.String("timeline"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return opt, usagef("--timeline %q: want a timeline number (1 or more)", v)
		}
		opt.Timeline = uint32(n)
	}
	return opt, nil
}

// eventsJSON is what events --json prints; docs/events.md documents it.
type eventsJSON struct {
	Complete bool           `json:"complete"`
	MinRows  int64          `json:"min_rows"`
	Segments int            `json:"segments_read"`
	Events   []events.Event `json:"events"`
	Problems []string       `json:"problems"`
}

func (e *env) events(ctx context.Context, opt events.Options, asJSON bool) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: nothing is written
	res, err := events.Find(ctx, rp, opt)
	if err != nil {
		return err
	}
	if asJSON {
		out := eventsJSON{Complete: len(res.Problems) == 0, MinRows: opt.MinRows, Segments: res.Segments,
			Events: res.Events, Problems: res.Problems}
		if out.Events == nil {
			out.Events = []events.Event{}
		}
		if out.Problems == nil {
			out.Problems = []string{}
		}
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else if err := events.WriteText(e.stdout, res, opt.MinRows); err != nil {
		return err
	}
	for _, p := range res.Problems {
		e.log.Warn("WAL not read", "problem", p)
	}
	if len(res.Problems) > 0 {
		return errors.New("some archived WAL could not be read (see the warnings): events in it are not listed")
	}
	return nil
}
