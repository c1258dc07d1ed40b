// Package events finds the destructive events in archived WAL — tables dropped,
// truncated or rewritten, databases dropped, transactions that deleted or updated
// many rows of one relation — with the commit time, transaction id, LSN and
// timeline of each, so a user can restore to just before one.
//
// The work is split so that the expensive part can be cached per segment:
// Collector turns the records that start in one segment into Facts (per
// transaction: rows deleted and updated per relation file, files created, blocks
// written, databases dropped; and the commits, aborts and checkpoints in order),
// a pure function of the WAL bytes. Folder then folds the facts of consecutive
// segments into events, carrying the work of transactions still open. Names
// (Namer) come last, from the relation maps backups recorded.
package events

import (
	"slices"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

// Rows counts the rows one transaction deleted and updated in one relation file.
type Rows struct {
	Deleted, Updated int64
}

// Work is what one transaction (or subtransaction) did in a stretch of WAL.
type Work struct {
	Rows map[wal.RelFileNode]*Rows
	// Created are the main-fork relation files it created (smgr CREATE).
	Created []wal.RelFileNode
	// Blocks is, for each relation file it wrote a block of, one more than the
	// highest block written: a created file with no entry got no page.
	Blocks map[wal.RelFileNode]uint32
	// TruncatedOIDs are the relations a heap TRUNCATE record names (logged
	// with wal_level=logical), in database TruncateDB.
	TruncatedOIDs []uint32
	TruncateDB    uint32
	// DroppedDatabases are the databases it dropped; DropAt is the LSN of its
	// first dbase DROP record (the database's files go when it is replayed).
	DroppedDatabases []uint32
	DropAt           wal.LSN
	// InvalidAt is the LSN of the in-place update that made a row it deleted
	// from a shared catalog unusable before the delete: DROP DATABASE marks
	// its pg_database row invalid so (datconnlimit -2, PostgreSQL 12.16, 13.12,
	// 14.9, 15.4 and later), outside the transaction and without its xid.
	// Recovery that replays it restores an unusable database. 0: none seen.
	InvalidAt wal.LSN
	// sharedDeletes are the shared-catalog rows it deleted with no in-place
	// update of the row before the delete in the same segment: Folder looks
	// for one in the segments before.
	sharedDeletes []Row
}

// Row is where a heap row is: its relation file, block and line pointer.
type Row struct {
	Rel    wal.RelFileNode
	Block  uint32
	Offset uint16
}

// globalTablespace is pg_global, the tablespace of the shared catalogs.
const globalTablespace = 1664

func (r Row) shared() bool { return r.Rel.Tablespace == globalTablespace && r.Rel.Database == 0 }

// earliest is the earlier of two LSNs, 0 meaning none.
func earliest(a, b wal.LSN) wal.LSN {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// StepKind tells the steps of Facts apart.
type StepKind int

// The steps.
const (
	StepEnd   StepKind = iota + 1 // a transaction committed or aborted
	StepPrune                     // every transaction below Oldest has ended
)

// Step is a commit or abort, or a checkpoint that tells which transactions can
// no longer be open, in WAL order.
type Step struct {
	Kind StepKind
	LSN  wal.LSN
	// For StepEnd: the transaction, whether it committed, its subtransactions,
	// the files it dropped, its database and commit time.
	Xid         uint32
	Committed   bool
	Subxacts    []uint32
	DroppedRels []wal.RelFileNode
	Database    uint32
	Time        time.Time
	// For StepPrune: the oldest transaction that may still be open.
	Oldest uint32
}

// Facts are what the records of one stretch of WAL (one segment: the records
// that start in it) say about destructive work. They depend on those bytes
// alone, so they can be computed once and kept.
type Facts struct {
	Work  map[uint32]*Work
	Steps []Step
	// Last is the LSN of the last record seen; FirstTime and LastTime the
	// oldest and the newest commit or checkpoint time (zero when none). Commit
	// times are taken before the commit record is inserted: they are not
	// quite in WAL order.
	Last      wal.LSN
	FirstTime time.Time
	LastTime  time.Time
	// Inplace is, for each shared-catalog row updated in place, the LSN of
	// the last such update.
	Inplace map[Row]wal.LSN
}

func (f *Facts) seen(t time.Time) {
	if f.FirstTime.IsZero() || t.Before(f.FirstTime) {
		f.FirstTime = t
	}
	if t.After(f.LastTime) {
		f.LastTime = t
	}
}

// PastUntil reports whether every commit of the WAL after these facts is
// after until: every time in them is. A segment whose last commit is after
// until may still be followed by one committed before it (commit times are
// not in WAL order), and a segment without a time says nothing.
func (f *Facts) PastUntil(until time.Time) bool {
	return !until.IsZero() && !f.FirstTime.IsZero() && f.FirstTime.After(until)
}

// Collector builds Facts from records.
type Collector struct {
	major int
	f     Facts
}

// NewCollector starts the facts of a stretch of WAL written by PostgreSQL
// major (wal.Reader.PostgreSQLMajor; 0 when unknown).
func NewCollector(major int) *Collector {
	return &Collector{major: major, f: Facts{Work: map[uint32]*Work{}}}
}

// Facts returns what was collected and starts anew.
func (c *Collector) Facts() Facts {
	f := c.f
	c.f = Facts{Work: map[uint32]*Work{}}
	return f
}

func (c *Collector) work(xid uint32) *Work {
	w := c.f.Work[xid]
	if w == nil {
		w = &Work{}
		c.f.Work[xid] = w
	}
	return w
}

// Add takes one record. A record of a kind wal.DecodeChange knows whose body
// does not decode is an error (the WAL is damaged); the collector stays usable.
func (c *Collector) Add(rec *wal.Record) error {
	c.f.Last = rec.LSN
	switch {
	case rec.Xact != nil:
		x := rec.Xact
		c.f.Steps = append(c.f.Steps, Step{Kind: StepEnd, LSN: rec.LSN, Xid: x.Xid,
			Committed: x.Kind == wal.Commit || x.Kind == wal.CommitPrepared, Subxacts: x.Subxacts,
			DroppedRels: x.DroppedRels, Database: x.Database, Time: x.Time})
		c.f.seen(x.Time)
		return nil
	case rec.Checkpoint != nil:
		cp := rec.Checkpoint
		c.f.seen(cp.Time)
		// An online checkpoint says which transactions may still be open
		// (oldestActiveXid, prepared ones included). A shutdown checkpoint
		// says nothing (0): prepared transactions survive it, and the next
		// online checkpoint forgets those a crash or shutdown ended.
		oldest := cp.OldestActiveXid
		if oldest != 0 {
			c.f.Steps = append(c.f.Steps, Step{Kind: StepPrune, LSN: rec.LSN, Oldest: oldest})
		}
		return nil
	}
	if rec.RmgrID == wal.RmgrHeap && rec.Info&0x70 == 0x70 { // INPLACE: no xid
		ch, err := wal.DecodeChange(rec, c.major)
		if err != nil {
			return err
		}
		if row := (Row{ch.Rel, ch.Block, ch.Offset}); ch.Kind == wal.InplaceUpdate && row.shared() {
			if c.f.Inplace == nil {
				c.f.Inplace = map[Row]wal.LSN{}
			}
			c.f.Inplace[row] = rec.LSN
		}
		return nil
	}
	if rec.Xid == 0 {
		return nil
	}
	ch, err := wal.DecodeChange(rec, c.major)
	if err != nil {
		return err
	}
	if (ch.Kind == wal.NoChange || ch.Kind == wal.DatabaseCopy) && len(rec.Blocks) == 0 {
		return nil // a database copy loses nothing: events does not report it
	}
	w := c.work(rec.Xid)
	for _, b := range rec.Blocks {
		if w.Blocks == nil {
			w.Blocks = map[wal.RelFileNode]uint32{}
		}
		if b.Fork == 0 && b.Block+1 > w.Blocks[b.Rel] && b.Block != ^uint32(0) {
			w.Blocks[b.Rel] = b.Block + 1
		}
	}
	switch ch.Kind {
	case wal.RowDelete, wal.RowUpdate:
		if w.Rows == nil {
			w.Rows = map[wal.RelFileNode]*Rows{}
		}
		r := w.Rows[ch.Rel]
		if r == nil {
			r = &Rows{}
			w.Rows[ch.Rel] = r
		}
		if ch.Kind == wal.RowDelete {
			r.Deleted++
			if row := (Row{ch.Rel, ch.Block, ch.Offset}); row.shared() {
				if at, ok := c.f.Inplace[row]; ok {
					w.InvalidAt = earliest(w.InvalidAt, at)
				} else {
					w.sharedDeletes = append(w.sharedDeletes, row)
				}
			}
		} else {
			r.Updated++
		}
	case wal.FileCreate:
		if ch.Fork == 0 {
			w.Created = append(w.Created, ch.Rel)
		}
	case wal.Truncate:
		w.TruncatedOIDs = append(w.TruncatedOIDs, ch.RelOIDs...)
		w.TruncateDB = ch.Database
	case wal.DatabaseDrop:
		// PostgreSQL 12 logs one DROP per tablespace of the database.
		if !slices.Contains(w.DroppedDatabases, ch.Database) {
			w.DroppedDatabases = append(w.DroppedDatabases, ch.Database)
		}
		w.DropAt = earliest(w.DropAt, rec.LSN)
	}
	return nil
}

// merge adds o's work to w.
func (w *Work) merge(o *Work) {
	for rel, r := range o.Rows {
		if w.Rows == nil {
			w.Rows = map[wal.RelFileNode]*Rows{}
		}
		if mine := w.Rows[rel]; mine != nil {
			mine.Deleted += r.Deleted
			mine.Updated += r.Updated
		} else {
			c := *r
			w.Rows[rel] = &c
		}
	}
	for rel, n := range o.Blocks {
		if w.Blocks == nil {
			w.Blocks = map[wal.RelFileNode]uint32{}
		}
		w.Blocks[rel] = max(w.Blocks[rel], n)
	}
	w.Created = append(w.Created, o.Created...)
	w.TruncatedOIDs = append(w.TruncatedOIDs, o.TruncatedOIDs...)
	if o.TruncateDB != 0 {
		w.TruncateDB = o.TruncateDB
	}
	for _, db := range o.DroppedDatabases {
		if !slices.Contains(w.DroppedDatabases, db) {
			w.DroppedDatabases = append(w.DroppedDatabases, db)
		}
	}
	w.DropAt = earliest(w.DropAt, o.DropAt)
	w.InvalidAt = earliest(w.InvalidAt, o.InvalidAt)
	w.sharedDeletes = append(w.sharedDeletes, o.sharedDeletes...)
}
