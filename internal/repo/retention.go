package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// permanentName marks a backup as permanent: retention never deletes it. The
// manifest is immutable, so the mark is an object of its own beside it.
const permanentName = "permanent"

// PermanentKey names the mark that makes a backup permanent.
func PermanentKey(backup string) string { return BackupPrefix(backup) + permanentName }

// permanentMark is the content of a permanent mark.
type permanentMark struct {
	Name   string    `json:"name"`
	Marked time.Time `json:"marked"`
}

// ErrPermanent means a backup is marked permanent: DeleteBackup refuses it.
var ErrPermanent = errors.New("the backup is marked permanent")

// MarkPermanent marks the complete backup name permanent. Marking a backup that is
// already permanent changes nothing.
func (r *Repo) MarkPermanent(ctx context.Context, name string, now time.Time) error {
	if _, err := r.st.Stat(ctx, ManifestKey(name)); err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
		}
		return fmt.Errorf("look for backup %s: %w", name, err)
	}
	err := r.putJSON(ctx, PermanentKey(name), permanentMark{Name: name, Marked: now.UTC()})
	if errors.Is(err, storage.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark backup %s permanent: %w", name, err)
	}
	return nil
}

// UnmarkPermanent removes the permanent mark of backup name; a backup without one is
// left as it is.
func (r *Repo) UnmarkPermanent(ctx context.Context, name string) error {
	if _, err := r.st.Stat(ctx, ManifestKey(name)); errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
	}
	if err := r.st.Delete(ctx, PermanentKey(name)); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("unmark backup %s: %w", name, err)
	}
	return nil
}

