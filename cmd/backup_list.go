package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/catalog"
)

func backupListCommand() *cli.Command {
	return &cli.Command{
		Name:        "backup-list",
		Usage:       "list the complete backups, oldest first",
		Description: "One row per backup whose manifest exists. --json prints the same as a JSON array.",
		Flags:       append(flags(), &cli.BoolFlag{Name: "json", Usage: "print a JSON array"}),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.backupList(c.Context, c.Bool("json"))
		}),
	}
}

// backupRow is one backup as backup-list shows it.
type backupRow struct {
	Name       string    `json:"name"`
	StartTime  time.Time `json:"start_time"`
	StopTime   time.Time `json:"stop_time"`
	StartLSN   string    `json:"start_lsn"`
	StopLSN    string    `json:"stop_lsn"`
	StartWAL   string    `json:"start_wal"`
	StopWAL    string    `json:"stop_wal"`
	Timeline   uint32    `json:"timeline"`
	Size       int64     `json:"size"`
	StoredSize int64     `json:"stored_size"`
	Duration   float64   `json:"duration_seconds"`
	Files      int       `json:"files"`
	Parts      int       `json:"parts"`
	PGVersion  int       `json:"pg_version"`
}

func (e *env) backupList(ctx context.Context, asJSON bool) error {
	st, err := e.openStore(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ms, err := catalog.ListBackups(ctx, st)
	if err != nil {
		return err
	}
	rows := make([]backupRow, 0, len(ms))
	for _, m := range ms {
		rows = append(rows, backupRow{Name: m.Name, StartTime: m.StartTime, StopTime: m.StopTime,
			StartLSN: m.StartLSN.String(), StopLSN: m.StopLSN.String(), StartWAL: m.StartWAL, StopWAL: m.StopWAL,
			Timeline: m.Timeline, Size: m.Size, StoredSize: m.StoredSize, Duration: m.Duration().Seconds(),
			Files: len(m.Files), Parts: len(m.Parts), PGVersion: m.PGVersion})
	}
	if asJSON {
		return e.printJSON(rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(e.stdout, "no backups")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTART\tSTOP\tSTART LSN\tSTOP LSN\tTL\tSIZE\tSTORED\tDURATION")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, r.StartTime.Format(time.RFC3339),
			r.StopTime.Format(time.RFC3339), r.StartLSN, r.StopLSN, r.Timeline, human(r.Size), human(r.StoredSize),
			time.Duration(r.Duration*float64(time.Second)).Round(time.Second))
	}
	return tw.Flush()
}

// printJSON writes v to stdout as indented JSON, for scripts and monitoring.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
