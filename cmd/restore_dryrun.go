package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/pgb-project/pgb/internal/status"
)

// restoreDryRun is pgb restore --dry-run: the backup and target restore would use,
// checked as restore checks them (planRestore, shared with restore), and an RTO
// estimate; nothing is written.
func (e *env) restoreDryRun(ctx context.Context, pl *restorePlan, asJSON bool) error {
	where := ""
	if pl.abs != "" {
		where = " into " + pl.abs
	}
	rp, m, target := pl.rp, pl.m, pl.target
	est, err := status.EstimateRestore(ctx, rp, &m.Summary, target)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(restoreDryRunJSON{DryRun: true, Backup: m.Name, Size: m.Size, Files: m.FileCount, DataDirectory: pl.abs,
			Target: target.String(), Timeline: target.Timeline, BackupStopTime: m.StopTime.UTC(), BackupStopLSN: m.StopLSN.String(), RTOEstimate: est})
	}
	_, _ = fmt.Fprintf(e.stdout, "dry run: would restore backup %s (%s, %d files)%s\n", m.Name, human(m.Size), m.FileCount, where)
	_, _ = fmt.Fprintf(e.stdout, "recovery target: %s, timeline %s (backup ends at %s, LSN %s)\n", target, target.Timeline,
		m.StopTime.UTC().Format("2006-01-02 15:04:05Z"), m.StopLSN)
	for _, l := range est.Text("") {
		_, _ = fmt.Fprintln(e.stdout, l)
	}
	_, _ = fmt.Fprintln(e.stdout, "nothing was written")
	return nil
}

// restoreDryRunJSON is what restore --dry-run --json prints (README: pgb restore).
type restoreDryRunJSON struct {
	DryRun         bool             `json:"dry_run"`
	Backup         string           `json:"backup"`
	Size           int64            `json:"size"`
	Files          int              `json:"files"`
	DataDirectory  string           `json:"data_directory,omitempty"`
	Target         string           `json:"target"`
	Timeline       string           `json:"timeline"`
	BackupStopTime time.Time        `json:"backup_stop_time"`
	BackupStopLSN  string           `json:"backup_stop_lsn"`
	RTOEstimate    *status.Estimate `json:"rto_estimate"`
}
