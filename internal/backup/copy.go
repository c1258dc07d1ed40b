package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/workpool"
)

// CopyOptions are Copy's settings.
type CopyOptions struct {
	Concurrency    int           // parts copied at once (at least one)
	ArchiveTimeout time.Duration // how long the backup's stop segment may take to reach dst
	LockMaxAge     time.Duration
	LockWait       time.Duration
	Log            *slog.Logger
	Now            func() time.Time // nil: time.Now
}

// Copied says what Copy did for one backup.
type Copied struct {
	Name    string
	Already bool  // dst had it, as src has it: nothing was written
	Stored  int64 // bytes of parts written to dst
}

// maxCopyChain bounds the ancestors Copy follows: a chain longer than any full-every
// allows is a loop in hostile manifests.
const maxCopyChain = 1000

// Copy puts the backup name of src into dst under the same name, as backup-push would
// have stored it there: each part read back from src (verified as restore reads it)
// and written through dst's own compression and encryption, the relation map, and,
// last, the manifest (with dst's part sizes), once the backup's stop segment is in
// dst; permanent if it is permanent in src. An incremental backup's ancestors that dst
// lacks are copied first, oldest first, so that dst can restore it alone. A backup dst
// already holds (same name, same start) is left as it is. Both repositories must be
// the same cluster's. On failure nothing of a backup without its manifest is left in
// dst (best effort), as after a failed backup-push.
func Copy(ctx context.Context, src, dst *repo.Repo, name string, opt CopyOptions) ([]Copied, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	id, err := src.Identity(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := dst.EnsureIdentity(ctx, repo.Identity{SystemID: id.SystemID, PGVersion: id.PGVersion, Created: opt.Now().UTC(),
		CreatedBy: "pgb", FirstWrite: "backup-push (copy of backup " + name + ")"}); err != nil {
		return nil, err
	}
	have, _, err := src.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	there, _, err := dst.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	byName := func(list []*repo.Summary, n string) *repo.Summary {
		for _, s := range list {
			if s.Name == n {
				return s
			}
		}
		return nil
	}
	// The chain to copy: name, then its ancestors dst lacks; copied oldest first.
	var chain []*repo.Summary
	for n := name; n != ""; {
		s := byName(have, n)
		if s == nil {
			return nil, fmt.Errorf("backup %s is not in %s (or is damaged there: pgb backup-list says why)", n, src)
		}
		if d := byName(there, n); d != nil {
			if d.StartLSN != s.StartLSN || d.StopLSN != s.StopLSN || d.Timeline != s.Timeline {
				return nil, fmt.Errorf("%s already holds another backup named %s (start %s, not %s): it cannot be copied there", dst, n, d.StartLSN, s.StartLSN)
			}
			break
		}
		chain = append(chain, s)
		if len(chain) > maxCopyChain {
			return nil, fmt.Errorf("backup %s: its chain of parents in %s is longer than %d backups: damaged", name, src, maxCopyChain)
		}
		n = s.Parent
	}
	if len(chain) == 0 {
		return []Copied{{Name: name, Already: true}}, nil
	}
	lock, err := dst.AcquireBackupLock(ctx, "backup-push", repo.LockOptions{MaxAge: opt.LockMaxAge, Wait: opt.LockWait, Log: opt.Log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Release(context.WithoutCancel(ctx)); err != nil {
			opt.Log.Warn("could not release the backup lock; the next backup-push may find it", "error", err)
		}
	}()
	permanent, err := src.PermanentBackups(ctx)
	if err != nil {
		return nil, err
	}
	var out []Copied
	for i := len(chain) - 1; i >= 0; i-- {
		c, err := copyOne(ctx, src, dst, chain[i], permanent[chain[i].Name], opt)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	return out, nil
}

// copyOne copies the backup s of src into dst (see Copy); its parent is there.
func copyOne(ctx context.Context, src, dst *repo.Repo, s *repo.Summary, permanent bool, opt CopyOptions) (c Copied, err error) {
	c.Name = s.Name
	m, err := src.OpenManifest(ctx, s, "")
	if err != nil {
		return c, err
	}
	defer func() { _ = m.Close() }() // its file list, a temporary file
	if free, err := dst.BackupNameFree(ctx, s.Name); err != nil {
		return c, err
	} else if !free {
		// Objects of an earlier copy that did not complete (it has no manifest).
		if left, err := dst.RemoveIncompleteBackup(ctx, s.Name); err != nil {
			return c, fmt.Errorf("%s holds objects of backup %s from a copy that did not complete, and they could not be removed (%d left): %w", dst, s.Name, len(left), err)
		}
	}
	ok := false
	defer func() {
		if ok {
			return
		}
		if left, rerr := dst.RemoveIncompleteBackup(context.WithoutCancel(ctx), s.Name); rerr != nil && !errors.Is(rerr, repo.ErrBackupComplete) {
			opt.Log.Warn("the copy failed and some of its objects could not be removed: pgb delete --garbage removes them", "backup", s.Name, "left", len(left), "error", rerr)
		}
	}()
	parts := make([]repo.Part, len(m.Parts))
	var mu sync.Mutex
	idx := make([]int, len(m.Parts))
	for i := range idx {
		idx[i] = i
	}
	err = workpool.Run(ctx, opt.Concurrency, idx, func(ctx context.Context, items <-chan int) error {
		for i := range items {
			p, err := copyPart(ctx, src, dst, s.Name, m.Parts[i])
			if err != nil {
				return err
			}
			mu.Lock()
			parts[i] = p
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	switch rm, err := src.ReadRelMap(ctx, s.Name); {
	case errors.Is(err, repo.ErrNoRelMap): // older backups have none
	case err != nil:
		return c, err
	default:
		if err := dst.PutRelMap(ctx, s.Name, rm); err != nil {
			return c, err
		}
	}
	if f, err := wal.Parse(m.StopWAL); err != nil {
		return c, fmt.Errorf("backup %s: stop segment %q: %w", s.Name, m.StopWAL, err)
	} else if err := dst.WaitForWAL(ctx, f, opt.ArchiveTimeout); err != nil {
		if errors.Is(err, repo.ErrWALTimeout) {
			return c, fmt.Errorf("the stop WAL segment %s of backup %s did not reach %s within %s (--archive-timeout): without it the copy cannot be restored there, so it was not recorded; check that wal-push archives into every repository", m.StopWAL, s.Name, dst, opt.ArchiveTimeout)
		}
		return c, err
	}
	m.Parts = parts
	m.StoredSize = 0
	for _, p := range parts {
		m.StoredSize += p.Stored
	}
	c.Stored = m.StoredSize
	m.Compression = dst.Codec().Name()
	if err := dst.PutBackup(ctx, m); err != nil {
		return c, fmt.Errorf("write manifest of backup %s in %s: %w", s.Name, dst, err)
	}
	ok = true
	if permanent {
		if err := dst.MarkPermanent(ctx, s.Name, opt.Now()); err != nil {
			return c, fmt.Errorf("backup %s is copied to %s but not marked permanent there (pgb backup-mark --permanent): %w", s.Name, dst, err)
		}
	}
	return c, nil
}

// copyPart copies part p of backup from src to dst, verified on the way: a part that
// does not decode whole with its checksum fails the copy and is not stored.
func copyPart(ctx context.Context, src, dst *repo.Repo, backup string, p repo.Part) (repo.Part, error) {
	o, err := src.OpenPart(ctx, backup, p)
	if err != nil {
		return p, err
	}
	defer func() { _ = o.Close() }() // read-only
	w, err := dst.CreatePart(ctx, backup, p.N)
	if err != nil {
		return p, err
	}
	if _, err := io.Copy(w, o); err != nil {
		w.Abort(err)
		return p, fmt.Errorf("copy part %d of backup %s: %w", p.N, backup, err)
	}
	stored, err := w.Close()
	if err != nil {
		return p, fmt.Errorf("copy part %d of backup %s: %w", p.N, backup, err)
	}
	p.Stored = stored
	return p, nil
}
