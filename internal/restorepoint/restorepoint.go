// Package restorepoint is pgb restore-point: it creates a named restore point in
// PostgreSQL, records it in the repository and makes its WAL reach the archive.
package restorepoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// DB is what a restore point needs of a PostgreSQL session (*pg.Conn is one).
type DB interface {
	archive.Switcher
	SystemID(ctx context.Context) (uint64, error)
	Major() int
	CreateRestorePoint(ctx context.Context, name string) (wal.LSN, uint32, error)
}

// Options are Create's settings.
type Options struct {
	ArchiveTimeout time.Duration    // how long the point's segment may take to reach the repository
	Now            func() time.Time // the clock the point's time is read from; nil is time.Now
	// Also are more repositories of the cluster (several repositories): each is checked
	// like the first, gets the point's record too and has its segment waited for.
	Also []*repo.Repo
}

// Created is a restore point that exists: in PostgreSQL's WAL and in the repository.
type Created struct {
	Point   repo.RestorePoint
	Segment string // the WAL segment switched after the point, which holds it
	// Archived is nil when Segment reached the repository within the timeout, else why
	// not: recovering to the point needs it, but the point exists regardless.
	Archived error
}

// Create makes the restore point name on db's cluster and records it in rp, which must
// be that cluster's repository, then switches WAL and waits (up to opt.ArchiveTimeout)
// for the segment holding the point to be archived. A taken name is refused with
// repo.ErrRestorePointExists, and so is a name the repository cannot say is free
// (its record damaged, the store failing), before PostgreSQL is asked: a restore point
// cannot be undone there. A point whose WAL has not arrived yet is Created with
// Archived set. An error means no point was recorded, except when WAL could not be
// switched after a recorded point: then the error says so and Point is that point.
func Create(ctx context.Context, db DB, rp *repo.Repo, name string, opt Options) (Created, error) {
	if err := repo.ValidRestorePointName(name); err != nil {
		return Created{}, err
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	sysid, err := db.SystemID(ctx)
	if err != nil {
		return Created{}, err
	}
	all := append([]*repo.Repo{rp}, opt.Also...)
	for _, rp := range all {
		id, err := rp.Identity(ctx)
		if err != nil {
			return Created{}, err
		}
		if err := id.Matches(repo.SystemID(sysid), db.Major()); err != nil {
			return Created{}, err
		}
		// Only a name known to be free is used: PostgreSQL's restore point cannot be undone.
		switch _, err := rp.ReadRestorePoint(ctx, name); {
		case err == nil:
			return Created{}, fmt.Errorf("%w: %q; pick another name", repo.ErrRestorePointExists, name)
		case !errors.Is(err, repo.ErrNoRestorePoint):
			return Created{}, fmt.Errorf("restore point %q: cannot tell whether the name is free: %w; nothing was created: "+
				"retry once the repository answers, or pick another name", name, err)
		}
	}
	lsn, tli, err := db.CreateRestorePoint(ctx, name)
	if err != nil {
		return Created{}, err
	}
	point := repo.RestorePoint{Name: name, LSN: lsn, Timeline: tli, Time: now().UTC()}
	// A repository that cannot record it: the point exists in PostgreSQL all the same
	// (it cannot be undone there), it is recorded where it can be, and its WAL is
	// switched; the error names what is missing where and the LSN to restore to.
	var unrecorded []error
	var recorded []*repo.Repo
	for _, r := range all {
		if err := r.PutRestorePoint(ctx, point); err != nil {
			unrecorded = append(unrecorded, fmt.Errorf("%s: %w", r, err))
			continue
		}
		recorded = append(recorded, r)
	}
	if len(recorded) == 0 {
		seg, _ := archive.SwitchWAL(ctx, db, rp, 0) // so that its WAL is archived all the same
		return Created{Point: point, Segment: seg}, fmt.Errorf("restore point %q was created in PostgreSQL at LSN %s on timeline %d, but could not be recorded (%w): "+
			"restore to it with --target-lsn %s, or create another name once the repository answers", name, lsn, tli, errors.Join(unrecorded...), lsn)
	}
	seg, archived := archive.SwitchWAL(ctx, db, recorded[0], opt.ArchiveTimeout)
	if len(unrecorded) > 0 {
		switch {
		case seg == "":
			unrecorded = append(unrecorded, fmt.Errorf("and WAL was not switched after it: %w", archived))
		case archived != nil:
			unrecorded = append(unrecorded, fmt.Errorf("and its segment %s did not reach %s: %w", seg, recorded[0], archived))
		}
		c := Created{Point: point, Segment: seg, Archived: archived}
		return c, fmt.Errorf("restore point %q was created at LSN %s on timeline %d and recorded in %s, but not in every repository (%w): "+
			"restoring from one without it, give --target-lsn %s", name, lsn, tli, recorded[0], errors.Join(unrecorded...), lsn)
	}
	recorded = recorded[1:]
	if archived == nil && seg != "" {
		for _, other := range recorded {
			f, err := wal.Parse(seg)
			if err == nil {
				err = other.WaitForWAL(ctx, f, opt.ArchiveTimeout)
			}
			if err != nil {
				archived = fmt.Errorf("%s: %w", other, err)
				break
			}
		}
	}
	if archived != nil && seg == "" {
		return Created{Point: point}, fmt.Errorf("restore point %q was created at LSN %s on timeline %d and recorded, but WAL was not switched after it: %w; "+
			"recovering to it needs the segment holding it archived: run SELECT pg_switch_wal(); (as a role allowed to), or wait for the segment to fill",
			name, lsn, tli, archived)
	}
	return Created{Point: point, Segment: seg, Archived: archived}, nil
}
