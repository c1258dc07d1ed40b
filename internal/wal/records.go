package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Resource manager ids (rmgrlist.h) that pgb decodes.
const (
	RmgrXLOG = 0
	RmgrXact = 1
)

// XLOG resource manager record types (the high four bits of xl_info).
const (
	xlogCheckpointShutdown  = 0x00
	xlogCheckpointOnline    = 0x10
	xlogSwitch              = 0x40
	xlogRestorePoint        = 0x70
	xlogEndOfRecovery       = 0x90
	xlogOverwriteContrecord = 0xD0
)

// Transaction resource manager record types (xl_info & XLOG_XACT_OPMASK).
const (
	xactCommit         = 0x00
	xactAbort          = 0x20
	xactCommitPrepared = 0x30
	xactAbortPrepared  = 0x40
	xactOpMask         = 0x70
	xactHasInfo        = 0x80
)

// xl_xact_xinfo flags.
const (
	xinfoHasDBInfo       = 0x01
	xinfoHasSubxacts     = 0x02
	xinfoHasRelFiles     = 0x04
	xinfoHasInvals       = 0x08
	xinfoHasTwoPhase     = 0x10
	xinfoHasOrigin       = 0x20
	xinfoHasGID          = 0x80
	xinfoHasDroppedStats = 0x100
)

// Block reference ids and flags (xlogrecord.h).
const (
	maxBlockID        = 32
	blockIDTopXid     = 252
	blockIDOrigin     = 253
	blockIDDataLong   = 254
	blockIDDataShort  = 255
	bkpBlockHasImage  = 0x10
	bkpBlockHasData   = 0x20
	bkpBlockSameRel   = 0x80
	bkpImageHasHole   = 0x01
	bkpImageCompr14   = 0x02 // BKPIMAGE_IS_COMPRESSED, PostgreSQL 12–14
	bkpImageCompr15   = 0x04 | 0x08 | 0x10
	sizeRelFileNode   = 12
	sizeSharedInval   = 16
	sizeStatsItem     = 12 // xl_xact_stats_item, PostgreSQL 15–17
	restorePointNameN = 64 // MAXFNAMELEN
)

// Record is one decoded WAL record. MainData and Blocks alias the reader's
// buffers and are valid only until the next call to Next (copy them to keep
// them); the typed payloads (Xact, RestorePoint, Checkpoint, EndOfRecovery)
// are the caller's.
type Record struct {
	LSN    LSN // where the record starts
	EndLSN LSN // the byte after it (a segment switch extends to the segment's end)
	Prev   LSN // xl_prev
	TotLen uint32
	Xid    uint32 // xl_xid
	Info   uint8  // xl_info
	RmgrID uint8  // xl_rmid
	// Origin is the replication origin (0 when none); TopXid the top-level
	// transaction of a subtransaction's record (PostgreSQL 14+, 0 when none).
	Origin   uint16
	TopXid   uint32
	Blocks   []BlockRef
	MainData []byte

	Xact          *Xact          // commit or abort, also of a prepared transaction
	RestorePoint  *RestorePoint  // pg_create_restore_point
	Checkpoint    *Checkpoint    // shutdown or online checkpoint
	EndOfRecovery *EndOfRecovery // the first record of a new timeline after promotion
}

// RelFileNode names a relation's files: tablespace, database and relfilenode
// (RelFileLocator since PostgreSQL 16, same layout).
type RelFileNode struct {
	Tablespace, Database, Relation uint32
}

func (n RelFileNode) String() string {
	return fmt.Sprintf("%d/%d/%d", n.Tablespace, n.Database, n.Relation)
}

// BlockRef is one block a record touches.
type BlockRef struct {
	ID       uint8
	Rel      RelFileNode
	Fork     uint8
	Block    uint32
	HasImage bool
	HasData  bool
}

// XactKind tells commit from abort.
type XactKind int

// The transaction end records.
const (
	Commit XactKind = iota + 1
	Abort
	CommitPrepared
	AbortPrepared
)

func (k XactKind) String() string {
	switch k {
	case Commit:
		return "COMMIT"
	case Abort:
		return "ABORT"
	case CommitPrepared:
		return "COMMIT_PREPARED"
	case AbortPrepared:
		return "ABORT_PREPARED"
	}
	return "unknown"
}

