// Package walsum summarises archived WAL segments — what the records that start in a
// segment say about commits, restore points and timeline switches — and caches the
// summaries in the repository, so that pgb status and restore know the last archived
// commit without decoding gigabytes of WAL.
//
// Summaries are computed lazily (wal-push does not pay for them: decoding costs 15–50%
// of its CPU) and cached as small documents (repo.WALSummaryKey). A summary whose last
// record continues into a segment that is not archived yet is "open": it is returned
// but never cached, and computed again next time. A cached summary is untrusted: one
// of an unknown version, or that does not describe its segment, is computed again.
package walsum

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

// Version is the version of the summary document this pgb writes and trusts.
const Version = 1

// MaxRestorePoints bounds the restore points a summary lists; more are counted in
// RestorePointsOmitted (a real segment holds a handful).
const MaxRestorePoints = 256

// Commit is a transaction's commit (or abort) record.
type Commit struct {
	Xid  uint32    `json:"xid"`
	Time time.Time `json:"time"`
	LSN  wal.LSN   `json:"lsn"`
}

// Point is a restore point record.
type Point struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
	LSN  wal.LSN   `json:"lsn"`
}

// Switch is an end-of-recovery record: the first record of a new timeline.
type Switch struct {
	Time         time.Time `json:"time"`
	Timeline     uint32    `json:"timeline"`
	PrevTimeline uint32    `json:"prev_timeline"`
	LSN          wal.LSN   `json:"lsn"`
}

// Summary describes the records that start in one WAL segment.
type Summary struct {
	Version  int    `json:"version"`
	Segment  string `json:"segment"`
	SegSize  uint64 `json:"segment_size"`
	SystemID uint64 `json:"system_identifier,string"`
	PGMajor  int    `json:"pg_major"`

	// Records counts the records that start in the segment. FirstLSN and LastLSN are
	// where the first and last of them start (0 when none does: the segment holds
	// only the middle of one long record); EndLSN is the byte after the last one.
	Records  int     `json:"records"`
	FirstLSN wal.LSN `json:"first_lsn"`
	LastLSN  wal.LSN `json:"last_lsn"`
	EndLSN   wal.LSN `json:"end_lsn"`

	Commits     int     `json:"commits"`
	Aborts      int     `json:"aborts"`
	FirstCommit *Commit `json:"first_commit,omitempty"`
	LastCommit  *Commit `json:"last_commit,omitempty"`
	// MinXid and MaxXid bound the (32-bit) xids of the commit and abort records, for
	// --xid targets; both 0 when there are none.
	MinXid uint32 `json:"min_xid"`
	MaxXid uint32 `json:"max_xid"`

	RestorePoints        []Point `json:"restore_points,omitempty"`
	RestorePointsOmitted int     `json:"restore_points_omitted,omitempty"`
	EndOfRecovery        *Switch `json:"end_of_recovery,omitempty"`
	// SegmentSwitch: the segment ends with pg_switch_wal's (or archive_timeout's)
	// switch record; the rest of it is padding.
	SegmentSwitch bool `json:"segment_switch,omitempty"`
	// EndOfWAL: the segment's records stop before its end and zeros follow (a
	// segment copied while it was being written). The records before are sound.
	EndOfWAL bool `json:"end_of_wal,omitempty"`

	// Open: the last record continues into a segment that is not archived; it is
	// not counted. An open summary is never cached.
	Open bool `json:"-"`
	// Streamed: computed from pgb wal-stream's chunks (the segment, or one its last
	// record continues into, is still being streamed): never cached.
	Streamed bool `json:"-"`
}

// ErrNoMore is what a Next function returns when the following segment is not
// archived (yet).
var ErrNoMore = errors.New("the following segment is not archived")

// Next yields the segment after the last one given, for a record that continues
// into it; ErrNoMore when there is none.
type Next func() (io.Reader, error)

