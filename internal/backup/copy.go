package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
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
	Name     string
	Already  bool  // dst had it, as src has it: nothing was written
	Complete bool  // its manifest is in dst (it may still have failed to be marked permanent)
	Stored   int64 // bytes of parts written to dst
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
	// The destination is listed under its lock: a delete there cannot remove a parent
	// this copy counts on.
	lock, err := dst.AcquireBackupLock(ctx, "backup-push", repo.LockOptions{MaxAge: opt.LockMaxAge, Wait: opt.LockWait, Log: opt.Log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Release(context.WithoutCancel(ctx)); err != nil {
			opt.Log.Warn("could not release the backup lock; the next backup-push may find it", "error", err)
		}
	}()
	have, _, err := src.ListBackups(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReadBack, err)
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
	// The chain to copy: name, then its ancestors dst lacks; copied oldest first. A
	// backup is found in dst by what it is (its start and stop), not by its name: each
	// repository names its own backups by their start time, and two taken in the same
	// second in two repositories share a name. named maps names in src to names in dst.
	var chain []*repo.Summary
	named := map[string]string{}
	for n := name; n != ""; {
		s := byName(have, n)
		if s == nil {
			return nil, fmt.Errorf("backup %s is not in %s (or is damaged there: pgb backup-list says why)", n, src)
		}
		if d := sameIn(there, s); d != nil {
			named[s.Name] = d.Name
			break
		}
		chain = append(chain, s)
		if len(chain) > maxCopyChain {
			return nil, fmt.Errorf("backup %s: its chain of parents in %s is longer than %d backups: damaged", name, src, maxCopyChain)
		}
		n = s.Parent
	}
	if len(chain) == 0 {
		return []Copied{{Name: named[name], Already: true, Complete: true}}, nil
	}
	// Each backup copied needs its stop segment there; an ancestor's, from before the
	// repository had WAL, never comes: refused before any part is written.
	for _, s := range chain[1:] {
		f, err := wal.Parse(s.StopWAL)
		if err != nil {
			return nil, fmt.Errorf("backup %s: stop segment %q: %w", s.Name, s.StopWAL, err)
		}
		if err := dst.WaitForWAL(ctx, f, 0); errors.Is(err, repo.ErrWALTimeout) {
			return nil, fmt.Errorf("%w: backup %s is based on %s, which %s does not hold, and its WAL (stop segment %s) is not there either: %w",
				ErrChainNotThere, name, s.Name, dst, s.StopWAL, err)
		} else if err != nil {
			return nil, err
		}
	}
	permanent, err := src.PermanentBackups(ctx)
	if err != nil {
		return nil, err
	}
	var out []Copied
	for i := len(chain) - 1; i >= 0; i-- {
		s := chain[i]
		as := s.Name
		if byName(there, as) != nil { // another backup holds the name there
			if as, err = freeCopyName(ctx, dst, there, s.Name); err != nil {
				return out, err
			}
		}
		named[s.Name] = as
		c, err := copyOne(ctx, src, dst, s, as, named[s.Parent], permanent[s.Name], opt)
		if c.Complete {
			out = append(out, c)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// ErrReadBack wraps what failed reading the backup back from the repository it is
// copied from (a key this host lacks: repo.ErrNoKey too).
var ErrReadBack = errors.New("cannot read the backup back from its repository")

// ErrChainNotThere means the destination lacks an ancestor of the backup and that
// ancestor's WAL (a repository added after it was taken): it cannot be copied there;
// a backup of the destination's own can be taken instead.
var ErrChainNotThere = errors.New("the backup's chain cannot be copied")

// srcReader tags the errors of reading the source with ErrReadBack.
type srcReader struct{ r io.Reader }

func (s srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF { //nolint:errorlint // io.Reader returns io.EOF itself at the end; anything else is a failure
		err = fmt.Errorf("%w: %w", ErrReadBack, err)
	}
	return n, err
}

// sameIn returns the backup of list that is s: the same start and stop, timeline and
// start time (whatever its name); nil when none is.
func sameIn(list []*repo.Summary, s *repo.Summary) *repo.Summary {
	for _, d := range list {
		if d.StartLSN == s.StartLSN && d.StopLSN == s.StopLSN && d.Timeline == s.Timeline && d.StartTime.Equal(s.StartTime) {
			return d
		}
	}
	return nil
}

// freeCopyName is a name for a copy of backup name in dst, where another backup holds
// that name: name-copy, name-copy2, …
func freeCopyName(ctx context.Context, dst *repo.Repo, there []*repo.Summary, name string) (string, error) {
	for i := 1; i <= 100; i++ {
		cand := name + "-copy"
		if i > 1 {
			cand += strconv.Itoa(i)
		}
		if taken := slices.ContainsFunc(there, func(s *repo.Summary) bool { return s.Name == cand }); taken {
			continue
		}
		if free, err := dst.BackupNameFree(ctx, cand); err != nil || free {
			return cand, err
		}
	}
	return "", fmt.Errorf("%s holds backups named %s and 100 names after it: no name is free for its copy", dst, name)
}

// copyOne copies the backup s of src into dst under the name as, on the backup parent
// names there (see Copy).
func copyOne(ctx context.Context, src, dst *repo.Repo, s *repo.Summary, as, parent string, permanent bool, opt CopyOptions) (c Copied, err error) {
	c.Name = as
	m, err := src.OpenManifest(ctx, s, "")
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrReadBack, err)
	}
	defer func() { _ = m.Close() }() // its file list, a temporary file
	if m.Parent != "" && parent == "" {
		return c, fmt.Errorf("backup %s: its parent %s has no copy in %s", s.Name, m.Parent, dst) // Copy copies parents first
	}
	srcName := m.Name
	m.Name, m.Parent = as, parent
	if free, err := dst.BackupNameFree(ctx, as); err != nil {
		return c, err
	} else if !free {
		// Objects of an earlier copy that did not complete (it has no manifest).
		if left, err := dst.RemoveIncompleteBackup(ctx, as); err != nil {
			return c, fmt.Errorf("%s holds objects of backup %s from a copy that did not complete, and they could not be removed (%d left): %w", dst, as, len(left), err)
		}
	}
	ok := false // the backup is complete in dst, or its state unknown: remove nothing
	defer func() {
		if ok {
			return
		}
		if left, rerr := dst.RemoveIncompleteBackup(context.WithoutCancel(ctx), as); rerr != nil && !errors.Is(rerr, repo.ErrBackupComplete) {
			opt.Log.Warn("the copy failed and some of its objects could not be removed: pgb delete --garbage removes them", "backup", as, "left", len(left), "error", rerr)
		}
	}()
	parts := make([]repo.Part, len(m.Parts))
	idx := make([]int, len(m.Parts))
	for i := range idx {
		idx[i] = i
	}
	err = workpool.Run(ctx, opt.Concurrency, idx, func(ctx context.Context, items <-chan int) error {
		for i := range items {
			p, err := copyPart(ctx, src, dst, srcName, as, m.Parts[i])
			if err != nil {
				return err
			}
			parts[i] = p // each index goes to one worker, and Run returns once all have
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	switch rm, err := src.ReadRelMap(ctx, s.Name); {
	case errors.Is(err, repo.ErrNoRelMap): // older backups have none
	case err != nil:
		return c, fmt.Errorf("%w: %w", ErrReadBack, err)
	default:
		if err := dst.PutRelMap(ctx, as, rm); err != nil {
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
		// The manifest may be stored all the same (a lost acknowledgement, then
		// failing retries): look before calling the copy failed or removing anything.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), manifestLookTimeout)
		defer cancel()
		stored, lerr := dst.BackupRecorded(lctx, m)
		switch {
		case lerr == nil && stored:
			opt.Log.Warn("writing the manifest reported an error, but the manifest is stored: the copy is complete", "backup", as, "error", err)
		case lerr == nil:
			return c, fmt.Errorf("write manifest of backup %s in %s: %w", as, dst, err)
		default:
			ok = true
			return c, fmt.Errorf("write manifest of backup %s in %s: %w; whether it was stored could not be checked (%w): its objects are left in place; pgb backup-list lists it if it is complete",
				as, dst, err, lerr)
		}
	}
	ok, c.Complete = true, true
	if permanent {
		if err := dst.MarkPermanent(ctx, as, opt.Now()); err != nil {
			return c, fmt.Errorf("backup %s is copied to %s but not marked permanent there (pgb backup-mark --permanent %s): %w", as, dst, as, err)
		}
	}
	return c, nil
}

// copyPart copies part p of backup from src to dst, as backup as there, verified on
// the way: a part that does not decode whole with its checksum fails the copy and is
// not stored.
func copyPart(ctx context.Context, src, dst *repo.Repo, backup, as string, p repo.Part) (repo.Part, error) {
	o, err := src.OpenPart(ctx, backup, p)
	if err != nil {
		return p, fmt.Errorf("%w: %w", ErrReadBack, err)
	}
	defer func() { _ = o.Close() }() // read-only
	w, err := dst.CreatePart(ctx, as, p.N)
	if err != nil {
		return p, err
	}
	if _, err := io.Copy(w, srcReader{o}); err != nil {
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
