package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/repo"
)

func backupListCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup-list",
		Usage: "list the complete backups, oldest first",
		Description: "One row per backup whose manifest exists, oldest first. A backup whose manifest is damaged\n" +
			"(or written by a newer pgb) is listed last with status \"damaged\" and a warning saying why;\n" +
			"restore and backup-fetch skip it. --json prints the same as a JSON array.",
		Flags: append(flags(), &cli.BoolFlag{Name: "json", Usage: "print a JSON array"}),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.each(c, func(e *env) error { return e.backupList(c.Context, c.Bool("json")) })
		}),
	}
}

// backupRow is one backup as backup-list shows it. A damaged backup has its name, its
// status and the reason only.
type backupRow struct {
	Name   string `json:"name"`
	Status string `json:"status"`          // ok, damaged, broken-chain
	Error  string `json:"error,omitempty"` // why a backup is damaged or its chain broken
	// Type is full or incremental; an incremental backup names its Parent, and Chain
	// is every backup a restore of it reads, its full backup first.
	Type       string    `json:"type,omitempty"`
	Parent     string    `json:"parent,omitempty"`
	Chain      []string  `json:"chain,omitempty"`
	StartTime  time.Time `json:"start_time,omitzero"`
	StopTime   time.Time `json:"stop_time,omitzero"`
	StartLSN   string    `json:"start_lsn,omitempty"`
	StopLSN    string    `json:"stop_lsn,omitempty"`
	StartWAL   string    `json:"start_wal,omitempty"`
	StopWAL    string    `json:"stop_wal,omitempty"`
	Timeline   uint32    `json:"timeline,omitempty"`
	Size       int64     `json:"size,omitempty"`
	StoredSize int64     `json:"stored_size,omitempty"` // the backup's own parts: not its chain's
	Duration   float64   `json:"duration_seconds,omitempty"`
	Files      int       `json:"files,omitempty"`
	Parts      int       `json:"parts,omitempty"`
	PGVersion  int       `json:"pg_version,omitempty"`
	// CorruptPages counts the pages that failed their data checksum when the backup
	// read them (see backup-push).
	CorruptPages int `json:"corrupt_pages,omitempty"`
	// FromStandby: taken on a hot standby (backup-push --primary-dsn).
	FromStandby bool `json:"from_standby,omitempty"`
}

func (e *env) backupList(ctx context.Context, asJSON bool) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: nothing is written
	ms, damaged, err := rp.ListBackups(ctx)
	if err != nil {
		return err
	}
	rows := make([]backupRow, 0, len(ms)+len(damaged))
	for _, m := range ms {
		row := backupRow{Name: m.Name, Status: "ok", Type: "full", Parent: m.Parent, StartTime: m.StartTime, StopTime: m.StopTime,
			StartLSN: m.StartLSN.String(), StopLSN: m.StopLSN.String(), StartWAL: m.StartWAL, StopWAL: m.StopWAL,
			Timeline: m.Timeline, Size: m.Size, StoredSize: m.StoredSize, Duration: m.Duration().Seconds(),
			Files: m.FileCount, Parts: m.PartCount, PGVersion: m.PGVersion, CorruptPages: m.CorruptPages, FromStandby: m.FromStandby}
		if m.Incremental() {
			row.Type = "incremental"
			chain, err := repo.Chain(ms, m.Name)
			if err != nil {
				row.Status, row.Error = "broken-chain", err.Error()
			}
			for _, c := range chain {
				row.Chain = append(row.Chain, c.Name)
			}
		}
		rows = append(rows, row)
	}
	for _, d := range damaged {
		e.log.Warn("damaged backup: restore skips it", "backup", d.Name, "reason", d.Err.Error())
		rows = append(rows, backupRow{Name: d.Name, Status: "damaged", Error: d.Err.Error()})
	}
	if asJSON {
		return e.printJSON(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no backups")
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	// tabwriter holds every line (each has a tab) until Flush, which reports write errors.
	_, _ = fmt.Fprintln(tw, "NAME\tTYPE\tSTART\tSTOP\tSTART LSN\tSTOP LSN\tTL\tSIZE\tSTORED\tDURATION\tSTATUS")
	for _, r := range rows {
		if r.Status == "damaged" {
			_, _ = fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", r.Name, r.Status)
			continue
		}
		status := r.Status
		if r.Status == "broken-chain" {
			status += fmt.Sprintf(" (its parent %s is missing or damaged: it cannot be restored)", r.Parent)
		}
		if r.CorruptPages > 0 {
			status += fmt.Sprintf(" (%d damaged page(s): pgb verify --backup %s)", r.CorruptPages, r.Name)
		}
		kind := r.Type
		if r.Parent != "" {
			kind = fmt.Sprintf("incr on %s (chain of %d)", r.Parent, max(len(r.Chain), 2))
		}
		if r.FromStandby {
			kind += ", from a standby"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Name, kind, r.StartTime.Format(time.RFC3339),
			r.StopTime.Format(time.RFC3339), r.StartLSN, r.StopLSN, r.Timeline, human(r.Size), human(r.StoredSize),
			time.Duration(r.Duration*float64(time.Second)).Round(time.Second), status)
	}
	return tw.Flush()
}

// printJSON writes v to stdout as indented JSON, for scripts and monitoring.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
