package lookahead

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

// ErrArchiverFailed means the background archiver could not ship the segment; the
// error says why, in the archiver's words.
var ErrArchiverFailed = errors.New("the background archiver could not ship it")

// ErrArchiverGone means no archiver runs any more and none recorded the segment: the
// caller ships it itself.
var ErrArchiverGone = errors.New("the background archiver stopped without shipping it")

// Foreground is the wal-push call PostgreSQL makes for one segment, when look-ahead is
// on.
type Foreground struct {
	Spool  Spool
	WALDir string     // the data directory's pg_wal
	Repo   *repo.Repo // the repository wal-push was given
	// Start starts a background archiver (detached, outliving the call) and returns a
	// channel closed when that process has ended.
	Start func() (exited <-chan struct{}, err error)
	Log   *slog.Logger
	// Poll is how often Await looks for the record; Liveness how often it checks that
	// an archiver still runs.
	Poll, Liveness time.Duration
}

const (
	defaultFGPoll   = 2 * time.Millisecond
	defaultLiveness = 50 * time.Millisecond
)

// Applies reports whether look-ahead covers the file at path: a plain segment in
// pg_wal that PostgreSQL has marked ready. Other files (.history, .partial, .backup, a
// segment outside pg_wal, or one pgb is called for by hand) are pushed by the call
// itself.
func (f *Foreground) Applies(path string) bool {
	name := filepath.Base(path)
	if !segmentName(name) {
		return false
	}
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return false
	}
	walDir, err := os.Stat(f.WALDir)
	if err != nil || !os.SameFile(dir, walDir) {
		return false
	}
	_, err = os.Stat(filepath.Join(f.WALDir, "archive_status", name+".ready"))
	return err == nil
}

// Recorded notes the call (Spool.MarkCalled) and reports whether the segment at path is already durable in the
// repository: a record for it holds for this file (same device, inode, size and
// modification time), this repository (location and identity document) and the
// object there (one Stat: it exists with the recorded size). A record that does not
// hold is removed. An error means the check itself could not be made.
func (f *Foreground) Recorded(ctx context.Context, path string) (bool, error) {
	name := filepath.Base(path)
	if err := f.Spool.MarkCalled(name); err != nil {
		f.logger().Debug("look-ahead: cannot note the call", "file", name, "error", err)
	}
	rec, err := f.Spool.ReadRecord(name)
	if errors.Is(err, ErrNoRecord) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	why, err := f.holds(ctx, path, rec)
	if err != nil {
		return false, err
	}
	if why != "" {
		f.logger().Debug("record not trusted", "file", name, "reason", why)
		_ = f.Spool.RemoveRecord(name) // best effort: the push that follows rewrites it
		return false, nil
	}
	return true, nil
}

// holds says why rec does not hold for the file at path, "" when it does.
func (f *Foreground) holds(ctx context.Context, path string, rec Record) (string, error) {
	src, err := StatSource(path)
	if err != nil {
		return "", err
	}
	if src != rec.Source {
		return "recorded for another version of the file", nil
	}
	if rec.Repo.Location != f.Repo.Destination() {
		return "recorded for another repository", nil
	}
	wf, err := wal.Parse(rec.Segment)
	if err != nil {
		return "", err
	}
	// The identity document and the object are asked for at once: on object storage
	// each is a request, and a call's time is their latency.
	type identity struct {
		id  repo.Identity
		err error
	}
	idc := make(chan identity, 1)
	go func() {
		id, err := f.Repo.Identity(ctx)
		idc <- identity{id, err}
	}()
	stored, serr := f.Repo.StatWAL(ctx, wf)
	got := <-idc
	if errors.Is(got.err, repo.ErrNoIdentity) {
		return "the repository has no identity document", nil
	}
	if got.err != nil {
		return "", got.err
	}
	if !MakeRepoID(f.Repo.Destination(), got.id).Equal(rec.Repo) {
		return "recorded for a repository since created anew", nil
	}
	if err := serr; err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return "the object is not in the repository", nil
		}
		return "", err
	}
	if stored != rec.Stored {
		return fmt.Sprintf("the object holds %d bytes, %d recorded", stored, rec.Stored), nil
	}
	return "", nil
}

