package backup

import (
	"context"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
)

// RelationNamer is implemented by a Source that can say which relation each
// relation file holds (pg.Conn): the backup records it for pgb events.
type RelationNamer interface {
	RelationNames(ctx context.Context) ([]pg.DatabaseRelations, []string, error)
}

// recordRelationNames stores the relation names of backup name, before its
// manifest. Names are a convenience: failing to read or store them warns and
// never fails the backup.
func (p *Pusher) recordRelationNames(ctx context.Context, name string) {
	n, ok := p.Src.(RelationNamer)
	if !ok {
		return
	}
	dbs, skipped, err := n.RelationNames(ctx)
	if err != nil {
		p.Log.Warn("could not read the relation names; pgb events will show the relation files of this backup's time by number", "error", err)
		return
	}
	for _, s := range skipped {
		p.Log.Warn("could not read the relation names of a database; pgb events will show its relation files by number", "database", s)
	}
	m := &repo.RelMap{Databases: make([]repo.RelDatabase, 0, len(dbs))}
	for _, d := range dbs {
		rd := repo.RelDatabase{OID: d.OID, Name: d.Name, Relations: make([]repo.Relation, 0, len(d.Relations))}
		for _, r := range d.Relations {
			rd.Relations = append(rd.Relations, repo.Relation{OID: r.OID, Filenode: r.Filenode, Tablespace: r.Tablespace,
				Schema: r.Schema, Name: r.Name, Kind: r.Kind})
		}
		m.Databases = append(m.Databases, rd)
	}
	if err := p.Repo.PutRelMap(ctx, name, m); err != nil {
		p.Log.Warn("could not store the relation names; pgb events will show the relation files of this backup's time by number", "error", err)
	}
}
