package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// The prefetch spool (pg_wal/pgb/fetch, see internal/spool) holds:
//
//	NAME                 a prefetched segment: its bytes, then its record (spoolfile.go)
//	.tmp-NAME-*          a segment being prefetched (removed by the next prefetcher if left)
//	NAME.taken.PID       a segment a wal-fetch claimed to serve it
//	want                 the last segment wal-fetch was asked for (SignalWant)
//	prefetcher.lock      flock'd by the one prefetcher of this data directory
//	prefetcher.log       the prefetcher's log, at most PrefetchLogMax bytes
const (
	wantFile       = "want"
	lockFile       = "prefetcher.lock"
	LogFile        = "prefetcher.log"
	PrefetchLogMax = 1 << 20
	tmpPrefix      = ".tmp-"
	takenInfix     = ".taken."
	maxWant        = 4096 // bytes of a request file
)

// Want is a wal-fetch's request, which the prefetcher works ahead of.
type Want struct {
	Name    string `json:"name"`     // the segment PostgreSQL asked for
	SegSize int64  `json:"seg_size"` // its size: the cluster's WAL segment size
	Repo    string `json:"repo"`     // the repository's location (RepoID.Location)
	Seq     string `json:"seq"`      // distinguishes two requests for one name
}

// SignalWant records w as the latest request in the spool directory dir (a rename: a
// prefetcher reads the old or the new request, never half of one).
func SignalWant(dir string, w Want) error {
	w.Seq = strconv.Itoa(os.Getpid()) + "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+wantFile+"-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name()) // best effort: the write error is reported
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, wantFile)); err != nil {
		_ = os.Remove(tmp.Name()) // best effort: the rename error is reported
		return err
	}
	return nil
}

// readWant reads the latest request; ok is false when there is none or it does not
// parse (the spool is local state, but still checked).
func readWant(dir string) (w Want, ok bool) {
	// Never follow a link, never block on a FIFO, never read without a bound.
	fl, err := os.OpenFile(filepath.Join(dir, wantFile), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Want{}, false
	}
	defer func() { _ = fl.Close() }() // read-only
	if fi, err := fl.Stat(); err != nil || !fi.Mode().IsRegular() {
		return Want{}, false
	}
	b, err := io.ReadAll(io.LimitReader(fl, maxWant+1))
	if err != nil || len(b) > maxWant {
		return Want{}, false
	}
	if json.Unmarshal(b, &w) != nil {
		return Want{}, false
	}
	f, err := wal.Parse(w.Name)
	if err != nil || f.Kind != wal.Segment || w.SegSize < minSegSize || w.SegSize > maxSegSize || w.SegSize&(w.SegSize-1) != 0 {
		return Want{}, false
	}
	return w, true
}

// lockPrefetcher takes the prefetcher lock of dir without waiting. held is false when
// another process holds it.
func lockPrefetcher(dir string) (f *os.File, held bool, err error) {
	f, err = os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close() // not ours: nothing to release
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f, true, nil
}

// PrefetcherRunning reports whether a prefetcher holds the lock of the spool dir.
// Call it after SignalWant: a prefetcher about to exit looks at the request again
// after releasing its lock, so a request is never left with nobody to serve it.
func PrefetcherRunning(dir string) (bool, error) {
	f, held, err := lockPrefetcher(dir)
	if err != nil {
		return false, err
	}
	if held {
		_ = f.Close() // releases the lock: only probing
		return false, nil
	}
	return true, nil
}

// Prefetcher fetches the segments after the latest request into the spool, Depth at
// most, Workers at once, until no request came for Idle.
type Prefetcher struct {
	Archive *Archive
	Dir     string        // the spool directory
	Depth   int           // segments fetched ahead of the latest request
	Workers int           // fetches at once
	Idle    time.Duration // exit after this long without a request or a completed fetch
	Poll    time.Duration // how often the request file is looked at
	Timeout time.Duration // bound of one fetch (wal-timeout)
}

// ErrPrefetcherRunning means another prefetcher holds the lock of the spool.
var ErrPrefetcherRunning = errors.New("a prefetcher already runs for this data directory")

type entry struct {
	key   string
	names []string // candidates, in the order PostgreSQL asks
}

type result struct {
	key     string
	name    string // spooled under this name; "" if none
	missing bool   // no candidate is in the archive
	err     error
}

