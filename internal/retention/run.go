package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
)

// Options tune Delete.
type Options struct {
	Policy Policy
	Now    time.Time
	// Confirm deletes; without it Delete only plans (a dry run).
	Confirm bool
	// Lock tunes the backup lock that a confirmed delete holds.
	Lock repo.LockOptions
	Log  *slog.Logger
}

// Result is what Delete planned, and did when confirmed.
type Result struct {
	Plan
	// Unfinished are backups whose delete was interrupted (their manifest is gone,
	// their summary still there): a confirmed delete finishes them.
	Unfinished []repo.IncompleteBackup
	// Drills are the drill records beyond the newest KeepDrills (the newest
	// successful one is kept too).
	Drills []repo.DrillKey
	// Verifies are the verify records beyond the newest KeepDrills (the newest that
	// passed is kept too).
	Verifies []repo.DrillKey
	Deleted  bool // the plan was carried out
}

// Load reads what planning needs from the repository. A backup written by a newer
// pgb stops it: this pgb cannot tell which WAL that backup needs.
func Load(ctx context.Context, r *repo.Repo, log *slog.Logger) (Input, error) {
	sums, damaged, err := r.ListBackups(ctx)
	if err != nil {
		return Input{}, err
	}
	for _, d := range damaged {
		if errors.Is(d.Err, repo.ErrNewerFormat) {
			return Input{}, fmt.Errorf("%w: upgrade pgb before deleting anything", d.Err)
		}
		if log != nil {
			log.Warn("a damaged backup is left alone (restore skips it)", "backup", d.Name, "reason", d.Err.Error())
		}
	}
	perm, err := r.PermanentBackups(ctx)
	if err != nil {
		return Input{}, err
	}
	var in Input
	for _, s := range sums {
		in.Backups = append(in.Backups, Backup{Summary: s, Permanent: perm[s.Name]})
	}
	if in.Streamed, err = r.ListWALAndStreamed(ctx, func(o repo.WALObject) error { in.WAL = append(in.WAL, o); return nil }); err != nil {
		return Input{}, fmt.Errorf("list WAL: %w", err)
	}
	if in.RestorePoints, err = r.ListRestorePoints(ctx); err != nil {
		return Input{}, err
	}
	return in, nil
}

// Delete plans what opt.Policy deletes and, with opt.Confirm, deletes it under the
// repository's backup lock (never while a backup runs), in an order that is safe to
// interrupt and that a rerun finishes: each backup's manifest first (the backup
// disappears), then its parts and its summary; then the restore points outside the new
// window; then WAL, oldest first, in batches where the store deletes in batches
// (each batch after the one before it is done); last the drill records beyond the
// newest KeepDrills (but the newest successful one). Backups whose delete was
// interrupted are finished first.
func Delete(ctx context.Context, r *repo.Repo, opt Options) (res Result, err error) {
	if !opt.Policy.Set() {
		return res, ErrNoPolicy
	}
	if opt.Confirm {
		lock, err := r.AcquireBackupLock(ctx, "delete", opt.Lock)
		if err != nil {
			return res, err
		}
		defer func() {
			if rerr := lock.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
				err = fmt.Errorf("release the backup lock: %w", rerr)
			}
		}()
	}
	in, err := Load(ctx, r, opt.Log)
	if err != nil {
		return res, err
	}
	in.Policy, in.Now = opt.Policy, opt.Now
	if res.Plan, err = Make(in); err != nil {
		return res, err
	}
	inc, err := r.IncompleteBackups(ctx)
	if err != nil {
		return res, err
	}
	for _, b := range inc {
		if b.HasSummary {
			res.Unfinished = append(res.Unfinished, b)
			res.Bytes += b.Size
		}
	}
	if res.Drills, err = oldDrills(ctx, r, opt.Now); err != nil {
		return res, err
	}
	if res.Verifies, err = oldVerifies(ctx, r, opt.Now); err != nil {
		return res, err
	}
	if !opt.Confirm {
		return res, nil
	}
	if err := carryOut(ctx, r, res); err != nil {
		return res, fmt.Errorf("%w; what is already deleted is not needed by what is kept: run the same delete again to finish", err)
	}
	res.Deleted = true
	return res, nil
}

// carryOut deletes what res plans, in the order Delete documents.
func carryOut(ctx context.Context, r *repo.Repo, res Result) error {
	for _, b := range res.Unfinished {
		if err := r.DeleteBackup(ctx, b.Name); err != nil {
			return err
		}
	}
	for _, b := range res.Delete {
		if err := r.DeleteBackup(ctx, b.Name); err != nil {
			return err
		}
	}
	for _, rp := range res.RestorePoints {
		if err := r.DeleteRestorePoint(ctx, rp.Name); err != nil {
			return err
		}
	}
	if err := r.DeleteWALs(ctx, res.WAL); err != nil {
		return err
	}
	for _, st := range res.Streamed {
		if err := r.DeleteStreamed(ctx, st.File); err != nil {
			return err
		}
	}
	if err := r.DeleteDrills(ctx, res.Drills); err != nil {
		return err
	}
	return r.DeleteVerifies(ctx, res.Verifies)
}

