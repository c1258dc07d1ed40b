package lookahead

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/repo"
)

// Bounds of the look-ahead: each pass considers at most MaxAhead segments not yet
// shipped, and no more than MaxAheadBytes of them, oldest first.
const (
	DefaultMaxAhead      = 64
	DefaultMaxAheadBytes = 1 << 30
	// DefaultIdle is how long an archiver that finds nothing to ship waits for more
	// before it exits.
	DefaultIdle = 2 * time.Second
	// DefaultCleanupEvery is how often a running archiver cleans its spool.
	DefaultCleanupEvery = 10 * time.Second
	// DefaultPoll is how often an archiver looks for new ready segments when it cannot
	// watch archive_status (no inotify).
	DefaultPoll = 5 * time.Millisecond
	// watchedPoll is how often an archiver that watches archive_status and its spool
	// looks anyway: a safety net, events are what wake it.
	watchedPoll = 500 * time.Millisecond
	// staleTemp is the age after which a temp file left in the spool (by a process
	// killed while writing a record) is removed.
	staleTemp = 10 * time.Minute
)

// Archiver ships the segments PostgreSQL has marked ready, ahead of its calls, and
// records each one once it is durable in the repository. One runs per data
// directory (Run takes the spool's lock).
type Archiver struct {
	Spool  Spool
	WALDir string // the data directory's pg_wal
	// Cluster is the data directory's cluster: a segment of another is refused.
	Cluster *archive.Cluster
	// NewRepo returns the repository afresh for each segment: a Repo caches the
	// identity document, and the archiver must notice a repository wiped and created
	// again while it runs, as a wal-push process of its own would.
	NewRepo func() *repo.Repo
	// Concurrency is how many segments are shipped at once while the archiver is less
	// than Concurrency segments ahead of PostgreSQL's calls (recorded segments after
	// the one last called for, Spool.MarkCalled); further ahead, one at a time. The
	// calls, one at a time, are what PostgreSQL waits on then: shipping faster would
	// only take their cores (and the database's).
	Concurrency   int
	MaxAhead      int
	MaxAheadBytes int64
	Idle          time.Duration
	// Poll is how often it looks for new ready segments without inotify; with it,
	// changes in archive_status and the spool wake it, and it looks at least every
	// half second anyway.
	Poll time.Duration
	// CleanupEvery is how often a running archiver removes the records of segments no
	// longer in pg_wal (it also does at start and exit).
	CleanupEvery time.Duration
	// Timeout bounds the shipping of one segment (wal-timeout).
	Timeout time.Duration
	Log     *slog.Logger
	// BeforeRecord, when set, runs once a segment's put is durable, before its record
	// is written (tests).
	BeforeRecord func(segment string)

	current *RepoID           // the repository as last seen; nil: not known yet
	known   map[string]Record // records of current, by segment, checked
	failing bool              // the last shipment failed: no look-ahead until one succeeds
	// Shipped and Failed count the segments shipped and failed by Run.
	Shipped, Failed int
}

type shipped struct {
	segment string
	rec     Record
	err     error
}

// Run ships ready segments until it has found nothing to do for Idle, or ctx ends. It
// returns ErrArchiverRunning at once when another archiver holds the lock.
func (a *Archiver) Run(ctx context.Context) error {
	rp := a.NewRepo()
	lock, err := a.Spool.TakeLock(ctx, rp.Destination())
	if err != nil {
		return err
	}
	defer lock.Release()
	a.defaults()
	a.known = map[string]Record{}
	if id, err := rp.Identity(ctx); err == nil {
		cur := MakeRepoID(rp.Destination(), id)
		a.current = &cur
	}
	a.cleanup()
	defer a.cleanup()
	a.Log.Debug("archiver started", "concurrency", a.Concurrency, "wal", a.WALDir)

	// Watched from before the first look, so that nothing created after it is missed.
	w := newDirWatch(filepath.Join(a.WALDir, "archive_status"), string(a.Spool))
	defer w.close()
	poll := a.Poll
	if w.ok {
		poll = max(poll, watchedPoll)
	}
	inflight := map[string]bool{}
	results := make(chan shipped)
	var idleSince time.Time
	lastCleanup := time.Now()
	for {
		// A busy archiver never idles: the records of segments PostgreSQL has since
		// recycled are removed as it runs, not only when it exits.
		if time.Since(lastCleanup) >= a.CleanupEvery {
			a.cleanup()
			lastCleanup = time.Now()
		}
		started := 0
		if ctx.Err() == nil {
			started = a.dispatch(ctx, inflight, results)
		}
		if len(inflight) == 0 {
			if ctx.Err() != nil {
				return nil
			}
			if started == 0 {
				if idleSince.IsZero() {
					idleSince = time.Now()
				} else if time.Since(idleSince) >= a.Idle {
					a.Log.Debug("archiver idle: exiting")
					return nil
				}
			}
		} else {
			idleSince = time.Time{}
		}
		wait := poll
		if !idleSince.IsZero() {
			wait = max(time.Millisecond, min(wait, a.Idle-time.Since(idleSince)))
		}
		t := time.NewTimer(wait)
		select {
		case r := <-results:
			t.Stop()
			delete(inflight, r.segment)
			a.done(ctx, r)
		case <-w.C:
			t.Stop()
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if len(inflight) == 0 {
				return nil
			}
			r := <-results
			delete(inflight, r.segment)
			a.done(ctx, r)
		}
	}
}

