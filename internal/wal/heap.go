package wal

import (
	"encoding/binary"
	"fmt"
)

// More resource manager ids (rmgrlist.h): the ones whose records say that data
// goes away.
const (
	RmgrSmgr  = 2
	RmgrDbase = 4
	RmgrHeap2 = 9
	RmgrHeap  = 10
)

// Heap resource manager record types (heapam_xlog.h, xl_info & XLOG_HEAP_OPMASK).
const (
	heapDelete    = 0x10
	heapUpdate    = 0x20
	heapTruncate  = 0x30
	heapHotUpdate = 0x40
	heapInplace   = 0x70
	heapOpMask    = 0x70

	// xl_heap_delete.flags: a speculative insertion taken back (INSERT … ON
	// CONFLICT), not a row deleted; a row moved to another partition by an UPDATE.
	heapDeleteIsSuper     = 0x08
	heapDeletePartitionMv = 0x10

	sizeHeapDelete   = 8  // SizeOfHeapDelete
	sizeHeapUpdate   = 14 // SizeOfHeapUpdate
	sizeHeapTruncate = 12 // offsetof(xl_heap_truncate, relids)
	// A TRUNCATE names at most this many relations in one record: PostgreSQL
	// logs one record per statement, and a statement that truncates more
	// relations than this is not credible.
	maxTruncateRels = 1 << 20
)

// Storage manager record types (storage_xlog.h).
const (
	smgrCreate     = 0x10
	sizeSmgrCreate = 16 // xl_smgr_create: RelFileNode and ForkNumber
)

// Database resource manager: XLOG_DBASE_DROP is 0x10 up to PostgreSQL 14 and
// 0x20 from 15 (dbcommands_xlog.h), when 0x10 became CREATE_WAL_LOG.
const (
	dbaseCopy   = 0x00 // XLOG_DBASE_CREATE_FILE_COPY (XLOG_DBASE_CREATE before 15)
	dbaseDrop14 = 0x10
	dbaseDrop15 = 0x20
	// sizeDbaseCopy is xl_dbase_create_file_copy_rec: database, tablespace, and the
	// template's database and tablespace.
	sizeDbaseCopy = 16
)

// ChangeKind says what a record does that can lose data.
type ChangeKind int

// The kinds of change DecodeChange reports.
const (
	NoChange      ChangeKind = iota // not a record DecodeChange knows
	RowDelete                       // heap DELETE of one row
	RowUpdate                       // heap UPDATE or HOT_UPDATE of one row (or a row moved to another partition)
	Truncate                        // heap TRUNCATE (logged with wal_level=logical)
	FileCreate                      // smgr CREATE: a new relation file (new table, TRUNCATE, VACUUM FULL, CLUSTER, rewrite)
	DatabaseDrop                    // dbase DROP
	InplaceUpdate                   // heap INPLACE: a row overwritten outside any transaction (VACUUM, DROP DATABASE marking the database invalid)
	// DatabaseCopy is dbase CREATE by file copy: every CREATE DATABASE before 15,
	// STRATEGY FILE_COPY and ALTER DATABASE … SET TABLESPACE since. The files are copied
	// outside WAL, their pages keeping the template's LSNs (an incremental backup must
	// store them whole). Database and Tablespaces[0] are the copy's.
	DatabaseCopy
)

func (k ChangeKind) String() string {
	switch k {
	case RowDelete:
		return "row delete"
	case RowUpdate:
		return "row update"
	case Truncate:
		return "truncate"
	case FileCreate:
		return "file create"
	case DatabaseDrop:
		return "database drop"
	case InplaceUpdate:
		return "inplace update"
	case DatabaseCopy:
		return "database copy"
	}
	return "none"
}

// Change is what DecodeChange found in one record.
type Change struct {
	Kind ChangeKind
	// Rel is the relation file of a row change (block reference 0) or of a
	// created file; Fork the created file's fork.
	Rel  RelFileNode
	Fork uint8
	// Database is the database of a TRUNCATE or a dropped database.
	Database uint32
	// RelOIDs are the relations (pg_class oids, not relfilenodes) a TRUNCATE
	// empties.
	RelOIDs []uint32
	// Tablespaces are those a dropped database had files in.
	Tablespaces []uint32
	// Block and Offset are where the row of a DELETE or an INPLACE update is
	// (block reference 0 and the line pointer).
	Block  uint32
	Offset uint16
}

