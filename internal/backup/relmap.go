package backup

import (
	"context"
	"fmt"
	"sync"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
)

// RelationNamer is implemented by a Source that can say which relation each
// relation file holds (pg.Conn): the backup records it for pgb events.
type RelationNamer interface {
	// Databases lists the databases whose relations can be named, on the session.
	Databases(ctx context.Context) ([]pg.Database, error)
	// EachRelation calls fn for each relation with a relation file in database db,
	// at most limit (more is an error), over a connection of its own: it may run
	// while the session runs other statements.
	EachRelation(ctx context.Context, db string, limit int, fn func(pg.Relation) error) error
}

// startRelationNames stores the relation names of backup name, in the background:
// the databases are listed on the session now, then each one's relations are read over
// a connection of its own and stored as they arrive (never held whole), while the
// backup stops and waits for its last WAL segment on the session. wait waits until
// they are stored, or have failed, which only warns: names are a convenience and never
// fail the backup. abandon cancels and waits: nothing is written under the backup's
// prefix after it returns. Both may be called, in any order, any number of times.
func (p *Pusher) startRelationNames(ctx context.Context, name string) (wait, abandon func()) {
	none := func() {}
	n, ok := p.Src.(RelationNamer)
	if !ok {
		return none, none
	}
	dbs, err := n.Databases(ctx)
	if err != nil {
		p.Log.Warn("could not read the relation names; pgb events will show the relation files of this backup's time by number", "error", err)
		return none, none
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.storeRelationNames(ctx, n, name, dbs)
	}()
	var once sync.Once
	wait = func() { <-done; once.Do(cancel) }
	abandon = func() { cancel(); <-done }
	return wait, abandon
}

// storeRelationNames reads and stores the relations of dbs. A database that cannot be
// connected to is left out with a warning.
func (p *Pusher) storeRelationNames(ctx context.Context, n RelationNamer, name string, dbs []pg.Database) {
	var skipped []string
	err := p.Repo.PutRelMapStream(ctx, name, func(w repo.RelMapWriter) error {
		skipped = skipped[:0]
		total := 0
		for _, d := range dbs {
			started := false
			err := n.EachRelation(ctx, d.Name, pg.MaxRelations-total, func(r pg.Relation) error {
				if !started {
					started = true
					if err := w.Database(d.OID, d.Name); err != nil {
						return err
					}
				}
				total++
				return w.Relation(repo.Relation{OID: r.OID, Filenode: r.Filenode, Tablespace: r.Tablespace, Schema: r.Schema, Name: r.Name, Kind: r.Kind})
			})
			switch {
			case err != nil && (started || ctx.Err() != nil):
				// Part of its relations are written: the map cannot leave it out.
				return fmt.Errorf("database %s: %w", d.Name, err)
			case err != nil:
				skipped = append(skipped, fmt.Sprintf("%s: %v", d.Name, err))
			case !started:
				if err := w.Database(d.OID, d.Name); err != nil { // a database without relation files
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		p.Log.Warn("could not store the relation names; pgb events will show the relation files of this backup's time by number", "error", err)
		return
	}
	for _, s := range skipped {
		p.Log.Warn("could not read the relation names of a database; pgb events will show its relation files by number", "database", s)
	}
}
