package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// relKey finds a relation by database and relation file (or oid).
type relKey struct{ db, n uint32 }

// relIndex is one backup's relation map, indexed.
type relIndex struct {
	backup string
	dbs    map[uint32]string
	files  map[relKey]repo.Relation
}

func newRelIndex(backup string, m *repo.RelMap) *relIndex {
	ix := &relIndex{backup: backup, dbs: map[uint32]string{}, files: map[relKey]repo.Relation{}}
	for _, d := range m.Databases {
		ix.dbs[d.OID] = d.Name
		for _, r := range d.Relations {
			ix.files[relKey{d.OID, r.Filenode}] = r
		}
	}
	return ix
}

// Namer names the relations and databases of events from the relation maps
// backups recorded: the map of the newest backup that started at or before
// the event (the oldest backup's for an event before every backup). A
// relation that map does not know was created after that backup.
type Namer struct {
	rp      *repo.Repo
	backups []*repo.Summary // oldest first
	log     *slog.Logger
	cache   []*relIndex // the last maps read, at most cacheMaps
	missing map[string]bool
	// Problem, when set, is told of a relation map that is damaged, too
	// large or of a newer format (once per backup); otherwise it is logged.
	Problem func(format string, a ...any)
}

// cacheMaps bounds how many relation maps a Namer keeps in memory: events
// come in WAL order per timeline, so the map they need changes rarely, and one
// indexed map costs some 170 bytes per relation plus its names (measured with a
// million relations), more while it is decoded: about 1 GB for 3.5 million.
const cacheMaps = 1

// NewNamer names events from the relation maps of backups (oldest first).
func NewNamer(rp *repo.Repo, backups []*repo.Summary, log *slog.Logger) *Namer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Namer{rp: rp, backups: backups, log: log, missing: map[string]bool{}}
}

// Name fills in the names of e's database and relations. A backup without a
// usable map leaves them unnamed (with a warning); only a storage error fails.
func (n *Namer) Name(ctx context.Context, e *Event) error {
	ix, err := n.index(ctx, e.LSN)
	if err != nil || ix == nil {
		return err
	}
	e.NamesFrom = ix.backup
	e.DatabaseName = ix.dbs[e.Database]
	for i := range e.Relations {
		r := &e.Relations[i]
		if rel, ok := ix.files[relKey{r.File.Database, r.File.Relation}]; ok {
			r.OID, r.Schema, r.Name, r.Kind = rel.OID, rel.Schema, rel.Name, rel.Kind
		}
	}
	return nil
}

// index returns the relation map to name an event at lsn with: the newest
// backup at or before it that has one, else the oldest after it that has one.
func (n *Namer) index(ctx context.Context, lsn wal.LSN) (*relIndex, error) {
	var order []*repo.Summary
	for i := len(n.backups) - 1; i >= 0; i-- {
		if n.backups[i].StartLSN <= lsn {
			order = append(order, n.backups[i])
		}
	}
	for _, b := range n.backups {
		if b.StartLSN > lsn {
			order = append(order, b)
		}
	}
	for _, b := range order {
		if n.missing[b.Name] {
			continue
		}
		for _, ix := range n.cache {
			if ix.backup == b.Name {
				return ix, nil
			}
		}
		m, err := n.rp.ReadRelMap(ctx, b.Name)
		switch {
		case errors.Is(err, repo.ErrNoRelMap):
			n.missing[b.Name] = true
			continue
		case errors.Is(err, repo.ErrCorrupt), errors.Is(err, repo.ErrNewerFormat):
			if n.Problem != nil {
				n.Problem("%v: events it would name show files only, or names from another backup's map", err)
			} else {
				n.log.Warn("passing over the relation names of a backup", "backup", b.Name, "error", err)
			}
			n.missing[b.Name] = true
			continue
		case err != nil:
			return nil, fmt.Errorf("read the relation names of backup %s: %w", b.Name, err)
		}
		ix := newRelIndex(b.Name, m)
		n.cache = append(n.cache, ix)
		if len(n.cache) > cacheMaps {
			n.cache = n.cache[1:]
		}
		return ix, nil
	}
	return nil, nil
}
