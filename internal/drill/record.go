package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
)

// Record is rep as the drill record the repository keeps (docs/repository-format.md,
// "Drill records"); version is pgb's.
func Record(rep *Report, version string) repo.DrillRecord {
	host, _ := os.Hostname()
	d := repo.DrillRecord{Started: rep.Started, Finished: rep.Finished, OK: rep.OK, Error: rep.Error, Target: rep.Target,
		Backup: rep.Backup.Name, Host: host, Version: version,
		RTO: repo.DrillRTO{RestoreSeconds: rep.RTO.RestoreSeconds, ReplaySeconds: rep.RTO.ReplaySeconds,
			TotalSeconds: rep.RTO.TotalSeconds, BytesRestored: rep.RTO.BytesRestored, BytesReplayed: rep.RTO.BytesReplayed}}
	if d.Finished.IsZero() {
		d.Finished = time.Now().UTC()
	}
	if d.Started.IsZero() || d.Started.After(d.Finished) {
		d.Started = d.Finished
	}
	if !d.OK && d.Error == "" {
		d.Error = "drill failed"
	}
	if g := rep.RPO.GapSeconds; g != nil {
		v := *g
		d.RPO.GapSeconds = &v
	}
	if rep.RPO.NewestWAL != "" {
		v := rep.RPO.NewestWALAgeSeconds
		d.RPO.NewestWALAgeSeconds = &v
	}
	return d
}

// Save records rep in rp, last, once the report is complete (passed or failed), and
// sets rep.Record to the key written. A repository without pgb.json (nothing archived
// into it yet, or a wrong --repo) gets no record: the drill failed, and says why.
func Save(ctx context.Context, rp *repo.Repo, rep *Report, version string) error {
	if _, err := rp.Identity(ctx); errors.Is(err, repo.ErrNoIdentity) || errors.Is(err, storage.ErrNotExist) {
		return nil
	}
	key, err := rp.PutDrill(ctx, Record(rep, version))
	if err != nil {
		return fmt.Errorf("the drill's result was not recorded in the repository (pgb status will not show it): %w", err)
	}
	rep.Record = key
	return nil
}
