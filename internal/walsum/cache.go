package walsum

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// Cache reads summaries from the repository, computing and caching those that are
// missing or cannot be trusted.
type Cache struct {
	rp      *repo.Repo
	segSize uint64
	log     *slog.Logger
	// ReadOnly: compute missing summaries but do not store them.
	ReadOnly bool
	// Stats counts what Get did, for tests and for status's cost report.
	Stats Stats
}

// Stats counts summaries read from the cache and computed.
type Stats struct {
	Cached, Computed, Stored int
}

// NewCache returns a cache over rp for WAL of segSize-byte segments. log receives a
// warning when a summary cannot be stored (a read-only repository is still
// summarised); nil discards them.
func NewCache(rp *repo.Repo, segSize uint64, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{rp: rp, segSize: segSize, log: log}
}

// Get is the summary of the archived segment f. A summary is computed when none is
// cached or the cached one cannot be trusted (see Decode), and cached unless it is
// open. A segment that is not archived is an error wrapping storage.ErrNotExist.
func (c *Cache) Get(ctx context.Context, f wal.File) (*Summary, error) {
	b, err := c.rp.ReadWALSummary(ctx, f)
	switch {
	case err == nil:
		s, derr := Decode(f, c.segSize, b)
		if derr == nil {
			derr = c.sameCluster(ctx, s)
		}
		if derr == nil {
			c.Stats.Cached++
			return s, nil
		}
		c.log.Warn("recomputing a WAL summary", "segment", f.Name, "reason", derr.Error())
	case errors.Is(err, storage.ErrNotExist):
	case errors.Is(err, repo.ErrCorrupt):
		c.log.Warn("recomputing a damaged WAL summary", "segment", f.Name, "reason", err.Error())
	default:
		return nil, err
	}
	stale := err == nil || errors.Is(err, repo.ErrCorrupt)
	s, err := c.compute(ctx, f)
	if err != nil {
		return nil, err
	}
	if err := c.sameCluster(ctx, s); err != nil {
		// The segment itself is another cluster's: damage, as a reader sees it.
		return nil, fmt.Errorf("%s: %w: %w", f.Name, wal.ErrCorruptRecord, err)
	}
	c.Stats.Computed++
	if s.Open || s.Streamed || c.ReadOnly {
		return s, nil
	}
	if err := c.store(ctx, f, s, stale); err != nil {
		c.log.Warn("could not cache a WAL summary", "segment", f.Name, "error", err.Error())
	} else {
		c.Stats.Stored++
	}
	return s, nil
}

// sameCluster checks that s describes WAL of the repository's cluster (pgb.json's
// system identifier), so that a summary left from a repository wiped and reused, or a
// segment of another cluster, is never taken for this one's. A repository without an
// identity yet has nothing to compare with.
func (c *Cache) sameCluster(ctx context.Context, s *Summary) error {
	id, err := c.rp.Identity(ctx)
	if err != nil || id.SystemID == 0 {
		return nil //nolint:nilerr // no identity to hold the summary to; readers check the WAL itself
	}
	if s.SystemID != uint64(id.SystemID) {
		return fmt.Errorf("it describes WAL of system %d, the repository holds system %d", s.SystemID, uint64(id.SystemID))
	}
	return nil
}

func (c *Cache) store(ctx context.Context, f wal.File, s *Summary, stale bool) error {
	js, err := Encode(s)
	if err != nil {
		return err
	}
	if stale {
		if err := c.rp.DeleteWALSummary(ctx, f); err != nil {
			return err
		}
	}
	return c.rp.PutWALSummary(ctx, f, js)
}

// compute decodes segment f, and as much of the segments after it on its timeline as
// its last record needs.
func (c *Cache) compute(ctx context.Context, f wal.File) (*Summary, error) {
	o, streamed, err := c.open(ctx, f)
	if err != nil {
		return nil, err
	}
	defer func() { _ = o.Close() }() // read-only: reading to the end verified it
	var opened []io.Closer
	defer func() {
		for _, x := range opened {
			_ = x.Close() // read-only
		}
	}()
	segNo := f.SegmentNumber(c.segSize)
	next := func() (io.Reader, error) {
		segNo++
		nf, err := wal.Parse(wal.SegmentFileName(f.Timeline, segNo, c.segSize))
		if err != nil {
			return nil, err
		}
		no, more, err := c.open(ctx, nf)
		if errors.Is(err, storage.ErrNotExist) {
			return nil, ErrNoMore
		}
		if err != nil {
			return nil, err
		}
		streamed = streamed || more
		opened = append(opened, no)
		return no, nil
	}
	s, err := Compute(f, c.segSize, o, next)
	if err != nil {
		return nil, err
	}
	s.Streamed = streamed
	// The rest of the segment (a switch's padding, unwritten zeros) is read too: only
	// reading to the end checks the object's size and checksum.
	if _, err := io.Copy(io.Discard, o); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	return s, nil
}

// open opens the archived segment f; one that only pgb wal-stream's chunks hold is
// opened from them, zero-padded (streamed is true), as wal-fetch serves it.
func (c *Cache) open(ctx context.Context, f wal.File) (rc io.ReadCloser, streamed bool, err error) {
	o, err := c.rp.OpenWAL(ctx, f)
	if err == nil {
		return o, false, nil
	}
	if !errors.Is(err, storage.ErrNotExist) {
		return nil, false, err
	}
	s, serr := c.rp.OpenStreamedWAL(ctx, f)
	if serr != nil {
		if errors.Is(serr, storage.ErrNotExist) {
			return nil, false, err
		}
		return nil, false, serr
	}
	return s, true, nil
}

// SegmentSize reads the segment size from the long page header of the archived
// segment f (one small read), for a repository that has no backup to say it.
func SegmentSize(ctx context.Context, rp *repo.Repo, f wal.File) (uint64, error) {
	o, err := rp.OpenWAL(ctx, f)
	if err != nil {
		return 0, err
	}
	defer func() { _ = o.Close() }() // read-only: the header is checked below
	b := make([]byte, wal.LongHeaderSize)
	if _, err := io.ReadFull(o, b); err != nil {
		return 0, fmt.Errorf("read %s: %w", f.Name, err)
	}
	h, err := wal.ParseSegmentHeader(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name, err)
	}
	if s := uint64(h.SegSize); s < 1<<20 || s > 1<<30 {
		return 0, fmt.Errorf("%s: segment size %d is outside 1 MiB to 1 GiB", f.Name, s)
	}
	return uint64(h.SegSize), nil
}
