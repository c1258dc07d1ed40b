package events

import (
	"cmp"
	"slices"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

// Kind is the kind of an event.
type Kind string

// The events pgb events reports.
const (
	TableDropped    Kind = "drop"          // DROP TABLE (and what went with it)
	TableTruncated  Kind = "truncate"      // TRUNCATE: new, empty files
	TableRewritten  Kind = "rewrite"       // VACUUM FULL, CLUSTER or a rewriting ALTER TABLE
	DatabaseDropped Kind = "drop_database" // DROP DATABASE
	RowsChanged     Kind = "rows"          // many rows of one relation deleted or updated
)

// Relation is a relation an event concerns: its file as WAL names it, and
// what the relation map of a backup says of it (when it does).
type Relation struct {
	File   wal.RelFileNode `json:"-"`
	FileID string          `json:"file"` // tablespace/database/relfilenode
	OID    uint32          `json:"oid,omitempty"`
	Schema string          `json:"schema,omitempty"`
	Name   string          `json:"name,omitempty"`
	Kind   string          `json:"relkind,omitempty"`
}

// QualifiedName is schema.name, or "" when the relation is not named.
func (r Relation) QualifiedName() string {
	if r.Name == "" {
		return ""
	}
	return r.Schema + "." + r.Name
}

// Event is one destructive event: what happened and where recovery must stop
// to undo it.
type Event struct {
	Kind Kind      `json:"kind"`
	Time time.Time `json:"commit_time"`
	Xid  uint32    `json:"xid"`
	LSN  wal.LSN   `json:"lsn"` // the commit record's
	// RestoreLSN is where recovery must stop (exclusive) to undo the event:
	// the commit record, or for DROP DATABASE the first record that makes
	// the drop irreversible (the in-place update marking the database
	// invalid, else the dbase DROP).
	RestoreLSN wal.LSN `json:"restore_lsn"`
	Timeline   uint32  `json:"timeline"`
	Database   uint32  `json:"database_oid"`
	// DatabaseName is empty when no relation map names the database.
	DatabaseName string     `json:"database,omitempty"`
	Relations    []Relation `json:"relations,omitempty"`
	// TruncatedOIDs are the relations a heap TRUNCATE record named
	// (wal_level=logical only).
	TruncatedOIDs []uint32 `json:"-"`
	Deleted       int64    `json:"rows_deleted,omitempty"`
	Updated       int64    `json:"rows_updated,omitempty"`
	// NamesFrom is the backup whose relation map named the relations; empty
	// when none could.
	NamesFrom string `json:"names_from_backup,omitempty"`
	// Restore is the command that restores to just before the event; empty
	// when no backup can, NotRecoverable then says why.
	Restore        string `json:"restore_command"`
	NotRecoverable string `json:"not_recoverable,omitempty"`
}

// Folder folds the facts of consecutive segments of one timeline into events,
// carrying the work of the transactions still open from one segment to the
// next. Its memory is the work of the open transactions: a checkpoint prunes
// those that can no longer be open.
type Folder struct {
	// MinRows is the number of rows of one relation a transaction must delete
	// or update to be an event.
	MinRows int64
	// Begin is where the timeline's own WAL begins: a commit before it is a
	// copy of the parent timeline's, reported there.
	Begin   wal.LSN
	pending map[uint32]*Work
	// inplace is the last in-place update of each shared-catalog row seen
	// in the segments before (a few rows: pg_database's).
	inplace map[Row]wal.LSN
}

// Pending is how many transactions the folder holds work of.
func (f *Folder) Pending() int { return len(f.pending) }

// Fold adds the facts of the next segment and returns the events that ended
// in it, on timeline tli.
func (f *Folder) Fold(facts Facts, tli uint32) []Event {
	if f.pending == nil {
		f.pending = map[uint32]*Work{}
	}
	for _, w := range facts.Work {
		for _, row := range w.sharedDeletes {
			if at, ok := f.inplace[row]; ok {
				w.InvalidAt = earliest(w.InvalidAt, at)
			}
		}
		w.sharedDeletes = nil
	}
	for row, at := range facts.Inplace {
		if f.inplace == nil {
			f.inplace = map[Row]wal.LSN{}
		}
		f.inplace[row] = at
	}
	for xid, w := range facts.Work {
		if mine := f.pending[xid]; mine != nil {
			mine.merge(w)
		} else {
			f.pending[xid] = w
		}
	}
	var out []Event
	for i := range facts.Steps {
		s := &facts.Steps[i]
		switch s.Kind {
		case StepPrune:
			for xid := range f.pending {
				if int32(xid-s.Oldest) < 0 {
					delete(f.pending, xid)
				}
			}
		case StepEnd:
			w := f.take(s.Xid, s.Subxacts)
			if !s.Committed || s.LSN < f.Begin {
				continue
			}
			out = append(out, f.events(s, w, tli)...)
		}
	}
	return out
}

// take removes and merges the work of a transaction and its subtransactions.
func (f *Folder) take(xid uint32, subs []uint32) *Work {
	w := f.pending[xid]
	delete(f.pending, xid)
	if w == nil {
		w = &Work{}
	}
	for _, s := range subs {
		if sw := f.pending[s]; sw != nil {
			w.merge(sw)
			delete(f.pending, s)
		}
	}
	return w
}

// events turns a committed transaction's work into events.
func (f *Folder) events(s *Step, w *Work, tli uint32) []Event {
	base := Event{Time: s.Time, Xid: s.Xid, LSN: s.LSN, RestoreLSN: s.LSN, Timeline: tli, Database: s.Database}
	var out []Event
	created := map[wal.RelFileNode]bool{}
	for _, c := range w.Created {
		created[c] = true
	}
	var dropped []Relation
	for _, r := range s.DroppedRels {
		if created[r] {
			delete(created, r) // made and dropped in the same transaction: nothing lost
			continue
		}
		dropped = append(dropped, Relation{File: r, FileID: r.String()})
	}
	if len(dropped) > 0 {
		e := base
		e.Kind = f.dropKind(w, created)
		if e.Database == 0 {
			e.Database = dropped[0].File.Database
		}
		e.Relations = dropped
		e.TruncatedOIDs = w.TruncatedOIDs
		out = append(out, e)
	}
	for _, db := range w.DroppedDatabases {
		e := base
		e.Kind, e.Database = DatabaseDropped, db
		e.RestoreLSN = earliest(s.LSN, earliest(w.DropAt, w.InvalidAt))
		out = append(out, e)
	}
	rels := make([]wal.RelFileNode, 0, len(w.Rows))
	for rel, r := range w.Rows {
		if r.Deleted+r.Updated >= f.MinRows {
			rels = append(rels, rel)
		}
	}
	slices.SortFunc(rels, func(a, b wal.RelFileNode) int {
		return cmp.Compare(w.Rows[b].Deleted+w.Rows[b].Updated, w.Rows[a].Deleted+w.Rows[a].Updated)
	})
	for _, rel := range rels {
		e := base
		e.Kind, e.Database = RowsChanged, rel.Database
		e.Relations = []Relation{{File: rel, FileID: rel.String()}}
		e.Deleted, e.Updated = w.Rows[rel].Deleted, w.Rows[rel].Updated
		out = append(out, e)
	}
	return out
}

// dropKind tells a DROP from a TRUNCATE or a rewrite: a transaction that
// dropped files and created others replaced them. A TRUNCATE record says so
// outright (wal_level=logical); otherwise the new files tell: one that got no
// page while none got more than its first (an index's metapage) is a
// TRUNCATE, new files with pages are a rewrite.
func (f *Folder) dropKind(w *Work, created map[wal.RelFileNode]bool) Kind {
	if len(created) == 0 {
		return TableDropped
	}
	if len(w.TruncatedOIDs) > 0 {
		return TableTruncated
	}
	empty := false
	for c := range created {
		switch n := w.Blocks[c]; {
		case n == 0:
			empty = true
		case n > 1:
			return TableRewritten
		}
	}
	if empty {
		return TableTruncated
	}
	return TableRewritten
}