func (a *Archiver) defaults() {
	if a.Concurrency < 1 {
		a.Concurrency = 1
	}
	if a.CleanupEvery <= 0 {
		a.CleanupEvery = DefaultCleanupEvery
	}
	if a.MaxAhead < 1 {
		a.MaxAhead = DefaultMaxAhead
	}
	if a.MaxAheadBytes < 1 {
		a.MaxAheadBytes = DefaultMaxAheadBytes
	}
	if a.Idle <= 0 {
		a.Idle = DefaultIdle
	}
	if a.Poll <= 0 {
		a.Poll = DefaultPoll
	}
	if a.Timeout <= 0 {
		a.Timeout = 2 * time.Minute
	}
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
}

// dispatch starts shipping the next candidates, up to the concurrency, and says how
// many it started.
func (a *Archiver) dispatch(ctx context.Context, inflight map[string]bool, results chan<- shipped) int {
	limit := a.Concurrency
	if a.failing {
		limit = 1 // back off: only the oldest segment, once per wal-push call for it
	}
	if len(inflight) >= limit {
		return 0
	}
	cands, ahead, err := a.candidates(inflight)
	if err != nil {
		a.Log.Warn("archiver: cannot look for ready segments", "error", err)
		return 0
	}
	if ahead >= a.Concurrency {
		limit = 1
	}
	n := 0
	for _, seg := range cands {
		if len(inflight) >= limit {
			break
		}
		inflight[seg] = true
		n++
		go func() { results <- a.ship(ctx, seg) }()
	}
	return n
}

// candidates lists the ready segments to ship now, oldest first: not in flight, not
// recorded for the current repository, without an error record waiting for its
// wal-push call; within the look-ahead bounds. ahead counts the recorded ready
// segments after the one PostgreSQL last called wal-push for (all of them when that is
// not known): how far the archiver is ahead of the calls.
func (a *Archiver) candidates(inflight map[string]bool) (out []string, ahead int, err error) {
	ready, err := readySegments(filepath.Join(a.WALDir, "archive_status"))
	if err != nil {
		return nil, 0, err
	}
	spool, err := names(string(a.Spool))
	if err != nil {
		return nil, 0, err
	}
	called := a.Spool.LastCalled()
	has := make(map[string]bool, len(spool))
	for _, n := range spool {
		has[n] = true
	}
	bound := a.MaxAhead
	if len(ready) > 0 {
		if fi, err := os.Lstat(filepath.Join(a.WALDir, ready[0])); err == nil && fi.Size() > 0 {
			bound = int(min(int64(a.MaxAhead), max(1, a.MaxAheadBytes/fi.Size())))
		}
	}
	considered := 0
	for _, seg := range ready {
		if a.recorded(seg, has[seg+recordSuffix]) {
			if seg > called {
				ahead++
			}
			continue
		}
		if considered == bound {
			break
		}
		considered++
		if has[seg+errorSuffix] { // waits for its wal-push call to clear it
			if a.failing {
				break // while failing, never past a failed segment
			}
			continue
		}
		if a.failing && considered > 1 {
			break
		}
		if !inflight[seg] {
			out = append(out, seg)
		}
	}
	return out, ahead, nil
}

