package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pgb-project/pgb/internal/crc32c"
)

// The reader's sentinels. Every error from Reader.Next wraps exactly one of them
// (or io.EOF at a clean end) and names the LSN where the problem is.
var (
	// ErrCorruptRecord means the bytes are not WAL as PostgreSQL writes it: a bad
	// page header, a record length or CRC that does not hold, a broken xl_prev link,
	// a malformed record body.
	ErrCorruptRecord = errors.New("corrupt WAL")
	// ErrTruncated means the input ended inside a page or inside a record: the
	// segment is cut short, or the last record continues into a segment that
	// was not given.
	ErrTruncated = errors.New("WAL ends inside a record")
	// ErrEndOfWAL means a record was expected and zeros were found instead: the
	// rest of the input was never written (the tail of a .partial segment or of
	// the segment PostgreSQL was writing). Records before it are sound.
	ErrEndOfWAL = errors.New("end of written WAL")
)

const (
	recordHeaderSize = 24         // SizeOfXLogRecord
	shortHeaderSize  = 24         // SizeOfXLogShortPHD (MAXALIGNed)
	maxAlign         = 8          // MAXIMUM_ALIGNOF on every platform PostgreSQL ships for
	maxRecordSize    = 0x3fffffff // MaxAllocSize: PostgreSQL never writes a larger record
	defaultPageSize  = 8192       // XLOG_BLCKSZ

	xlpFirstIsContRecord = 0x0001
	// xlpFirstIsOverwriteContRecord marks the first page written after recovery found
	// a record cut short by a crash (PostgreSQL 14+, and 10–13 from their August 2021
	// minor releases): the record that was being continued is abandoned, and the page
	// begins with an XLOG_OVERWRITE_CONTRECORD record naming it.
	xlpFirstIsOverwriteContRecord = 0x0008
	xlpAllFlags                   = 0x000F // XLP_FIRST_IS_CONTRECORD … XLP_FIRST_IS_OVERWRITE_CONTRECORD
)

// Reader decodes the records of consecutive WAL segments delivered by an
// io.Reader. It is pure: it reads only from that reader and keeps no state
// beyond one page and the record being assembled, whose buffer grows as its
// bytes arrive (a forged xl_tot_len cannot make it allocate ahead of the
// data). It is not safe for concurrent use.
type Reader struct {
	r        io.Reader
	segSize  uint64
	pageSize uint64

	page     []byte // the current page
	pageLSN  LSN    // LSN of page[0]; valid when loaded
	loaded   bool   // page holds the page at pageLSN
	pos      LSN    // next byte to read
	magic    uint16 // XLOG_PAGE_MAGIC of the first page
	major    int    // PostgreSQL major version from magic, 0 when unknown
	sysID    uint64
	tli      uint32
	started  bool       // the first page has been read
	skipped  bool       // a continuation at the start was skipped
	prevRec  LSN        // start of the previous record, 0 before the first
	buf      []byte     // assembles records that cross pages
	rec      []byte     // the current record: in page when it fits, else buf
	blocks   []BlockRef // reused for each record's Blocks
	finished error      // sticky error
	// overwritten is the start of a record abandoned at a page marked
	// xlpFirstIsOverwriteContRecord (0 when none is pending): the next record
	// must be the XLOG_OVERWRITE_CONTRECORD that names it.
	overwritten LSN
}

// errOverwritten tells next that the record being assembled was abandoned (see
// xlpFirstIsOverwriteContRecord) and reading restarts after the page header.
var errOverwritten = errors.New("record overwritten after a crash")

// NewReader returns a Reader over r, which must deliver whole consecutive WAL
// segments of segSize bytes starting with the segment that begins at start
// (start must be a segment boundary). The page size is taken as 8 kB, the
// only XLOG_BLCKSZ packaged builds use; a segment header saying otherwise is
// reported as corrupt.
func NewReader(r io.Reader, segSize uint64, start LSN) (*Reader, error) {
	if segSize < 1<<20 || segSize > 1<<30 || segSize&(segSize-1) != 0 {
		return nil, fmt.Errorf("wal: segment size %d is not a power of two between 1 MiB and 1 GiB", segSize)
	}
	if uint64(start)%segSize != 0 {
		return nil, fmt.Errorf("wal: reader start %s is not at a segment boundary", start)
	}
	return &Reader{r: r, segSize: segSize, pageSize: defaultPageSize, page: make([]byte, defaultPageSize), pos: start}, nil
}