// PermanentBackups returns the names of the backups marked permanent, in one listing.
func (r *Repo) PermanentBackups(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := r.st.List(ctx, backupsPrefix, func(o storage.ObjectInfo) error {
		if name, doc, ok := strings.Cut(strings.TrimPrefix(o.Key, backupsPrefix), "/"); ok && doc == permanentName {
			out[name] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	return out, nil
}

// DeleteBackup removes backup name in an order that is safe to interrupt: the
// manifest first (the backup no longer exists for any reader), alone; then its parts
// and its permanent mark, in batches where the store deletes in batches
// (storage.DeleteAll); the summary last, alone. A backup whose manifest is gone but whose summary
// is still there is a delete that was interrupted (or a backup that failed in its
// last step): IncompleteBackups lists it, and DeleteBackup finishes it. A backup
// marked permanent is refused with ErrPermanent. Objects already gone count as
// removed.
func (r *Repo) DeleteBackup(ctx context.Context, name string) error {
	if !validBackupName(name) {
		return fmt.Errorf("backup %q: %w", name, ErrDamagedBackup)
	}
	var keys []string
	hasManifest, permanent := false, false
	err := r.st.List(ctx, BackupPrefix(name), func(o storage.ObjectInfo) error {
		switch o.Key {
		case ManifestKey(name):
			hasManifest = true
		case PermanentKey(name):
			permanent = true
		case SummaryKey(name):
		default:
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list the objects of backup %s: %w", name, err)
	}
	if hasManifest && permanent {
		return fmt.Errorf("backup %s: %w (pgb backup-mark --no-permanent %s lifts it)", name, ErrPermanent, name)
	}
	sort.Strings(keys)
	if err := r.st.Delete(ctx, ManifestKey(name)); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("delete backup %s: remove %s: %w", name, ManifestKey(name), err)
	}
	// The parts and the permanent mark in batches where the store has them.
	keys = append(keys, PermanentKey(name))
	if err := storage.DeleteAll(ctx, r.st, keys); err != nil {
		return fmt.Errorf("delete backup %s: remove its parts: %w", name, err)
	}
	if err := r.st.Delete(ctx, SummaryKey(name)); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("delete backup %s: remove %s: %w", name, SummaryKey(name), err)
	}
	return nil
}

// IncompleteBackup is a backup directory without a manifest: a backup in progress, one
// that failed, or a delete that was interrupted.
type IncompleteBackup struct {
	Name       string
	HasSummary bool      // written just before the manifest: a delete was interrupted, or the very last step of a backup failed
	Newest     time.Time // when its newest object was stored
	Size       int64     // bytes stored
	Objects    int
}

// IncompleteBackups lists the backup directories that have no manifest.
func (r *Repo) IncompleteBackups(ctx context.Context) ([]IncompleteBackup, error) {
	type acc struct {
		IncompleteBackup
		manifest bool
	}
	by := map[string]*acc{}
	err := r.eachBackupObject(ctx, func(name, doc string, o storage.ObjectInfo) {
		a := by[name]
		if a == nil {
			a = &acc{IncompleteBackup: IncompleteBackup{Name: name}}
			by[name] = a
		}
		switch doc {
		case manifestName:
			a.manifest = true
		case summaryName:
			a.HasSummary = true
		}
		if o.ModTime.After(a.Newest) {
			a.Newest = o.ModTime
		}
		a.Size += o.Size
		a.Objects++
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []IncompleteBackup
	for _, a := range by {
		if !a.manifest && validBackupName(a.Name) {
			out = append(out, a.IncompleteBackup)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Probe is an object left under check/ by a pgb check that was killed.
type Probe struct {
	Key    string // for messages
	Size   int64
	Stored time.Time
}

// Probes lists the objects under check/.
func (r *Repo) Probes(ctx context.Context) ([]Probe, error) {
	var out []Probe
	err := r.st.List(ctx, "check/", func(o storage.ObjectInfo) error {
		if strings.HasPrefix(o.Key, "check/probe-") {
			out = append(out, Probe{Key: o.Key, Size: o.Size, Stored: o.ModTime})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list check probes: %w", err)
	}
	return out, nil
}

// DeleteProbe removes a probe Probes listed.
func (r *Repo) DeleteProbe(ctx context.Context, p Probe) error {
	if !strings.HasPrefix(p.Key, "check/probe-") {
		return fmt.Errorf("%q is not a check probe", p.Key)
	}
	if err := r.st.Delete(ctx, p.Key); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p.Key, err)
	}
	return nil
}

// DeleteWAL removes one archived WAL file that ListWAL returned, and a segment's
// cached summary after it. Timeline history files are never removed: they are
// refused. A file already gone counts as removed.
func (r *Repo) DeleteWAL(ctx context.Context, o WALObject) error {
	if o.Kind == 0 || o.Name == "" {
		return fmt.Errorf("delete WAL: no file named")
	}
	if o.Kind == wal.History {
		return fmt.Errorf("delete WAL %s: timeline history files are kept", o.Name)
	}
	key := WALKey(o.File)
	if err := r.st.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	if o.Kind == wal.Segment {
		// After the segment: a summary left without its segment by an interrupted
		// delete is never read (readers list wal/ and read the summaries of the
		// segments they find).
		return r.DeleteWALSummary(ctx, o.File)
	}
	return nil
}

// DeleteWALs removes archived WAL files that ListWAL returned, in the order given
// (oldest first, for an interruption-safe delete), in batches where the store deletes
// in batches (storage.DeleteAll): each batch starts once the ones before it are gone.
// Each segment's cached summary goes with it, in the same batch: either may outlive
// the other when a delete is interrupted, and neither matters alone (a summary is
// read only for a segment wal/ lists; a segment without one is summarised again).
// Timeline history files are refused before anything is deleted. Files already gone
// count as removed.
func (r *Repo) DeleteWALs(ctx context.Context, objs []WALObject) error {
	keys := make([]string, 0, 2*len(objs))
	for _, o := range objs {
		if o.Kind == 0 || o.Name == "" {
			return fmt.Errorf("delete WAL: no file named")
		}
		if o.Kind == wal.History {
			return fmt.Errorf("delete WAL %s: timeline history files are kept", o.Name)
		}
		keys = append(keys, WALKey(o.File))
		if o.Kind == wal.Segment {
			keys = append(keys, WALSummaryKey(o.File))
		}
	}
	if err := storage.DeleteAll(ctx, r.st, keys); err != nil {
		return fmt.Errorf("remove WAL: %w", err)
	}
	return nil
}

// DeleteRestorePoint removes the restore point name; one already gone counts as
// removed.
func (r *Repo) DeleteRestorePoint(ctx context.Context, name string) error {
	if err := ValidRestorePointName(name); err != nil {
		return err
	}
	if err := r.st.Delete(ctx, restorePointKey(name)); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("remove restore point %s: %w", name, err)
	}
	return nil
}

// StaleTemps finds (and with remove deletes) what killed writers left unfinished below
// backups/ and wal/ before cutoff, on stores that keep such leftovers: temp files
// (filesystem), incomplete multipart uploads (S3). It returns how many and their bytes.
// Call it holding the backup lock, under which alone backups/ is written; a wal-push
// writing below wal/ meanwhile is younger than any sensible cutoff (a day by default),
// and one that is not fails and is retried by PostgreSQL.
func (r *Repo) StaleTemps(ctx context.Context, cutoff time.Time, remove bool) (files int, bytes int64, err error) {
	c, ok := storage.Unwrap(r.st).(interface {
		RemoveStaleTemps(ctx context.Context, prefix string, cutoff time.Time, remove bool) (int, int64, error)
	})
	if !ok {
		return 0, 0, nil
	}
	for _, p := range []string{backupsPrefix, walPrefix} {
		n, b, err := c.RemoveStaleTemps(ctx, p, cutoff, remove)
		files, bytes = files+n, bytes+b
		if err != nil {
			return files, bytes, err
		}
	}
	return files, bytes, nil
}