// Xact is a decoded xl_xact_commit or xl_xact_abort.
type Xact struct {
	Kind XactKind
	// Xid is the transaction that ended: the prepared transaction's for
	// COMMIT/ABORT PREPARED, otherwise the record's xl_xid.
	Xid  uint32
	Time time.Time // xact_time, UTC
	// Database and Tablespace are the transaction's database (0 when the
	// record carries no dbinfo).
	Database, Tablespace uint32
	Subxacts             []uint32
	// DroppedRels are the relation files the transaction dropped (DROP TABLE,
	// TRUNCATE's old files, DROP DATABASE's…) on commit, or created and so
	// dropped on abort.
	DroppedRels  []RelFileNode
	DroppedStats int // number of dropped statistics entries (PostgreSQL 15+)
	Invals       int // number of invalidation messages (commit only)
	TwoPhaseXid  uint32
	GID          string // the prepared transaction's name, when logged
	HasOrigin    bool
	OriginLSN    LSN
	OriginTime   time.Time
}

// RestorePoint is a decoded xl_restore_point.
type RestorePoint struct {
	Name string
	Time time.Time
}

// Checkpoint is what pgb needs of a decoded CheckPoint.
type Checkpoint struct {
	Shutdown        bool
	Redo            LSN
	Timeline        uint32
	PrevTimeline    uint32
	FullPageWrites  bool
	NextXid         uint64 // full transaction id: epoch << 32 | xid
	NextOid         uint32
	OldestXid       uint32
	OldestActiveXid uint32
	Time            time.Time
}

// EndOfRecovery is a decoded xl_end_of_recovery.
type EndOfRecovery struct {
	Time         time.Time
	Timeline     uint32
	PrevTimeline uint32
}

// pgEpoch is 2000-01-01 00:00:00 UTC, where TimestampTz counts from.
const pgEpochUnix = 946684800

// pgTime converts a TimestampTz (microseconds since 2000-01-01 UTC).
func pgTime(us int64) time.Time {
	return time.Unix(pgEpochUnix+us/1e6, (us%1e6)*1e3).UTC()
}

var errShort = errors.New("record body is shorter than its headers say")

// decodeRecord fills rec's block references, main data and typed payload from
// the whole record b, as DecodeXLogRecord does.
func decodeRecord(rec *Record, b []byte, major int) error {
	le := binary.LittleEndian
	p := b[recordHeaderSize:]
	var dataTotal, mainLen uint64
	lastID := -1
	var rel RelFileNode
	haveRel := false
	for len(p) > 0 && uint64(len(p)) > dataTotal {
		id := p[0]
		p = p[1:]
		switch {
		case id == blockIDDataShort:
			if len(p) < 1 {
				return errShort
			}
			mainLen = uint64(p[0])
			p = p[1:]
		case id == blockIDDataLong:
			if len(p) < 4 {
				return errShort
			}
			mainLen = uint64(le.Uint32(p))
			p = p[4:]
		case id == blockIDOrigin:
			if len(p) < 2 {
				return errShort
			}
			rec.Origin = le.Uint16(p)
			p = p[2:]
			continue
		case id == blockIDTopXid:
			if len(p) < 4 {
				return errShort
			}
			rec.TopXid = le.Uint32(p)
			p = p[4:]
			continue
		case id <= maxBlockID:
			if int(id) <= lastID {
				return fmt.Errorf("out-of-order block id %d", id)
			}
			lastID = int(id)
			blk, n, err := decodeBlockHeader(p, id, major, &rel, &haveRel)
			if err != nil {
				return err
			}
			p = p[n.hdr:]
			dataTotal += n.data
			rec.Blocks = append(rec.Blocks, blk)
			continue
		default:
			return fmt.Errorf("invalid block id %d", id)
		}
		// Main data comes last among the headers.
		dataTotal += mainLen
		break
	}
	if uint64(len(p)) != dataTotal {
		return fmt.Errorf("record has %d bytes of block and main data, its headers say %d", len(p), dataTotal)
	}
	rec.MainData = p[len(p)-int(mainLen):]
	return decodePayload(rec)
}

type blockSizes struct{ hdr, data uint64 }