// Run prefetches until idle or ctx ends. It returns ErrPrefetcherRunning when another
// prefetcher holds the lock. Failures to fetch are logged, never returned: the
// wal-fetch that asks for the segment fetches it itself and reports its own result.
func (p *Prefetcher) Run(ctx context.Context) error {
	lock, held, err := lockPrefetcher(p.Dir)
	if err != nil {
		return err
	}
	if !held {
		return ErrPrefetcherRunning
	}
	// The holder's pid, for an operator (and test clean-ups) to find the prefetcher,
	// written before anything else and removed before the lock is released.
	writePid(lock)
	locked := true
	defer func() {
		if locked {
			_ = lock.Truncate(0) // best effort: a stale pid only misleads an operator
		}
		_ = lock.Close() // releases the lock
	}()
	// Before any network call: a wal-fetch meanwhile must not wait for a temp file that
	// nobody writes any more.
	removeLeftovers(p.Dir)
	id, err := p.repoID(ctx)
	if err != nil {
		return err
	}
	p.removeForeign(id)
	notify := notifyWant(p.Dir)
	defer notify.Close()
	var woken <-chan struct{}
	pollEvery := p.Poll
	if notify != nil {
		woken = notify.C
		pollEvery = 20 * p.Poll // inotify wakes it: polling is only a fallback
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result)
	inflight := map[string]string{} // key → the candidate being written (for cleaning)
	var (
		cur      Want
		plan     []entry
		state    = map[string]result{}
		last     = time.Now()
		seen     string
		tl       timelines
		poll     = time.NewTimer(0)
		workers  = max(p.Workers, 1)
		haveWant bool
	)
	defer poll.Stop()
	for {
		if w, ok := readWant(p.Dir); ok && w.Seq != seen {
			seen, last = w.Seq, time.Now()
			if w.Repo != id.Location {
				p.Archive.Log.Info("requests now come for another repository: exiting", "repo", w.Repo)
				break
			}
			cur, haveWant = w, true
			plan = p.plan(ctx, &tl, cur)
			state = p.known(plan, inflight)
			p.clean(plan, inflight)
		}
		if haveWant {
			for _, e := range plan {
				if len(inflight) >= workers {
					break
				}
				r, ok := state[e.key]
				if ok && r.missing {
					break // the end of the archive, for now: retried on the next request
				}
				if ok {
					continue
				}
				state[e.key] = result{key: e.key}
				inflight[e.key] = e.names[0]
				go func(e entry) { results <- p.fetchEntry(ctx, e, id) }(e)
			}
		}
		if len(inflight) == 0 && time.Since(last) >= p.Idle {
			// Nobody asked for a while: replay is slow or paused, or recovery ended. What
			// is still ahead of the last request stays (a later request, served by it,
			// starts a prefetcher again, which does not fetch it again); the rest goes.
			p.clean(plan, inflight)
			if p.stillIdle(lock, seen) {
				locked = false
				break
			}
			continue
		}
		if wait := p.Idle - time.Since(last); len(inflight) == 0 && wait > 0 && wait < pollEvery {
			poll.Reset(wait)
		} else {
			poll.Reset(pollEvery)
		}
		select {
		case <-ctx.Done():
			for len(inflight) > 0 {
				r := <-results
				delete(inflight, r.key)
			}
			return ctx.Err()
		case r := <-results:
			delete(inflight, r.key)
			last = time.Now()
			if r.err != nil {
				p.Archive.Log.Warn("prefetch failed (the wal-fetch asking for it fetches it itself)", "segment", r.key, "err", r.err)
			}
			if _, ok := state[r.key]; ok {
				state[r.key] = r
			}
			p.clean(plan, inflight)
		case <-poll.C:
		case <-woken:
		}
	}
	return nil
}

// stillIdle is the prefetcher's way out. It releases the lock, then reads the request
// again: a wal-fetch that signalled meanwhile found the lock held and started no
// prefetcher, so this one must take the lock back and go on (unless another took it).
func (p *Prefetcher) stillIdle(lock *os.File, seen string) bool {
	_ = lock.Truncate(0) // best effort: the pid of a prefetcher that exits goes first
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		return true
	}
	if w, ok := readWant(p.Dir); !ok || w.Seq == seen {
		return true
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true // another prefetcher took over
	}
	writePid(lock)
	return false
}

// writePid writes this process's pid into the lock file it holds.
func writePid(lock *os.File) {
	if err := lock.Truncate(0); err == nil {
		_, _ = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0) // best effort: for an operator
	}
}

// repoID reads the repository's identity with a deadline of its own (wal-timeout).
func (p *Prefetcher) repoID(ctx context.Context) (RepoID, error) {
	ctx, cancel := WithDeadline(ctx, p.Timeout)
	defer cancel()
	id, err := p.Archive.RepoID(ctx)
	return id, Explain(ctx, err)
}