// Compute summarises segment f (segSize bytes read from seg). A record that
// continues past the segment is completed from next; when next says ErrNoMore the
// summary is Open. A segment that is not WAL as PostgreSQL writes it is an error
// wrapping wal.ErrCorruptRecord or wal.ErrTruncated.
func Compute(f wal.File, segSize uint64, seg io.Reader, next Next) (*Summary, error) {
	if f.Kind != wal.Segment {
		return nil, fmt.Errorf("walsum: %s is not a segment", f.Name)
	}
	start := wal.LSN(f.SegmentNumber(segSize) * segSize)
	cr := &countingReader{r: seg}
	ch := &chain{cur: io.LimitReader(cr, int64(segSize)), next: next}
	rd, err := wal.NewReader(ch, segSize, start)
	if err != nil {
		return nil, err
	}
	s, err := summarise(f, segSize, rd, ch)
	if err != nil {
		return nil, err
	}
	s.SystemID, s.PGMajor = rd.SystemID(), rd.PostgreSQLMajor()
	// The records may end before the segment does (a switch's padding, zeros): the
	// object must still hold exactly one segment, as wal-fetch demands, or recovery
	// could not use what the summary counts.
	if _, err := io.Copy(io.Discard, io.LimitReader(cr, int64(segSize)-cr.n)); err != nil {
		return nil, fmt.Errorf("summarise %s: %w", f.Name, err)
	}
	if cr.n != int64(segSize) {
		return nil, fmt.Errorf("summarise %s: %w: the object holds %d bytes, a segment %d", f.Name, wal.ErrTruncated, cr.n, segSize)
	}
	return s, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// summarise reads the records of segment f from rd (see Compute).
func summarise(f wal.File, segSize uint64, rd *wal.Reader, ch *chain) (*Summary, error) {
	end := wal.LSN(f.SegmentNumber(segSize)*segSize) + wal.LSN(segSize)
	s := &Summary{Version: Version, Segment: f.Name, SegSize: segSize}
	for {
		rec, err := rd.Next()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return s, nil
		case errors.Is(err, wal.ErrTruncated) && ch.exhausted:
			s.Open = true
			return s, nil
		case errors.Is(err, wal.ErrEndOfWAL):
			s.EndOfWAL = true
			return s, nil
		default:
			return nil, fmt.Errorf("summarise %s: %w", f.Name, err)
		}
		if rec.LSN >= end {
			return s, nil
		}
		s.add(&rec)
		if rec.EndLSN >= end {
			return s, nil
		}
	}
}

func (s *Summary) add(rec *wal.Record) {
	s.Records++
	if s.FirstLSN == 0 {
		s.FirstLSN = rec.LSN
	}
	s.LastLSN, s.EndLSN = rec.LSN, rec.EndLSN
	if rec.RmgrID == wal.RmgrXLOG && rec.Info&0xF0 == 0x40 {
		s.SegmentSwitch = true
	}
	if x := rec.Xact; x != nil {
		xid := x.Xid
		if x.Kind == wal.CommitPrepared || x.Kind == wal.AbortPrepared {
			xid = x.TwoPhaseXid
		}
		if x.Kind == wal.Commit || x.Kind == wal.CommitPrepared {
			s.Commits++
			c := &Commit{Xid: xid, Time: x.Time.UTC(), LSN: rec.LSN}
			if s.FirstCommit == nil {
				s.FirstCommit = c
			}
			s.LastCommit = c
		} else {
			s.Aborts++
		}
		if s.Commits+s.Aborts == 1 || xid < s.MinXid {
			s.MinXid = xid
		}
		if xid > s.MaxXid {
			s.MaxXid = xid
		}
	}
	if p := rec.RestorePoint; p != nil {
		if len(s.RestorePoints) < MaxRestorePoints {
			s.RestorePoints = append(s.RestorePoints, Point{Name: p.Name, Time: p.Time.UTC(), LSN: rec.LSN})
		} else {
			s.RestorePointsOmitted++
		}
	}
	if e := rec.EndOfRecovery; e != nil {
		s.EndOfRecovery = &Switch{Time: e.Time.UTC(), Timeline: e.Timeline, PrevTimeline: e.PrevTimeline, LSN: rec.LSN}
	}
}