// DecodeChange decodes the records that make data go away: heap DELETE, UPDATE
// and HOT_UPDATE (one row each), heap TRUNCATE, smgr CREATE and dbase DROP, dbase
// CREATE by file copy (which incremental backups must know of), and
// heap INPLACE (DROP DATABASE marks the database invalid with one), as
// PostgreSQL 12–17 write them; major is the reader's PostgreSQLMajor (0 when
// unknown: taken as 15 or later). Any other record is NoChange. A record of
// one of those kinds whose body is too short or inconsistent is an error; every
// count is checked against the bytes present before anything is allocated.
func DecodeChange(rec *Record, major int) (Change, error) {
	d := rec.MainData
	le := binary.LittleEndian
	op := rec.Info & 0xF0
	switch rec.RmgrID {
	case RmgrHeap:
		switch op & heapOpMask {
		case heapDelete:
			if len(d) < sizeHeapDelete {
				return Change{}, fmt.Errorf("heap DELETE has %d bytes of data, want %d", len(d), sizeHeapDelete)
			}
			flags := d[7]
			if flags&heapDeleteIsSuper != 0 {
				return Change{}, nil
			}
			kind := RowDelete
			if flags&heapDeletePartitionMv != 0 {
				kind = RowUpdate
			}
			c, err := rowChange(rec, kind, "DELETE")
			if err != nil {
				return Change{}, err
			}
			c.Offset = le.Uint16(d[4:]) // xl_heap_delete.offnum
			return c, nil
		case heapUpdate, heapHotUpdate:
			if len(d) < sizeHeapUpdate {
				return Change{}, fmt.Errorf("heap UPDATE has %d bytes of data, want %d", len(d), sizeHeapUpdate)
			}
			return rowChange(rec, RowUpdate, "UPDATE")
		case heapTruncate:
			return decodeTruncate(d)
		case heapInplace:
			// xl_heap_inplace begins with offnum on every version (17 appends
			// invalidation messages).
			if len(d) < 2 {
				return Change{}, fmt.Errorf("heap INPLACE has %d bytes of data, want at least 2", len(d))
			}
			c, err := rowChange(rec, InplaceUpdate, "INPLACE")
			if err != nil {
				return Change{}, err
			}
			c.Offset = le.Uint16(d)
			return c, nil
		}
	case RmgrSmgr:
		if op != smgrCreate {
			return Change{}, nil
		}
		if len(d) < sizeSmgrCreate {
			return Change{}, fmt.Errorf("smgr CREATE has %d bytes of data, want %d", len(d), sizeSmgrCreate)
		}
		fork := le.Uint32(d[12:])
		if fork > 3 {
			return Change{}, fmt.Errorf("smgr CREATE of fork %d (PostgreSQL has forks 0 to 3)", fork)
		}
		return Change{Kind: FileCreate, Rel: RelFileNode{le.Uint32(d), le.Uint32(d[4:]), le.Uint32(d[8:])}, Fork: uint8(fork)}, nil
	case RmgrDbase:
		if op == dbaseCopy {
			if len(d) < sizeDbaseCopy {
				return Change{}, fmt.Errorf("dbase CREATE (file copy) has %d bytes of data, want %d", len(d), sizeDbaseCopy)
			}
			return Change{Kind: DatabaseCopy, Database: le.Uint32(d), Tablespaces: []uint32{le.Uint32(d[4:])}}, nil
		}
		drop := uint8(dbaseDrop15)
		if major != 0 && major < 15 {
			drop = dbaseDrop14
		}
		if op != drop {
			return Change{}, nil
		}
		return decodeDatabaseDrop(d, major)
	}
	return Change{}, nil
}

func rowChange(rec *Record, kind ChangeKind, what string) (Change, error) {
	if len(rec.Blocks) == 0 || rec.Blocks[0].ID != 0 {
		return Change{}, fmt.Errorf("heap %s without block reference 0", what)
	}
	return Change{Kind: kind, Rel: rec.Blocks[0].Rel, Block: rec.Blocks[0].Block}, nil
}

func decodeTruncate(d []byte) (Change, error) {
	le := binary.LittleEndian
	if len(d) < sizeHeapTruncate {
		return Change{}, fmt.Errorf("heap TRUNCATE has %d bytes of data, want at least %d", len(d), sizeHeapTruncate)
	}
	n := le.Uint32(d[4:])
	if n > maxTruncateRels || uint64(n)*4 > uint64(len(d)-sizeHeapTruncate) {
		return Change{}, fmt.Errorf("heap TRUNCATE names %d relations in %d bytes", n, len(d)-sizeHeapTruncate)
	}
	c := Change{Kind: Truncate, Database: le.Uint32(d), RelOIDs: make([]uint32, n)}
	for i := range c.RelOIDs {
		c.RelOIDs[i] = le.Uint32(d[sizeHeapTruncate+4*i:])
	}
	return c, nil
}

// decodeDatabaseDrop decodes xl_dbase_drop_rec: the database and, from
// PostgreSQL 13, a count of tablespaces and their oids; PostgreSQL 12 logs one
// record per tablespace with a single oid.
func decodeDatabaseDrop(d []byte, major int) (Change, error) {
	le := binary.LittleEndian
	if len(d) < 8 {
		return Change{}, fmt.Errorf("dbase DROP has %d bytes of data, want at least 8", len(d))
	}
	c := Change{Kind: DatabaseDrop, Database: le.Uint32(d)}
	if major == 12 {
		c.Tablespaces = []uint32{le.Uint32(d[4:])}
		return c, nil
	}
	n := int32(le.Uint32(d[4:]))
	if n < 0 || int64(n)*4 > int64(len(d)-8) {
		return Change{}, fmt.Errorf("dbase DROP names %d tablespaces in %d bytes", n, len(d)-8)
	}
	c.Tablespaces = make([]uint32, n)
	for i := range c.Tablespaces {
		c.Tablespaces[i] = le.Uint32(d[8+4*i:])
	}
	return c, nil
}