// SkippedContinuation reports whether the input began with the tail of a record
// whose beginning is in an earlier segment; that tail was skipped, as
// pg_waldump does.
func (rd *Reader) SkippedContinuation() bool { return rd.skipped }

// SystemID is the system identifier from the first segment's long header (0
// before the first Next).
func (rd *Reader) SystemID() uint64 { return rd.sysID }

// PostgreSQLMajor is the major version inferred from the page magic (0 when
// unknown or before the first Next).
func (rd *Reader) PostgreSQLMajor() int { return rd.major }

// Next returns the next record. At a clean end of the input (after the last
// record, or after a segment switch's padding) it returns io.EOF. Any other
// error wraps ErrCorruptRecord, ErrTruncated or ErrEndOfWAL, or is the
// underlying reader's error; after an error every later call returns it
// again.
func (rd *Reader) Next() (Record, error) {
	if rd.finished != nil {
		return Record{}, rd.finished
	}
	rec, err := rd.next()
	if err != nil {
		rd.finished = err
	}
	return rec, err
}

func (rd *Reader) next() (Record, error) {
	var start LSN
	for {
		if err := rd.toRecordStart(); err != nil {
			return Record{}, err
		}
		start = rd.pos
		off := uint64(rd.pos) - uint64(rd.pageLSN)
		totLen := binary.LittleEndian.Uint32(rd.page[off:])
		switch {
		case totLen == 0:
			return Record{}, fmt.Errorf("%w at %s", ErrEndOfWAL, start)
		case totLen < recordHeaderSize:
			return Record{}, corrupt(start, "record length %d is shorter than a record header", totLen)
		case totLen > maxRecordSize:
			return Record{}, corrupt(start, "record length %d exceeds PostgreSQL's maximum", totLen)
		}
		err := rd.readRecord(start, totLen)
		if errors.Is(err, errOverwritten) {
			continue // as PostgreSQL does: read on from the marked page
		}
		if err != nil {
			return Record{}, err
		}
		break
	}
	rec, err := rd.checkRecord(start)
	if err != nil {
		return Record{}, err
	}
	switch {
	case rd.overwritten != 0:
		if err := checkOverwrite(rec, rd.overwritten); err != nil {
			return Record{}, err
		}
		rd.overwritten = 0
	case rd.prevRec != 0 && rec.RmgrID == RmgrXLOG && rec.Info&0xF0 == xlogOverwriteContrecord:
		// Recovery stops at one that follows no abandoned record ("mismatching
		// overwritten LSN"). As the first record read, what it names is before
		// the input.
		return Record{}, corrupt(start, "XLOG_OVERWRITE_CONTRECORD follows no abandoned record")
	}
	rec.EndLSN = rd.pos
	if rec.RmgrID == RmgrXLOG && rec.Info&0xF0 == xlogSwitch {
		// The rest of the segment is padding; PostgreSQL treats the switch
		// record as extending to the segment's end.
		rec.EndLSN = LSN((uint64(rd.pos) + rd.segSize - 1) / rd.segSize * rd.segSize)
		if err := rd.skipTo(rec.EndLSN); err != nil {
			return Record{}, err
		}
	}
	rd.prevRec = start
	return rec, nil
}

// toRecordStart advances pos to where the next record must begin: MAXALIGNed,
// past any page header, past a skipped continuation at the very start.
func (rd *Reader) toRecordStart() error {
	for {
		rd.pos = LSN((uint64(rd.pos) + maxAlign - 1) &^ (maxAlign - 1))
		if rd.loaded && uint64(rd.pos) < uint64(rd.pageLSN)+rd.pageSize {
			return nil
		}
		first := !rd.started
		hdr, err := rd.loadPage(LSN(uint64(rd.pos)))
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		if err != nil {
			return err
		}
		rd.pos += LSN(hdr.size)
		if hdr.info&xlpFirstIsContRecord == 0 {
			continue
		}
		if !first {
			return corrupt(rd.pageLSN, "page starts with a continuation where a new record was expected")
		}
		rd.skipped = true
		// Skip the continuation: on this page, and on the pages after it
		// as long as the record keeps going.
		if err := rd.skipContinuation(hdr); err != nil {
			return err
		}
	}
}

