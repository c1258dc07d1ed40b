package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

const walSummaryPrefix = "walsum/"

// WALSummaryLimit is the most a cached WAL summary may decode to.
const WALSummaryLimit = 256 << 10

// WALSummaryKey is where the cached summary of the archived WAL segment f lives:
// walsum/<timeline+log>/<segment>, beside wal/ and not under it, so that listing
// wal/ lists WAL only.
func WALSummaryKey(f wal.File) string {
	return walSummaryPrefix + f.Name[:16] + "/" + f.SegmentName()
}

// PutWALSummary caches the summary document js of segment f, only if absent: a
// summary already there (a concurrent writer's, computed from the same immutable
// segment) counts as written.
func (r *Repo) PutWALSummary(ctx context.Context, f wal.File, js []byte) error {
	if f.Kind != wal.Segment {
		return fmt.Errorf("cache a WAL summary: %s is not a segment", f.Name)
	}
	err := r.putDoc(ctx, WALSummaryKey(f), js)
	if errors.Is(err, storage.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cache the summary of %s: %w", f.Name, err)
	}
	return nil
}

// ReadWALSummary reads the cached summary document of segment f, at most
// WALSummaryLimit bytes of it. A summary not cached is an error wrapping
// storage.ErrNotExist; a damaged one (bad envelope, too large) wraps ErrCorrupt.
// The caller decodes and checks the document: it is untrusted.
func (r *Repo) ReadWALSummary(ctx context.Context, f wal.File) ([]byte, error) {
	key := WALSummaryKey(f)
	o, err := r.open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	b, err := readLimited(o, WALSummaryLimit, key)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return b, nil
}

// DeleteWALSummary removes the cached summary of segment f (one not there counts as
// removed). A damaged summary is deleted so that the next reader caches a fresh one.
func (r *Repo) DeleteWALSummary(ctx context.Context, f wal.File) error {
	key := WALSummaryKey(f)
	if err := r.st.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	return nil
}