// Garbage is what interrupted writes left behind.
type Garbage struct {
	Backups []repo.IncompleteBackup // backups without a manifest
	Probes  []repo.Probe            // check probes
	// Summaries are cached WAL summaries whose segment is gone.
	Summaries []repo.Probe
	// Streamed are segments stored whole that still have pgb wal-stream's chunks (a
	// stream stopped between storing the segment and removing them).
	Streamed []repo.StreamedSegment
	// TempFiles are what killed writers left unfinished below backups/ and wal/: temp
	// files in directories nothing writes again (filesystem repositories), incomplete
	// multipart uploads (S3); counted in Bytes.
	TempFiles int
	// TempsSkipped says why those leftovers could not be looked for (a store, or
	// credentials, that do not allow it); the rest is collected all the same.
	TempsSkipped string
	Bytes        int64
	Deleted      bool
}

// CollectGarbage finds, and with confirm removes, the objects interrupted writes left
// behind that are older than grace: backups without a manifest (parts, summaries),
// pgb check probes, and cached WAL summaries whose segment is gone. It holds the backup lock while it looks, so a backup in progress
// is never among them.
func CollectGarbage(ctx context.Context, r *repo.Repo, now time.Time, grace time.Duration, confirm bool, lockOpt repo.LockOptions) (g Garbage, err error) {
	lock, err := r.AcquireBackupLock(ctx, "delete --garbage", lockOpt)
	if err != nil {
		return g, err
	}
	defer func() {
		if rerr := lock.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = fmt.Errorf("release the backup lock: %w", rerr)
		}
	}()
	edge := now.Add(-grace)
	inc, err := r.IncompleteBackups(ctx)
	if err != nil {
		return g, err
	}
	for _, b := range inc {
		if b.Newest.Before(edge) {
			g.Backups = append(g.Backups, b)
			g.Bytes += b.Size
		}
	}
	probes, err := r.Probes(ctx)
	if err != nil {
		return g, err
	}
	for _, p := range probes {
		if p.Stored.Before(edge) {
			g.Probes = append(g.Probes, p)
			g.Bytes += p.Size
		}
	}
	sums, err := r.OrphanWALSummaries(ctx)
	if err != nil {
		return g, err
	}
	for _, p := range sums {
		if p.Stored.Before(edge) {
			g.Summaries = append(g.Summaries, p)
			g.Bytes += p.Size
		}
	}
	whole := map[string]bool{}
	streamed, err := r.ListWALAndStreamed(ctx, func(o repo.WALObject) error { whole[o.Name] = true; return nil })
	if err != nil {
		return g, err
	}
	for _, st := range streamed {
		if whole[st.Name] && st.Stored.Before(edge) {
			n, err := r.StreamedSize(ctx, st.File)
			if err != nil {
				return g, err
			}
			g.Streamed = append(g.Streamed, st)
			g.Bytes += n
		}
	}
	n, b, err := r.StaleTemps(ctx, edge, false)
	switch {
	case errors.Is(err, storage.ErrUnsupported):
		g.TempsSkipped = err.Error()
	case err != nil:
		return g, err
	}
	g.TempFiles, g.Bytes = n, g.Bytes+b
	if !confirm {
		return g, nil
	}
	if g.TempsSkipped == "" {
		if _, _, err := r.StaleTemps(ctx, edge, true); err != nil {
			return g, err
		}
	}
	for _, b := range g.Backups {
		if err := r.DeleteBackup(ctx, b.Name); err != nil {
			return g, err
		}
	}
	for _, p := range g.Probes {
		if err := r.DeleteProbe(ctx, p); err != nil {
			return g, err
		}
	}
	if err := r.DeleteOrphanWALSummaries(ctx, g.Summaries); err != nil {
		return g, err
	}
	for _, st := range g.Streamed {
		if err := r.DeleteStreamed(ctx, st.File); err != nil {
			return g, err
		}
	}
	g.Deleted = true
	return g, nil
}

// Mark sets (permanent) or lifts backup name's permanent mark under the backup lock,
// so that it never races a delete: a mark written while delete removes the backup
// would be reported stored and be deleted with it.
func Mark(ctx context.Context, r *repo.Repo, name string, permanent bool, now time.Time, lockOpt repo.LockOptions) (err error) {
	what := "backup-mark --no-permanent"
	if permanent {
		what = "backup-mark --permanent"
	}
	lock, err := r.AcquireBackupLock(ctx, what, lockOpt)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := lock.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = fmt.Errorf("the mark is stored, but the backup lock could not be released (the next backup-push or delete may wait for it): %w", rerr)
		}
	}()
	if permanent {
		return r.MarkPermanent(ctx, name, now)
	}
	return r.UnmarkPermanent(ctx, name)
}