// skipContinuation skips the tail of a record whose beginning came before the
// input, as announced by the page header hdr just loaded.
func (rd *Reader) skipContinuation(hdr pageHeader) error {
	remaining := uint64(hdr.remLen)
	for {
		avail := uint64(rd.pageLSN) + rd.pageSize - uint64(rd.pos)
		if remaining <= avail {
			rd.pos += LSN(remaining)
			return nil
		}
		remaining -= avail
		next, err := rd.loadPage(LSN(uint64(rd.pageLSN) + rd.pageSize))
		if errors.Is(err, io.EOF) {
			// The input held nothing but the tail of one record.
			return io.EOF
		}
		if err != nil {
			return err
		}
		rd.pos = rd.pageLSN + LSN(next.size)
		if next.info&xlpFirstIsOverwriteContRecord != 0 && next.info&xlpFirstIsContRecord == 0 {
			// The record being skipped was abandoned after a crash: a record (the
			// XLOG_OVERWRITE_CONTRECORD) begins here, as PostgreSQL finds it.
			return nil
		}
		if next.info&xlpFirstIsContRecord == 0 || uint64(next.remLen) != remaining {
			return corrupt(rd.pageLSN, "continuation says %d bytes remain, expected %d", next.remLen, remaining)
		}
	}
}

// readRecord assembles the totLen bytes of the record at start into rd.buf,
// following it across pages and segments.
func (rd *Reader) readRecord(start LSN, totLen uint32) error {
	if off := uint64(rd.pos) - uint64(rd.pageLSN); uint64(totLen) <= rd.pageSize-off {
		rd.rec = rd.page[off : off+uint64(totLen)]
		rd.pos += LSN(totLen)
		return nil
	}
	rd.buf = rd.buf[:0]
	if cap(rd.buf) == 0 {
		rd.buf = make([]byte, 0, 2*rd.pageSize)
	}
	need := uint64(totLen)
	for {
		off := uint64(rd.pos) - uint64(rd.pageLSN)
		n := min(need, rd.pageSize-off)
		rd.buf = append(rd.buf, rd.page[off:off+n]...)
		rd.pos += LSN(n)
		need -= n
		if need == 0 {
			rd.rec = rd.buf
			return nil
		}
		hdr, err := rd.loadPage(rd.pos)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the record at %s needs %d more bytes after %s", ErrTruncated, start, need, rd.pos)
		}
		if err != nil {
			return err
		}
		if hdr.info&xlpFirstIsOverwriteContRecord != 0 && rd.overwritten == 0 {
			// The record was cut by a crash and never completed: recovery wrote
			// new WAL over where its continuation would be. The record is not
			// part of the WAL; the next one, at this page, names it.
			rd.overwritten = start
			rd.pos += LSN(hdr.size)
			return errOverwritten
		}
		if hdr.info&xlpFirstIsContRecord == 0 || uint64(hdr.remLen) != need {
			return corrupt(start, "the record continues on page %s, whose header says %d bytes remain (flags %#x), expected %d",
				rd.pageLSN, hdr.remLen, hdr.info, need)
		}
		rd.pos += LSN(hdr.size)
	}
}

// skipTo discards input up to the segment boundary end.
func (rd *Reader) skipTo(end LSN) error {
	for uint64(rd.pageLSN)+rd.pageSize < uint64(end) {
		if _, err := io.ReadFull(rd.r, rd.page); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// A segment switch's padding cut short: the records are
				// whole, so this is a clean end.
				rd.loaded = false
				rd.pos = end
				return nil
			}
			return err
		}
		rd.pageLSN += LSN(rd.pageSize)
	}
	rd.loaded = false
	rd.pos = end
	return nil
}

type pageHeader struct {
	info   uint16
	remLen uint32
	size   uint64
}

// loadPage reads the page at lsn (the next one in the input) and checks its header.
// It returns io.EOF when the input ends exactly at a page boundary.
func (rd *Reader) loadPage(lsn LSN) (pageHeader, error) {
	n, err := io.ReadFull(rd.r, rd.page)
	if errors.Is(err, io.EOF) {
		rd.loaded = false
		return pageHeader{}, io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		rd.loaded = false
		return pageHeader{}, fmt.Errorf("%w: the page at %s has only %d of %d bytes", ErrTruncated, lsn, n, rd.pageSize)
	}
	if err != nil {
		rd.loaded = false
		return pageHeader{}, fmt.Errorf("wal: reading the page at %s: %w", lsn, err)
	}
	rd.pageLSN, rd.loaded = lsn, true
	return rd.checkPageHeader(lsn)
}

