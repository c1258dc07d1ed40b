package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// OrphanWALSummaries lists the cached summaries (as Probe: key, size, time stored)
// whose segment is no longer archived: left by a delete that was interrupted between
// a segment and its summary, or cached by a reader while a delete removed the
// segment. Two listings: walsum/ and wal/.
func (r *Repo) OrphanWALSummaries(ctx context.Context) ([]Probe, error) {
	segs := map[string]bool{}
	err := r.ListWAL(ctx, func(o WALObject) error {
		if o.Kind == wal.Segment {
			segs[WALSummaryKey(o.File)] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Probe
	err = r.st.List(ctx, walSummaryPrefix, func(o storage.ObjectInfo) error {
		if !segs[o.Key] {
			out = append(out, Probe{Key: o.Key, Size: o.Size, Stored: o.ModTime})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list WAL summaries: %w", err)
	}
	return out, nil
}

// DeleteOrphanWALSummaries removes summaries OrphanWALSummaries listed, in batches
// where the store has them.
func (r *Repo) DeleteOrphanWALSummaries(ctx context.Context, ps []Probe) error {
	keys := make([]string, 0, len(ps))
	for _, p := range ps {
		if !strings.HasPrefix(p.Key, walSummaryPrefix) {
			return fmt.Errorf("%q is not a WAL summary", p.Key)
		}
		keys = append(keys, p.Key)
	}
	if err := storage.DeleteAll(ctx, r.st, keys); err != nil {
		return fmt.Errorf("remove WAL summaries: %w", err)
	}
	return nil
}