func decodeBlockHeader(p []byte, id uint8, major int, rel *RelFileNode, haveRel *bool) (BlockRef, blockSizes, error) {
	le := binary.LittleEndian
	var n blockSizes
	if len(p) < 3 {
		return BlockRef{}, n, errShort
	}
	flags := p[0]
	dataLen := uint64(le.Uint16(p[1:]))
	n.hdr = 3
	blk := BlockRef{ID: id, Fork: flags & 0x0F, HasImage: flags&bkpBlockHasImage != 0, HasData: flags&bkpBlockHasData != 0}
	if blk.HasData != (dataLen != 0) {
		return blk, n, fmt.Errorf("block %d: data flag %v with data length %d", id, blk.HasData, dataLen)
	}
	n.data = dataLen
	if blk.HasImage {
		if uint64(len(p)) < n.hdr+5 {
			return blk, n, errShort
		}
		imgLen := uint64(le.Uint16(p[n.hdr:]))
		imgInfo := p[n.hdr+4]
		n.hdr += 5
		compressed := imgInfo&bkpImageCompr15 != 0
		if major != 0 && major < 15 {
			compressed = imgInfo&bkpImageCompr14 != 0
		}
		if compressed && imgInfo&bkpImageHasHole != 0 {
			n.hdr += 2 // hole length
		}
		if imgLen == 0 {
			return blk, n, fmt.Errorf("block %d: empty full-page image", id)
		}
		n.data += imgLen
	}
	if flags&bkpBlockSameRel == 0 {
		if uint64(len(p)) < n.hdr+sizeRelFileNode {
			return blk, n, errShort
		}
		q := p[n.hdr:]
		*rel = RelFileNode{le.Uint32(q), le.Uint32(q[4:]), le.Uint32(q[8:])}
		*haveRel = true
		n.hdr += sizeRelFileNode
	} else if !*haveRel {
		return blk, n, fmt.Errorf("block %d: same relation as a previous block, but there is none", id)
	}
	if uint64(len(p)) < n.hdr+4 {
		return blk, n, errShort
	}
	blk.Rel = *rel
	blk.Block = le.Uint32(p[n.hdr:])
	n.hdr += 4
	return blk, n, nil
}

// decodePayload decodes the main data of the record kinds pgb uses.
func decodePayload(rec *Record) error {
	d := rec.MainData
	le := binary.LittleEndian
	switch rec.RmgrID {
	case RmgrXact:
		switch rec.Info & xactOpMask {
		case xactCommit, xactAbort, xactCommitPrepared, xactAbortPrepared:
			x, err := DecodeXact(rec.Info, rec.Xid, d)
			if err != nil {
				return err
			}
			rec.Xact = x
		}
	case RmgrXLOG:
		switch rec.Info & 0xF0 {
		case xlogCheckpointShutdown, xlogCheckpointOnline:
			if len(d) < 88 {
				return fmt.Errorf("checkpoint record has %d bytes of data, want at least 88", len(d))
			}
			rec.Checkpoint = &Checkpoint{
				Shutdown:        rec.Info&0xF0 == xlogCheckpointShutdown,
				Redo:            LSN(le.Uint64(d)),
				Timeline:        le.Uint32(d[8:]),
				PrevTimeline:    le.Uint32(d[12:]),
				FullPageWrites:  d[16] != 0,
				NextXid:         le.Uint64(d[24:]),
				NextOid:         le.Uint32(d[32:]),
				OldestXid:       le.Uint32(d[44:]),
				Time:            time.Unix(int64(le.Uint64(d[64:])), 0).UTC(),
				OldestActiveXid: le.Uint32(d[80:]),
			}
		case xlogRestorePoint:
			if len(d) < 8+restorePointNameN {
				return fmt.Errorf("restore point record has %d bytes of data, want %d", len(d), 8+restorePointNameN)
			}
			name := d[8 : 8+restorePointNameN]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			rec.RestorePoint = &RestorePoint{Name: string(name), Time: pgTime(int64(le.Uint64(d)))}
		case xlogEndOfRecovery:
			if len(d) < 16 {
				return fmt.Errorf("end-of-recovery record has %d bytes of data, want at least 16", len(d))
			}
			rec.EndOfRecovery = &EndOfRecovery{Time: pgTime(int64(le.Uint64(d))), Timeline: le.Uint32(d[8:]), PrevTimeline: le.Uint32(d[12:])}
		}
	}
	return nil
}