// known marks the entries already spooled (or being fetched) as done.
func (p *Prefetcher) known(plan []entry, inflight map[string]string) map[string]result {
	state := map[string]result{}
	for _, e := range plan {
		if _, ok := inflight[e.key]; ok {
			state[e.key] = result{key: e.key}
			continue
		}
		for _, n := range e.names {
			if fi, err := os.Lstat(filepath.Join(p.Dir, n)); err == nil && fi.Mode().IsRegular() {
				state[e.key] = result{key: e.key, name: n}
				break
			}
		}
	}
	return state
}

// plan lists the segments to prefetch after w, following the repository's timelines.
func (p *Prefetcher) plan(ctx context.Context, tl *timelines, w Want) []entry {
	ctx, cancel := WithDeadline(ctx, p.Timeout)
	defer cancel()
	f, _ := wal.Parse(w.Name) // readWant checked it
	spans := tl.history(ctx, p.Archive, f.Timeline)
	next := NextNames(f, uint64(w.SegSize), spans, p.Depth)
	plan := make([]entry, 0, len(next))
	for _, names := range next {
		plan = append(plan, entry{key: strings.Join(names, ","), names: names})
	}
	return plan
}

// clean removes from the spool every segment the plan does not want: those before the
// request (consumed or skipped), those beyond it, those of a timeline the plan does
// not follow, and all but the first present candidate of each segment.
func (p *Prefetcher) clean(plan []entry, inflight map[string]string) {
	// What to keep is decided on the same listing as what to remove: a segment a worker
	// renames into place meanwhile is in neither, so it is never removed by mistake.
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return
	}
	present := map[string]bool{}
	for _, de := range ents {
		present[de.Name()] = de.Type().IsRegular()
	}
	keep := map[string]bool{}
	for _, e := range plan {
		for _, n := range e.names {
			if present[n] {
				keep[n] = true
				break
			}
		}
	}
	for _, de := range ents {
		n := de.Name()
		f, err := wal.Parse(n)
		switch {
		case err == nil && f.Kind == wal.Segment && !keep[n]:
		case strings.Contains(n, takenInfix) && olderThan(p.Dir, n, time.Minute):
		case strings.HasPrefix(n, tmpPrefix+wantFile) && olderThan(p.Dir, n, time.Minute):
			// a request a killed wal-fetch did not finish writing
		default:
			continue
		}
		if err := os.Remove(filepath.Join(p.Dir, n)); err == nil {
			p.Archive.Log.Debug("removed a spooled file no request wants", "file", n)
		}
	}
}

// removeLeftovers removes the temp files an earlier prefetcher left (only the lock
// holder writes them, and it holds the lock now) and the requests a killed wal-fetch
// did not finish writing (older than a minute: a live wal-fetch renames its own at once).
// Spooled segments stay: removeForeign and clean decide on them.
func removeLeftovers(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range ents {
		n := de.Name()
		if !strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		if strings.HasPrefix(n, tmpPrefix+wantFile) && !olderThan(dir, n, time.Minute) {
			continue // a wal-fetch is writing it
		}
		_ = os.Remove(filepath.Join(dir, n)) // best effort: a leftover
	}
}

// removeForeign removes the spooled segments an earlier prefetcher left that are not
// this repository's (or whose record does not read): the others are kept, and verified
// again when served.
func (p *Prefetcher) removeForeign(id RepoID) {
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return
	}
	for _, de := range ents {
		n := de.Name()
		if f, err := wal.Parse(n); err != nil || f.Kind != wal.Segment {
			continue
		}
		if rec, err := spooledRecord(filepath.Join(p.Dir, n)); err == nil && rec.Name == n && rec.Repo.same(id) {
			continue
		}
		if err := os.Remove(filepath.Join(p.Dir, n)); err == nil {
			p.Archive.Log.Debug("removed a spooled file of another repository or with no valid record", "file", n)
		}
	}
}

// spooledRecord reads the record of the spooled file at path (a regular file only).
func spooledRecord(path string) (spoolRecord, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return spoolRecord{}, err
	}
	defer func() { _ = f.Close() }() // read-only
	fi, err := f.Stat()
	if err != nil {
		return spoolRecord{}, err
	}
	if !fi.Mode().IsRegular() {
		return spoolRecord{}, errors.New("not a regular file")
	}
	return readSpoolRecord(f, fi.Size())
}

func olderThan(dir, name string, d time.Duration) bool {
	fi, err := os.Lstat(filepath.Join(dir, name))
	return err == nil && time.Since(fi.ModTime()) > d
}

// fetchEntry spools the first candidate of e the repository holds.
func (p *Prefetcher) fetchEntry(ctx context.Context, e entry, id RepoID) result {
	for _, n := range e.names {
		found, err := p.spoolOne(ctx, n, id)
		if err != nil {
			return result{key: e.key, err: err}
		}
		if found {
			return result{key: e.key, name: n}
		}
	}
	return result{key: e.key, missing: true}
}