// chain reads the segment, then as much of the following ones as a record needs.
type chain struct {
	cur       io.Reader
	next      Next
	exhausted bool // next said ErrNoMore
}

func (c *chain) Read(p []byte) (int, error) {
	for {
		n, err := c.cur.Read(p)
		if !errors.Is(err, io.EOF) || n > 0 {
			return n, err
		}
		if c.next == nil || c.exhausted {
			return 0, io.EOF
		}
		r, err := c.next()
		if errors.Is(err, ErrNoMore) {
			c.exhausted = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		c.cur = r
	}
}

// Encode is the cached document of s.
func Encode(s *Summary) ([]byte, error) {
	if s.Open {
		return nil, errors.New("walsum: an open summary is not cached")
	}
	return json.Marshal(s)
}

// ErrBadSummary means a cached summary cannot be trusted: it is computed again.
var ErrBadSummary = errors.New("unusable WAL summary")

// Decode reads a cached summary of segment f and checks that it can describe it.
func Decode(f wal.File, segSize uint64, b []byte) (*Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w of %s: %w", ErrBadSummary, f.Name, err)
	}
	if err := s.check(f, segSize); err != nil {
		return nil, fmt.Errorf("%w of %s: %w", ErrBadSummary, f.Name, err)
	}
	return &s, nil
}

func (s *Summary) check(f wal.File, segSize uint64) error {
	start := wal.LSN(f.SegmentNumber(segSize) * segSize)
	end := start + wal.LSN(segSize)
	in := func(l wal.LSN) bool { return l >= start && l < end }
	switch {
	case s.Version != Version:
		return fmt.Errorf("version %d, this pgb reads %d", s.Version, Version)
	case s.Segment != f.Name || s.SegSize != segSize:
		return fmt.Errorf("it describes %s of %d-byte segments", s.Segment, s.SegSize)
	case s.Records < 0 || s.Commits < 0 || s.Aborts < 0 || s.RestorePointsOmitted < 0:
		return errors.New("negative counts")
	case s.Records == 0 && (s.FirstLSN != 0 || s.LastLSN != 0 || s.Commits+s.Aborts != 0 || len(s.RestorePoints) != 0 || s.EndOfRecovery != nil):
		return errors.New("records without a count")
	case s.Records > 0 && (!in(s.FirstLSN) || !in(s.LastLSN) || s.FirstLSN > s.LastLSN || s.EndLSN <= s.LastLSN):
		return errors.New("record positions outside the segment")
	case s.Commits+s.Aborts > s.Records || len(s.RestorePoints) > MaxRestorePoints:
		return errors.New("more entries than records")
	case (s.Commits > 0) != (s.FirstCommit != nil) || (s.Commits > 0) != (s.LastCommit != nil):
		return errors.New("commit count and commits disagree")
	case s.Commits+s.Aborts == 0 && (s.MinXid != 0 || s.MaxXid != 0), s.MinXid > s.MaxXid:
		return errors.New("transaction ids without transactions")
	case s.FirstCommit != nil && (s.FirstCommit.LSN > s.LastCommit.LSN ||
		s.FirstCommit.Xid < s.MinXid || s.FirstCommit.Xid > s.MaxXid || s.LastCommit.Xid < s.MinXid || s.LastCommit.Xid > s.MaxXid):
		return errors.New("commits outside the summary's own bounds")
	case s.SystemID == 0:
		return errors.New("no system identifier")
	}
	for _, c := range []*Commit{s.FirstCommit, s.LastCommit} {
		if c != nil && (!in(c.LSN) || c.LSN > s.LastLSN) {
			return errors.New("a commit outside the segment")
		}
	}
	for _, p := range s.RestorePoints {
		if !in(p.LSN) {
			return errors.New("a restore point outside the segment")
		}
	}
	if e := s.EndOfRecovery; e != nil && !in(e.LSN) {
		return errors.New("an end of recovery outside the segment")
	}
	return nil
}