// recorded reports whether segment has a record that holds for the current
// repository and the file now in pg_wal. exists says whether the spool lists one.
func (a *Archiver) recorded(segment string, exists bool) bool {
	if !exists {
		delete(a.known, segment) // removed: a wal-push found it did not hold
		return false
	}
	if _, ok := a.known[segment]; ok {
		return true
	}
	if a.current == nil {
		return false
	}
	r, err := a.Spool.ReadRecord(segment)
	if err != nil || !r.Repo.Equal(*a.current) {
		return false
	}
	src, err := StatSource(filepath.Join(a.WALDir, segment))
	if err != nil || src != r.Source {
		return false
	}
	a.known[segment] = r
	return true
}

// ship pushes one segment, as wal-push does, and records it once durable.
func (a *Archiver) ship(ctx context.Context, segment string) shipped {
	ctx, cancel := archive.WithDeadline(ctx, a.Timeout)
	defer cancel()
	rec, err := a.push(ctx, segment)
	return shipped{segment: segment, rec: rec, err: archive.Explain(ctx, err)}
}

func (a *Archiver) push(ctx context.Context, segment string) (Record, error) {
	rp := a.NewRepo()
	ar := &archive.Archive{Repo: rp, Log: a.Log}
	res, err := ar.Push(ctx, filepath.Join(a.WALDir, segment), a.Cluster)
	if err != nil {
		return Record{}, err
	}
	if a.BeforeRecord != nil {
		a.BeforeRecord(segment)
	}
	rec, err := a.Spool.RecordPush(ctx, rp, res)
	if err != nil {
		return Record{}, err
	}
	a.Log.Debug("shipped ahead", "file", segment, "stored", rec.Stored, "duplicate", res.Duplicate, "duration", res.Duration)
	return rec, nil
}

// done takes in the outcome of one shipment.
func (a *Archiver) done(ctx context.Context, r shipped) {
	if r.err == nil {
		if a.current == nil || !a.current.Equal(r.rec.Repo) {
			cur := r.rec.Repo
			a.current = &cur // another repository than before: older records do not count
			a.known = map[string]Record{}
		}
		a.known[r.segment] = r.rec
		a.failing = false
		a.Shipped++
		_ = a.Spool.ClearError(r.segment) // best effort: a stale error is also cleared by wal-push
		return
	}
	if ctx.Err() != nil && errors.Is(r.err, context.Canceled) {
		return // stopped: not the segment's fault
	}
	a.failing = true
	a.Failed++
	a.Log.Error("archiver: cannot ship segment", "file", r.segment, "error", r.err)
	if err := a.Spool.WriteError(r.segment, r.err); err != nil {
		a.Log.Error("archiver: cannot record the error", "file", r.segment, "error", err)
	}
}

// cleanup removes the records and error records of segments no longer in pg_wal
// (archived, then recycled or removed by PostgreSQL), error records of segments no
// longer ready, and old temp files: the spool stays as small as pg_wal.
func (a *Archiver) cleanup() {
	spool, err := names(string(a.Spool))
	if err != nil {
		return
	}
	for _, n := range spool {
		if strings.HasPrefix(n, ".pgb-tmp-") {
			if fi, err := os.Lstat(a.Spool.path(n)); err == nil && time.Since(fi.ModTime()) > staleTemp {
				_ = a.Spool.remove(n) // best effort
			}
			continue
		}
		seg, isRec := strings.CutSuffix(n, recordSuffix)
		segE, isErr := strings.CutSuffix(n, errorSuffix)
		switch {
		case isRec && segmentName(seg):
			if _, err := os.Lstat(filepath.Join(a.WALDir, seg)); errors.Is(err, os.ErrNotExist) {
				_ = a.Spool.remove(n) // best effort: only an optimisation is lost
				delete(a.known, seg)
			}
		case isErr && segmentName(segE):
			if _, err := os.Lstat(filepath.Join(a.WALDir, "archive_status", segE+".ready")); errors.Is(err, os.ErrNotExist) {
				_ = a.Spool.remove(n) // best effort
			}
		}
	}
}

// readySegments lists the segments archive_status marks ready, oldest first.
func readySegments(dir string) ([]string, error) {
	all, err := names(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(all))
	for _, n := range all {
		if seg, ok := strings.CutSuffix(n, ".ready"); ok && segmentName(seg) {
			out = append(out, seg)
		}
	}
	slices.Sort(out)
	return out, nil
}

func names(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }() // read-only
	return d.Readdirnames(-1)
}