func (rd *Reader) checkPageHeader(lsn LSN) (pageHeader, error) {
	le := binary.LittleEndian
	p := rd.page
	magic, info, tli := le.Uint16(p[0:]), le.Uint16(p[2:]), le.Uint32(p[4:])
	addr, remLen := LSN(le.Uint64(p[8:])), le.Uint32(p[16:])
	h := pageHeader{info: info, remLen: remLen, size: shortHeaderSize}
	if !rd.started {
		rd.magic, rd.major = magic, pageMagic[magic]
	}
	switch {
	case magic != rd.magic:
		return h, corrupt(lsn, "page magic %#04x differs from the first page's %#04x", magic, rd.magic)
	case info&^xlpAllFlags != 0:
		return h, corrupt(lsn, "page header has unknown flags %#x", info)
	case addr != lsn:
		return h, corrupt(lsn, "page header says it is page %s", addr)
	case rd.started && tli < rd.tli:
		return h, corrupt(lsn, "timeline %d goes back from %d", tli, rd.tli)
	case remLen > maxRecordSize:
		return h, corrupt(lsn, "continuation length %d exceeds PostgreSQL's maximum", remLen)
	}
	long := uint64(lsn)%rd.segSize == 0
	if long != (info&xlpLongHeader != 0) {
		return h, corrupt(lsn, "long page header flag is %v on a page where it must be %v", !long, long)
	}
	if long {
		h.size = LongHeaderSize
		sh, err := ParseSegmentHeader(p)
		if err != nil {
			return h, corrupt(lsn, "%v", err)
		}
		if uint64(sh.SegSize) != rd.segSize || uint64(sh.BlockSize) != rd.pageSize {
			return h, corrupt(lsn, "segment header says segment size %d and page size %d, expected %d and %d",
				sh.SegSize, sh.BlockSize, rd.segSize, rd.pageSize)
		}
		if rd.started && sh.SystemID != rd.sysID {
			return h, corrupt(lsn, "system identifier %d differs from the first segment's %d", sh.SystemID, rd.sysID)
		}
		rd.sysID = sh.SystemID
	}
	if !rd.started && !long {
		return h, corrupt(lsn, "input does not start at a segment")
	}
	rd.started, rd.tli = true, tli
	return h, nil
}

// checkRecord verifies the CRC and xl_prev link of the record in rd.buf and
// decodes it.
func (rd *Reader) checkRecord(start LSN) (Record, error) {
	b := rd.rec
	le := binary.LittleEndian
	rec := Record{
		LSN:    start,
		TotLen: le.Uint32(b[0:]),
		Xid:    le.Uint32(b[4:]),
		Prev:   LSN(le.Uint64(b[8:])),
		Info:   b[16],
		RmgrID: b[17],
	}
	want := le.Uint32(b[20:])
	h := crc32c.New()
	_, _ = h.Write(b[recordHeaderSize:])
	_, _ = h.Write(b[:20])
	if got := h.Sum32(); got != want {
		return rec, corrupt(start, "record CRC %#08x does not match the stored %#08x", got, want)
	}
	if rd.prevRec != 0 && rec.Prev != rd.prevRec {
		return rec, corrupt(start, "record's xl_prev %s does not link to the previous record at %s", rec.Prev, rd.prevRec)
	}
	rec.Blocks = rd.blocks[:0]
	err := decodeRecord(&rec, b, rd.major)
	rd.blocks = rec.Blocks[:0]
	if len(rec.Blocks) == 0 {
		rec.Blocks = nil
	}
	if err != nil {
		return rec, corrupt(start, "%v", err)
	}
	return rec, nil
}

// checkOverwrite checks that rec, the first record after an abandoned one, is the
// XLOG_OVERWRITE_CONTRECORD that names it (xl_overwrite_contrecord: the abandoned
// record's LSN, then the time), as PostgreSQL's recovery does.
func checkOverwrite(rec Record, abandoned LSN) error {
	if rec.RmgrID != RmgrXLOG || rec.Info&0xF0 != xlogOverwriteContrecord || len(rec.MainData) < 8 {
		return corrupt(rec.LSN, "the record continued at this page was abandoned, but the record here (rmgr %d, info %#x) is not the XLOG_OVERWRITE_CONTRECORD that must follow", rec.RmgrID, rec.Info)
	}
	if got := LSN(binary.LittleEndian.Uint64(rec.MainData)); got != abandoned {
		return corrupt(rec.LSN, "XLOG_OVERWRITE_CONTRECORD names the record at %s, but the abandoned record is at %s", got, abandoned)
	}
	return nil
}

func corrupt(at LSN, format string, args ...any) error {
	return fmt.Errorf("%w at %s: %s", ErrCorruptRecord, at, fmt.Sprintf(format, args...))
}