// spoolOne fetches the segment name into the spool through Fetch's verified decode
// path: a temp file, its record appended, synced, then renamed to name. found is false
// when the repository lacks it.
func (p *Prefetcher) spoolOne(ctx context.Context, name string, id RepoID) (found bool, err error) {
	ctx, cancel := WithDeadline(ctx, p.Timeout)
	defer cancel()
	defer func() { err = Explain(ctx, err) }()
	f, err := wal.Parse(name)
	if err != nil {
		return false, err
	}
	o, err := p.Archive.Repo.OpenWAL(ctx, f)
	if errors.Is(err, storage.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	tmp, err := os.CreateTemp(p.Dir, tmpPrefix+name+"-*")
	if err != nil {
		return true, err
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()           // abandoned
			_ = os.Remove(tmp.Name()) // best effort: the error is reported
		}
	}()
	if err := copyWAL(tmp, o, f, make([]byte, 1<<20), p.Archive.systemID()); err != nil {
		return true, fmt.Errorf("%s: %w", o.Key(), err)
	}
	sum := o.Sum()
	rec := spoolRecord{Name: name, Size: sum.Size, Alg: sum.Alg, Checksum: fmt.Sprintf("%x", sum.Checksum[:]), Repo: id}
	if err := appendSpoolRecord(tmp, rec); err != nil {
		return true, err
	}
	// Synced here, off PostgreSQL's path, so that the wal-fetch serving it syncs cheaply.
	if err := tmp.Sync(); err != nil {
		return true, err
	}
	if err := tmp.Close(); err != nil {
		return true, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(p.Dir, name)); err != nil {
		return true, err
	}
	done = true
	return true, nil
}

// timelines caches what the prefetcher learnt of the repository's timelines.
type timelines struct {
	newest uint32 // the newest timeline found by probing history files
	spans  []wal.TimelineSpan
}

// history returns the history of the timeline PostgreSQL recovers towards with
// recovery_target_timeline = latest, as it finds it: the newest of the timelines
// after tli whose history files follow one another without a gap. A history that does
// not read or parse is left out (logged): the plan then follows tli alone.
func (t *timelines) history(ctx context.Context, a *Archive, tli uint32) []wal.TimelineSpan {
	start := max(t.newest, tli)
	newest := start
	var body []byte
	for probe := start + 1; probe != 0 && probe-start <= 64; probe++ {
		b, err := a.Repo.ReadHistory(ctx, probe)
		if err != nil {
			if !errors.Is(err, storage.ErrNotExist) {
				a.Log.Warn("prefetch: cannot read a timeline history", "timeline", probe, "err", err)
			}
			break
		}
		newest, body = probe, b
	}
	if newest == t.newest && t.spans != nil {
		return t.spans
	}
	if body == nil && newest > tli {
		b, err := a.Repo.ReadHistory(ctx, newest)
		if err != nil {
			return nil
		}
		body = b
	}
	if body == nil {
		t.newest, t.spans = tli, []wal.TimelineSpan{{TLI: tli, End: wal.EndOfTimeline}}
		return t.spans
	}
	spans, err := wal.ParseHistory(newest, body)
	if err != nil {
		a.Log.Warn("prefetch: timeline history does not parse", "timeline", newest, "err", err)
		return nil
	}
	t.newest, t.spans = newest, spans
	return spans
}

// AwaitInFlight waits while the prefetcher is writing the segment name into the spool
// dir, and reports whether it is there now: a wal-fetch that caught up with the
// prefetcher takes its copy rather than fetch and decode the segment a second time.
// It returns false at once when no prefetcher is writing name, as soon as the write
// ends without the file (the prefetcher failed or gave up: the caller fetches), when
// the prefetcher exits, and after at most max.
func AwaitInFlight(ctx context.Context, dir, name string, max time.Duration) bool {
	deadline := time.Now().Add(max)
	done := func() bool {
		fi, err := os.Lstat(filepath.Join(dir, name))
		return err == nil && fi.Mode().IsRegular()
	}
	for i := 0; ; i++ {
		if done() {
			return true
		}
		if !writing(dir, name) {
			// The write may have completed (renamed into place) between the two looks.
			return done()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		if i%25 == 24 {
			if running, err := PrefetcherRunning(dir); err != nil || !running {
				return false
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// writing reports whether a temp file of name is in the spool dir.
func writing(dir, name string) bool {
	m, err := filepath.Glob(filepath.Join(dir, tmpPrefix+name+"-*"))
	return err == nil && len(m) > 0
}
