package archive

import (
	"context"
	"time"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// Switcher is what SwitchWAL needs of a PostgreSQL session (*pg.Conn is one).
type Switcher interface {
	Archiver(ctx context.Context) (pg.ArchiverStats, error)
	SwitchWAL(ctx context.Context) (string, error)
	ArchiveFailing(ctx context.Context, since pg.ArchiverStats, seg string) error
}

// SwitchWAL completes the current WAL segment and waits, up to timeout, until it is in
// the repository. A segment that does not arrive is an error wrapping
// repo.ErrWALTimeout, with the segment's name returned.
// It gives up early, with an error wrapping pg.ErrArchiveFailing, as soon as
// pg_stat_archiver shows archive_command failing for that segment or a later one.
// The name is "" only when the switch itself failed.
func SwitchWAL(ctx context.Context, db Switcher, rp *repo.Repo, timeout time.Duration) (string, error) {
	before, err := db.Archiver(ctx)
	if err != nil {
		return "", err
	}
	seg, err := db.SwitchWAL(ctx)
	if err != nil {
		return "", err
	}
	f, err := wal.Parse(seg)
	if err != nil {
		return "", err
	}
	failing := func(ctx context.Context) error { return db.ArchiveFailing(ctx, before, seg) }
	return seg, rp.WaitForWALUntil(ctx, f, timeout, failing)
}