// Await has the background archiver ship the segment at path and waits until its
// record appears (nil), the archiver records an error for it (an error wrapping
// ErrArchiverFailed; an error recorded before the call is cleared first: the call is
// the retry the archiver waits for), no archiver runs any more without a record (ErrArchiverGone), or
// ctx ends. It starts an archiver when none runs.
func (f *Foreground) Await(ctx context.Context, path string) error {
	name := filepath.Base(path)
	// An archiver shipping to another repository (started before the configuration
	// changed) is stopped; this call ships its segment itself rather than wait for a
	// record it would not trust or report an error that is not its repository's.
	if f.Spool.StopStale(f.Repo.Destination(), f.logger()) {
		return fmt.Errorf("%w: it ships to another repository", ErrArchiverGone)
	}
	// An error recorded before this call is stale: this call is the retry it waited for.
	// Look-ahead is only a speed-up: when the spool cannot be cleaned or no archiver can
	// be started, the call ships its segment itself.
	if err := f.Spool.ClearError(name); err != nil {
		f.logger().Warn("look-ahead off for this call: pushing the segment itself", "error", err)
		return fmt.Errorf("%w: %w", ErrArchiverGone, err)
	}
	poll, liveness := f.Poll, f.Liveness
	if poll <= 0 {
		poll = defaultFGPoll
	}
	if liveness <= 0 {
		liveness = defaultLiveness
	}
	var exited <-chan struct{}
	if !f.Spool.ArchiverRunning() {
		var err error
		if exited, err = f.Start(); err != nil {
			f.logger().Warn("could not start the background archiver: pushing the segment itself", "error", err)
			return fmt.Errorf("%w: it could not be started: %w", ErrArchiverGone, err)
		}
	}
	w := newWatcher(string(f.Spool), poll)
	defer w.close()
	lastLive := time.Now()
	for {
		if done, err := f.recordHolds(ctx, path); done || err != nil {
			return err
		}
		if msg, ok := f.Spool.ReadError(name); ok {
			if f.Spool.StopStale(f.Repo.Destination(), f.logger()) {
				return fmt.Errorf("%w: it ships to another repository", ErrArchiverGone)
			}
			// Left in place: it keeps the archiver from retrying the segment until
			// PostgreSQL's next call for it, which clears it first.
			return fmt.Errorf("%w: %s", ErrArchiverFailed, msg)
		}
		if time.Since(lastLive) >= liveness {
			lastLive = time.Now()
			if !running(exited) && !f.Spool.ArchiverRunning() {
				// The archiver may have written the record just before it ended.
				if done, err := f.recordHolds(ctx, path); done || err != nil {
					return err
				}
				return ErrArchiverGone
			}
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		w.wait(ctx, liveness-time.Since(lastLive))
	}
}

// recordHolds is Await's look at the record of the segment at path: done is false
// while there is none. A record that does not hold for this call (written for another
// repository, or another version of the file) ends the wait with ErrArchiverGone: this
// call ships the segment itself rather than wait for a record it would never trust.
func (f *Foreground) recordHolds(ctx context.Context, path string) (done bool, err error) {
	rec, err := f.Spool.ReadRecord(filepath.Base(path))
	if errors.Is(err, ErrNoRecord) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	why, err := f.holds(ctx, path, rec)
	if err != nil {
		return true, err
	}
	if why != "" {
		return true, fmt.Errorf("%w: its record does not hold here: %s", ErrArchiverGone, why)
	}
	return true, nil
}

func (f *Foreground) logger() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

// running reports whether the process whose end exited signals still runs.
func running(exited <-chan struct{}) bool {
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}