// DecodeXact decodes the main data of a commit or abort record (of a plain or a
// prepared transaction) as PostgreSQL 12–17 write it, given the record's
// xl_info and xl_xid. It never trusts a count: every array is checked against
// the bytes present before it is allocated.
func DecodeXact(info uint8, xid uint32, d []byte) (*Xact, error) {
	x := &Xact{Xid: xid}
	switch info & xactOpMask {
	case xactCommit:
		x.Kind = Commit
	case xactAbort:
		x.Kind = Abort
	case xactCommitPrepared:
		x.Kind = CommitPrepared
	case xactAbortPrepared:
		x.Kind = AbortPrepared
	default:
		return nil, fmt.Errorf("transaction record type %#x is neither commit nor abort", info&xactOpMask)
	}
	c := cursor{b: d}
	x.Time = pgTime(int64(c.u64()))
	var xinfo uint32
	if info&xactHasInfo != 0 {
		xinfo = c.u32()
	}
	if xinfo&xinfoHasDBInfo != 0 {
		x.Database, x.Tablespace = c.u32(), c.u32()
	}
	if xinfo&xinfoHasSubxacts != 0 {
		n := c.count(4)
		x.Subxacts = make([]uint32, n)
		for i := range x.Subxacts {
			x.Subxacts[i] = c.u32()
		}
	}
	if xinfo&xinfoHasRelFiles != 0 {
		n := c.count(sizeRelFileNode)
		x.DroppedRels = make([]RelFileNode, n)
		for i := range x.DroppedRels {
			x.DroppedRels[i] = RelFileNode{c.u32(), c.u32(), c.u32()}
		}
	}
	if xinfo&xinfoHasDroppedStats != 0 {
		x.DroppedStats = c.count(sizeStatsItem)
		c.skip(x.DroppedStats * sizeStatsItem)
	}
	if xinfo&xinfoHasInvals != 0 {
		if x.Kind != Commit && x.Kind != CommitPrepared {
			return nil, fmt.Errorf("%s record carries invalidation messages", x.Kind)
		}
		x.Invals = c.count(sizeSharedInval)
		c.skip(x.Invals * sizeSharedInval)
	}
	if xinfo&xinfoHasTwoPhase != 0 {
		x.TwoPhaseXid = c.u32()
		if xinfo&xinfoHasGID != 0 {
			x.GID = c.cstring()
		}
	}
	if xinfo&xinfoHasOrigin != 0 {
		x.HasOrigin = true
		x.OriginLSN = LSN(c.u64())
		x.OriginTime = pgTime(int64(c.u64()))
	}
	if c.err != nil {
		return nil, fmt.Errorf("%s record: %w", x.Kind, c.err)
	}
	if x.Kind == CommitPrepared || x.Kind == AbortPrepared {
		if xinfo&xinfoHasTwoPhase == 0 {
			return nil, fmt.Errorf("%s record without the prepared transaction's xid", x.Kind)
		}
		x.Xid = x.TwoPhaseXid
	}
	return x, nil
}

// cursor reads little-endian fields from a byte slice, remembering the first
// overrun instead of panicking.
type cursor struct {
	b   []byte
	err error
}

// take returns the next n (at most 8) bytes, or zeros after an overrun.
func (c *cursor) take(n int) []byte {
	if c.err == nil && n > len(c.b) {
		c.err = errShort
	}
	if c.err != nil {
		return make([]byte, 8)
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) u32() uint32 { return binary.LittleEndian.Uint32(c.take(4)) }
func (c *cursor) u64() uint64 { return binary.LittleEndian.Uint64(c.take(8)) }

func (c *cursor) skip(n int) {
	if c.err == nil && (n < 0 || n > len(c.b)) {
		c.err = errShort
	}
	if c.err == nil {
		c.b = c.b[n:]
	}
}

// count reads an int count of items of size bytes each, refusing one the
// remaining bytes cannot hold (so a forged count allocates nothing).
func (c *cursor) count(size int) int {
	n := int32(c.u32())
	if c.err == nil && (n < 0 || int64(n)*int64(size) > int64(len(c.b))) {
		c.err = fmt.Errorf("count %d of %d-byte items does not fit in the %d bytes left", n, size, len(c.b))
	}
	if c.err != nil {
		return 0
	}
	return int(n)
}

func (c *cursor) cstring() string {
	if c.err != nil {
		return ""
	}
	i := bytes.IndexByte(c.b, 0)
	if i < 0 {
		c.err = errors.New("unterminated string")
		return ""
	}
	s := string(c.b[:i])
	c.b = c.b[i+1:]
	return s
}
