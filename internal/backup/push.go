// Package backup takes online base backups: between pg_backup_start and
// pg_backup_stop it reads the data directory and every tablespace directly, streams
// the files into compressed tar parts uploaded in parallel, and writes the manifest
// that makes the backup exist last.
package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pagecheck"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/progress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/workpool"
)

// Source is the PostgreSQL session a backup runs in (pg.Conn).
type Source interface {
	Major() int
	Cluster(ctx context.Context) (pg.ClusterInfo, error)
	BackupStart(ctx context.Context, label string, fast bool) (wal.LSN, uint32, error)
	BackupStop(ctx context.Context) (pg.BackupStopResult, error)
	WALFileName(ctx context.Context, lsn wal.LSN) (string, error)
	// ControlCheckpoint is the last checkpoint in the server's own pg_control
	// (pg_control_checkpoint(): location, redo point, timeline).
	ControlCheckpoint(ctx context.Context) (pg.Control, error)
}

// StandbySource is a Source that may be a hot standby. A backup taken there reads the
// standby's data directory, names its WAL segments itself (pg_walfile_name does not
// run in recovery), and stops on the standby's recovery timeline.
type StandbySource interface {
	InRecovery(ctx context.Context) (bool, error)
	ReplayPaused(ctx context.Context) (bool, error)
	ReplayLSN(ctx context.Context) (wal.LSN, error)
	RecoveryTimeline(ctx context.Context) (uint32, error)
}

// Primary is the primary of the standby a backup is taken from (--primary-dsn). A
// standby cannot switch WAL: the primary completes the segment of the backup's stop
// point, and with Options.Fast checkpoints first, so that the standby's restartpoint,
// where the backup starts, is recent.
type Primary interface {
	InRecovery(ctx context.Context) (bool, error)
	SystemID(ctx context.Context) (uint64, error)
	CurrentLSN(ctx context.Context) (wal.LSN, error)
	SwitchWAL(ctx context.Context) (string, error)
	// Checkpoint runs CHECKPOINT and returns the location of the checkpoint record.
	Checkpoint(ctx context.Context) (wal.LSN, error)
}

// DefaultStandbyMaxLag is how far behind its primary a standby may have replayed for a
// backup to be taken there (Options.StandbyMaxLag).
const DefaultStandbyMaxLag = 1 << 30

// Options tune a backup.
type Options struct {
	// Primary, for a backup taken on a standby, is its primary (nil: the stop segment
	// is awaited until the primary completes it by itself, e.g. at archive_timeout).
	Primary Primary
	// StandbyMaxLag: a standby that has replayed more than this many bytes of WAL
	// less than its Primary is refused (0: DefaultStandbyMaxLag).
	StandbyMaxLag  int64
	DataDir        string
	Fast           bool          // immediate checkpoint at start
	PartSize       int64         // uncompressed bytes per tar part (a larger file makes a larger part)
	Concurrency    int           // parts built and uploaded at once
	ArchiveTimeout time.Duration // wait for the stop segment to reach the repository
	LockMaxAge     time.Duration // take over a backup lock older than this (0: repo.DefaultLockMaxAge)
	LockWait       time.Duration // wait this long for a held backup lock (0: fail at once)
	// Permanent marks the backup permanent once its manifest is stored, before the
	// backup lock is released: a delete, which takes the same lock, never sees the
	// backup without its mark.
	Permanent bool
	// Progress, if set, is called about once a second with bytes copied so far and
	// the total expected.
	Progress progress.Func
	// PingInterval is how often the backup session is checked while files are copied
	// and while the stop segment is awaited; 0 means DefaultPingInterval.
	PingInterval time.Duration
	// Incremental is IncrementalOff (or ""), IncrementalOn or IncrementalAuto: whether
	// the backup builds on the newest one, storing only what changed since.
	Incremental string
	// FullEvery is the most backups a chain holds under IncrementalAuto (0:
	// DefaultFullEvery).
	FullEvery int
	// ChecksumDelta makes an incremental backup read every file: size and
	// modification time judge nothing unchanged.
	ChecksumDelta bool
}

// DefaultPingInterval is how often a backup checks that PostgreSQL is still there.
const DefaultPingInterval = 3 * time.Second

// pingTimeout bounds one check of the backup session.
const pingTimeout = 10 * time.Second

// ErrServerGone means the backup session ended under the backup: PostgreSQL stopped,
// or the connection broke. pg_backup_stop can then never run, so the backup cannot
// be completed.
var ErrServerGone = errors.New("PostgreSQL stopped (or the connection was lost) during the backup: the backup is incomplete and was not recorded")

// Pinger is implemented by a Source that can check that its session is alive
// (pg.Conn). Without it, a lost server is noticed when the backup next talks to it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Pusher takes a backup into a repository.
type Pusher struct {
	Repo *repo.Repo
	Src  Source
	Log  *slog.Logger
	Opt  Options
	Now  func() time.Time
	// Stats holds the timings of the last Run.
	Stats Stats
}

// Stats are the timings of one backup.
type Stats struct {
	Start    time.Duration // pg_backup_start, its checkpoint included
	Walk     time.Duration // listing the data directory
	Copy     time.Duration // reading the files and uploading the parts
	Stop     time.Duration // pg_backup_stop
	WaitWAL  time.Duration // waiting until the stop segment is in the repository
	Manifest time.Duration // writing the manifest (the relation names' wait included)

	// Of an incremental backup: files not stored (unchanged since the base), stored as
	// changed pages, and stored whole.
	Unchanged, Paged, Whole atomic.Int64
}

// Rate is the copy's throughput in bytes per second: size over the copy alone, so that
// a spread checkpoint or the wait for WAL archiving does not count. It is 0 when no
// time was measured.
func Rate(size int64, copyTime time.Duration) float64 {
	if copyTime <= 0 {
		return 0
	}
	return float64(size) / copyTime.Seconds()
}

// Run takes one backup and returns its manifest, whose files are in m.List: the
// caller closes m. The backup exists only if Run
// returns nil; on failure the parts it uploaded are removed (best effort) and nothing
// can be mistaken for a good backup, since no manifest is written. When PostgreSQL
// stops (or the session breaks) during the backup, the error wraps ErrServerGone.
// The one exception is Options.Permanent: a complete backup that could not be marked
// permanent is returned with the error that says so, and is kept.
func (p *Pusher) Run(ctx context.Context) (*repo.Manifest, error) {
	list, err := repo.NewFileList("")
	if err != nil {
		return nil, err
	}
	m, err := p.run(ctx, list)
	if err != nil {
		err = p.explain(ctx, err)
	}
	if m == nil {
		_ = list.Close() // nothing refers to it
	}
	return m, err
}

// explain turns the failure of a backup whose session is gone into ErrServerGone,
// whatever the step that ran into it first ("broken pipe", "unexpected EOF").
func (p *Pusher) explain(ctx context.Context, err error) error {
	pinger, ok := p.Src.(Pinger)
	if !ok || errors.Is(err, ErrServerGone) || ctx.Err() != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	if perr := pinger.Ping(pctx); perr != nil {
		return fmt.Errorf("%w: %w", ErrServerGone, err)
	}
	return err
}

// watch runs fn, which must not use the backup session, with a context that is
// cancelled (cause ErrServerGone) as soon as the session stops answering, so that a
// stopped server ends the copy or the wait at once instead of at its end.
func (p *Pusher) watch(ctx context.Context, fn func(context.Context) error) error {
	pinger, ok := p.Src.(Pinger)
	if !ok {
		return fn(ctx)
	}
	interval := p.Opt.PingInterval
	if interval <= 0 {
		interval = DefaultPingInterval
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// The ping itself is not cancelled when fn ends (that would close the
			// session): stop waits for it.
			pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
			err := pinger.Ping(pctx)
			pcancel()
			if err != nil {
				cancel(fmt.Errorf("%w: %w", ErrServerGone, err))
				return
			}
		}
	}()
	err := fn(ctx)
	close(stop)
	wg.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, ErrServerGone) {
		return cause
	}
	return err
}

func (p *Pusher) run(ctx context.Context, list *repo.FileList) (*repo.Manifest, error) {
	now := p.Now
	if now == nil {
		now = time.Now
	}
	info, err := p.Src.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	dataDir := p.Opt.DataDir
	if dataDir == "" {
		dataDir = info.DataDirectory // the server's own: SHOW data_directory
	}
	ctl, err := pg.ReadControl(dataDir)
	if err != nil {
		return nil, err
	}
	if ctl.SystemID != info.SystemID {
		return nil, fmt.Errorf("--pgdata %s is cluster %d, but the server pgb connected to is cluster %d (data directory %s): point --pgdata and the connection at the same cluster",
			dataDir, ctl.SystemID, info.SystemID, info.DataDirectory)
	}
	standby, err := p.standby(ctx, info.SystemID)
	if err != nil {
		return nil, err
	}
	if _, err := p.Repo.EnsureIdentity(ctx, repo.Identity{
		SystemID: repo.SystemID(info.SystemID), PGVersion: p.Src.Major(), Created: now().UTC(),
		CreatedBy: "pgb", FirstWrite: "backup-push",
	}); err != nil {
		return nil, err
	}

	start := now().UTC()
	m := &repo.Manifest{Summary: repo.Summary{
		Name: start.Format("20060102T150405Z"), SystemID: repo.SystemID(info.SystemID), PGVersion: p.Src.Major(),
		DataChecksums: info.Checksums, WALSegSize: info.SegSize, StartTime: start, DataDir: info.DataDirectory,
		Compression: p.Repo.Codec().Name(), FromStandby: standby != nil,
	}, DataDirOwner: ownerOf(dataDir), List: list}
	lock, err := p.Repo.AcquireBackupLock(ctx, "backup-push", repo.LockOptions{MaxAge: p.Opt.LockMaxAge, Wait: p.Opt.LockWait, Log: p.Log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Release(context.WithoutCancel(ctx)); err != nil {
			p.Log.Warn("could not release the backup lock; the next backup-push may find it", "error", err)
		}
	}()
	if m.Name, err = p.freeName(ctx, m.Name); err != nil {
		return nil, err
	}
	b, err := p.chooseBase(ctx, m.SystemID, m.PGVersion, m.DataChecksums)
	if err != nil {
		return nil, err
	}

	ok := false
	defer func() {
		if !ok {
			p.cleanup(context.WithoutCancel(ctx), m.Name)
		}
	}()

	if !p.Opt.Fast {
		p.Log.Info("waiting for the checkpoint (spread; --fast to force it)")
	}
	p.Stats = Stats{}
	t0 := now()
	if standby != nil && p.Opt.Fast && p.Opt.Primary != nil {
		p.primaryCheckpoint(ctx, standby)
	}
	m.StartLSN, m.Timeline, err = p.Src.BackupStart(ctx, "pgb "+m.Name, p.Opt.Fast)
	if err != nil {
		return nil, err
	}
	p.Stats.Start = now().Sub(t0)
	if standby != nil {
		m.StartWAL = walFileName(m.Timeline, m.StartLSN, info.SegSize)
	} else if m.StartWAL, err = p.Src.WALFileName(ctx, m.StartLSN); err != nil {
		return nil, err
	}
	var inc *increment
	switch {
	case b == nil:
	case b.sum.Timeline != m.Timeline:
		p.Log.Info("taking a full backup: the timeline changed since the newest backup (a promotion or a recovery)",
			"backup", b.sum.Name, "its_timeline", b.sum.Timeline, "timeline", m.Timeline)
	case b.sum.StopLSN > m.StartLSN:
		// On a standby the backup starts at its last restartpoint, which may be older
		// than the newest backup's stop: no checkpoint replayed since.
		p.Log.Info("taking a full backup: this backup starts before the newest backup stopped (on a standby: no checkpoint replayed since; --primary-dsn with --fast has the primary make one)",
			"backup", b.sum.Name, "its_stop_lsn", b.sum.StopLSN, "start_lsn", m.StartLSN)
	default:
		inc = newIncrement(b, p.Opt.ChecksumDelta)
		m.Parent = b.sum.Name
	}
	p.Log.Info("backup started", "backup", m.Name, "start_lsn", m.StartLSN, "start_wal", m.StartWAL, "parent", m.Parent)
	if err := p.checkLive(ctx, dataDir, info.DataDirectory); err != nil {
		return nil, err
	}

	// The tablespaces as they are now that the backup has started: a tablespace
	// created since the first look must be followed too.
	if info, err = p.Src.Cluster(ctx); err != nil {
		return nil, err
	}
	known := map[uint32]string{}
	for _, ts := range info.Tablespaces {
		known[ts.OID] = ts.Location
	}
	open, err := clusterOpener(dataDir)
	if err != nil {
		return nil, err
	}
	tw := now()
	t, err := walk(dataDir, known, open)
	if err != nil {
		return nil, err
	}
	defer t.close()
	p.Stats.Walk = now().Sub(tw)
	for _, s := range t.skipped {
		p.Log.Warn("not following a link in pg_tblspc that is no tablespace of this cluster (pg_tablespace); it is not backed up", "link", s)
	}
	for _, d := range t.dirs {
		m.Dirs = append(m.Dirs, repo.Dir{Path: d.path, Mode: uint32(d.mode)})
	}
	for _, l := range t.links {
		m.Links = append(m.Links, repo.Link{Path: l.path, Target: l.target})
	}
	// The tablespaces are what the walk found under pg_tblspc, so that one created
	// while the backup started is restorable too; names come from the repo.
	names := map[uint32]string{}
	for _, ts := range info.Tablespaces {
		names[ts.OID] = ts.Name
	}
	for _, ts := range t.tablespaces {
		m.Tablespaces = append(m.Tablespaces, repo.Tablespace{OID: ts.oid, Name: names[ts.oid], Location: ts.location})
	}
	ck := p.pageChecker(m, info)
	t1 := now()
	if err := p.watch(ctx, func(ctx context.Context) error { return p.copyFiles(ctx, t, m, open, ck, inc) }); err != nil {
		return nil, err
	}
	p.Stats.Copy = now().Sub(t1)

	// The relation names are read and stored while the backup stops and its last WAL
	// segment is awaited; nothing is written under the backup's name once run returns.
	namesStored, abandonNames := p.startRelationNames(ctx, m.Name)
	defer abandonNames()
	ts := now()
	stop, err := p.Src.BackupStop(ctx)
	if err != nil {
		return nil, err
	}
	p.Stats.Stop = now().Sub(ts)
	m.StopLSN, m.Label, m.TablespaceMap, m.NextXID = stop.LSN, stop.Label, stop.TablespaceMap, stop.NextXID
	m.CorruptPages, m.Corrupt = ck.result(m.StopLSN)
	for _, c := range m.Corrupt {
		p.Log.Warn("pages failed their data checksum (read twice; no LSN of a write during the backup): the backup holds them as read",
			"file", c.Path, "blocks", c.Blocks)
	}
	m.StopTime = now().UTC()
	if standby != nil {
		if err := p.stopOnStandby(ctx, standby, m); err != nil {
			return nil, err
		}
	} else if m.StopWAL, err = p.Src.WALFileName(ctx, m.StopLSN); err != nil {
		return nil, err
	}
	tv := now()
	if err := p.watch(ctx, func(ctx context.Context) error { return p.waitForWAL(ctx, m.StopWAL, standby != nil) }); err != nil {
		return nil, err
	}
	tm := now()
	p.Stats.WaitWAL = tm.Sub(tv)
	namesStored()
	m.Sort()
	err = p.Repo.PutBackup(ctx, m)
	p.Stats.Manifest = now().Sub(tm)
	if err != nil {
		// The manifest may be stored all the same (a lost acknowledgement, then
		// failing retries): look before calling the backup failed or removing anything.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), manifestLookTimeout)
		defer cancel()
		stored, lerr := p.Repo.BackupRecorded(lctx, m)
		switch {
		case lerr == nil && stored:
			p.Log.Warn("writing the manifest reported an error, but the manifest is stored: the backup is complete", "backup", m.Name, "error", err)
		case lerr == nil:
			return nil, fmt.Errorf("write manifest: %w", err)
		default:
			ok = true // its state is unknown: remove nothing
			return nil, fmt.Errorf("write manifest: %w; whether it was stored could not be checked (%w): the backup's objects are left in place; pgb backup-list lists backup %s if it is complete",
				err, lerr, m.Name)
		}
	}
	ok = true
	if p.Opt.Permanent {
		if err := p.Repo.MarkPermanent(ctx, m.Name, now()); err != nil {
			return m, fmt.Errorf("backup %s is complete but not marked permanent (pgb backup-mark --permanent %s marks it): %w", m.Name, m.Name, err)
		}
	}
	return m, nil
}

// pageChecker is what checks the data checksums of the pages a backup of m reads:
// nil when the cluster has none, or pages or segments of a size pgb does not check.
func (p *Pusher) pageChecker(m *repo.Manifest, info pg.ClusterInfo) *pageChecker {
	if !m.DataChecksums {
		return nil
	}
	if info.BlockSize != pagecheck.BlockSize || info.SegmentBlocks != pagecheck.SegmentBlocks {
		p.Log.Warn("page checksums are not verified during this backup: pgb checks 8 KiB pages in 1 GiB segment files",
			"block_size", info.BlockSize, "blocks_per_segment", info.SegmentBlocks)
		return nil
	}
	return newPageChecker(m.StartLSN)
}

// manifestLookTimeout bounds the check whether a manifest whose write failed is stored.
const manifestLookTimeout = time.Minute

// liveChecks bounds how often checkLive reads both pg_control files again because a
// checkpoint completed while it read them.
const liveChecks = 5

// checkLive makes sure that dataDir is the directory the server runs on, not a copy
// of it (an old one, or another copy of the cluster that checkpointed later, such as a
// second standby on this host): the pg_control read from dataDir must show exactly the
// last checkpoint of the server's own pg_control (location, redo point, timeline). The
// server's is read before and after the directory's; when the two server reads differ,
// a checkpoint raced and all are read again, a bounded number of times. This holds
// whatever path the directory is reached by (symlinks, bind mounts, containers).
func (p *Pusher) checkLive(ctx context.Context, dataDir, serverDir string) error {
	var srv, disk pg.Control
	for i := 0; i < liveChecks; i++ {
		before, err := p.Src.ControlCheckpoint(ctx)
		if err != nil {
			return err
		}
		if disk, err = pg.ReadControl(dataDir); err != nil {
			return err
		}
		if srv, err = p.Src.ControlCheckpoint(ctx); err != nil {
			return err
		}
		if disk.SameCheckpoint(srv) {
			return nil
		}
		if before.SameCheckpoint(srv) {
			break // no checkpoint in between: the directory's pg_control is not the server's
		}
	}
	return fmt.Errorf("--pgdata %s is not the data directory the server runs on (%s): its pg_control shows the checkpoint at %s (redo %s, timeline %d), "+
		"the server's at %s (redo %s, timeline %d), so it is an old copy or another copy of this cluster; "+
		"leave --pgdata and PGDATA unset to read the server's data directory, or point --pgdata at it",
		dataDir, serverDir, disk.Checkpoint, disk.Redo, disk.Timeline, srv.Checkpoint, srv.Redo, srv.Timeline)
}

// waitForWAL waits until the backup's stop segment is in the repository: without it
// the backup cannot be made consistent.
func (p *Pusher) waitForWAL(ctx context.Context, name string, standby bool) error {
	f, err := wal.Parse(name)
	if err != nil {
		return err
	}
	err = p.Repo.WaitForWAL(ctx, f, p.Opt.ArchiveTimeout)
	if errors.Is(err, repo.ErrWALTimeout) {
		hint := "check archiving with pgb check"
		if standby {
			hint = "a backup taken on a standby needs its stop segment archived into this repository by the primary (archive_command) or by the standby " +
				"(archive_mode = always), and completed by the primary: give --primary-dsn to have pgb switch WAL there, or set its archive_timeout"
		}
		return fmt.Errorf("the backup's stop WAL segment %s did not reach the repository within %s (--archive-timeout): "+
			"without it the backup cannot be restored, so it was not recorded; %s", name, p.Opt.ArchiveTimeout, hint)
	}
	return err
}

// standby returns the source as a StandbySource when it is a hot standby in recovery
// (nil for a primary), once it has checked that a backup can be taken there: replay is
// not paused, and with a Primary, that is the same cluster and the standby is at most
// StandbyMaxLag behind it.
func (p *Pusher) standby(ctx context.Context, sysID uint64) (StandbySource, error) {
	s, ok := p.Src.(StandbySource)
	if !ok {
		return nil, nil
	}
	in, err := s.InRecovery(ctx)
	if err != nil {
		return nil, err
	}
	if !in {
		if p.Opt.Primary != nil {
			p.Log.Warn("--primary-dsn is for a backup taken on a standby; the server pgb connected to is a primary: it is not used")
		}
		return nil, nil
	}
	paused, err := s.ReplayPaused(ctx)
	if err != nil {
		return nil, err
	}
	if paused {
		return nil, errors.New("the standby's WAL replay is paused (pg_wal_replay_pause()): a backup there would end at the paused point, however late it stops; resume it with SELECT pg_wal_replay_resume(), or back up the primary")
	}
	if p.Opt.Primary == nil {
		p.Log.Info("backing up a standby: the backup is complete once the primary completes the WAL segment of its stop point and it is archived (--primary-dsn has pgb switch WAL on the primary)")
		return s, nil
	}
	if in, err := p.Opt.Primary.InRecovery(ctx); err != nil {
		return nil, fmt.Errorf("--primary-dsn: %w", err)
	} else if in {
		return nil, errors.New("--primary-dsn connects to a server in recovery (another standby), which cannot switch WAL: point it at the primary")
	}
	id, err := p.Opt.Primary.SystemID(ctx)
	if err != nil {
		return nil, fmt.Errorf("--primary-dsn: %w", err)
	}
	if id != sysID {
		return nil, fmt.Errorf("--primary-dsn connects to cluster %d, but the standby being backed up is cluster %d: point it at this standby's primary", id, sysID)
	}
	cur, err := p.Opt.Primary.CurrentLSN(ctx)
	if err != nil {
		return nil, fmt.Errorf("--primary-dsn: %w", err)
	}
	replayed, err := s.ReplayLSN(ctx)
	if err != nil {
		return nil, err
	}
	maxLag := p.Opt.StandbyMaxLag
	if maxLag <= 0 {
		maxLag = DefaultStandbyMaxLag
	}
	if cur > replayed && int64(cur-replayed) > maxLag {
		return nil, fmt.Errorf("the standby has replayed WAL up to %s, %d MiB behind its primary (at %s), more than --standby-max-lag (%d MiB): a backup there would lag as much; let it catch up, or back up the primary",
			replayed, int64(cur-replayed)>>20, cur, maxLag>>20)
	}
	return s, nil
}

// replayWait bounds how long a backup on a standby waits for it to replay the
// checkpoint its primary just made; replayPoll is how often it looks.
const (
	replayWait = time.Minute
	replayPoll = 50 * time.Millisecond
)

// primaryCheckpoint has the Primary checkpoint, then waits (up to replayWait) until the
// standby has replayed that checkpoint: the standby's restartpoint, where its backup
// starts, can only be at a checkpoint it replayed. Failing either, the backup starts
// at the standby's last restartpoint, which is correct, only older.
func (p *Pusher) primaryCheckpoint(ctx context.Context, s StandbySource) {
	at, err := p.Opt.Primary.Checkpoint(ctx)
	if err != nil {
		p.Log.Warn("the primary did not checkpoint: the standby's backup starts at its last restartpoint", "error", err)
		return
	}
	deadline := time.Now().Add(replayWait)
	for {
		replayed, err := s.ReplayLSN(ctx)
		if err == nil && replayed >= at {
			return
		}
		if err != nil || time.Now().After(deadline) {
			p.Log.Warn("the standby has not replayed the primary's checkpoint: its backup starts at its last restartpoint", "checkpoint", at, "replayed", replayed, "error", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(replayPoll):
		}
	}
}

// stopOnStandby names m's stop segment on the standby's recovery timeline, and has the
// Primary, if any, complete it.
func (p *Pusher) stopOnStandby(ctx context.Context, s StandbySource, m *repo.Manifest) error {
	tli, err := s.RecoveryTimeline(ctx)
	if err != nil {
		return err
	}
	// The standby followed a new timeline (or was promoted) during the backup: its
	// start and stop are on different timelines, which pgb does not record.
	start := labelTimeline(m.Label)
	if tli == 0 || tli != m.Timeline || start != 0 && start != m.Timeline {
		return fmt.Errorf("the standby changed timeline during the backup (started on timeline %d, label says %d, stops on %d): nothing was stored; take the backup again",
			m.Timeline, start, tli)
	}
	m.StopTimeline = tli
	m.StopWAL = walFileName(tli, m.StopLSN, m.WALSegSize)
	if p.Opt.Primary != nil {
		done, err := p.Opt.Primary.SwitchWAL(ctx)
		if err != nil {
			return fmt.Errorf("--primary-dsn: %w", err)
		}
		p.Log.Debug("the primary switched WAL for the standby's backup", "completed", done, "stop_wal", m.StopWAL)
	}
	return nil
}

// labelTimeline is the START TIMELINE a backup_label names (0: none).
func labelTimeline(label string) uint32 {
	for _, line := range strings.Split(label, "\n") {
		if v, ok := strings.CutPrefix(line, "START TIMELINE: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err == nil {
				return uint32(n)
			}
		}
	}
	return 0
}

// walFileName is pg_walfile_name(lsn) on timeline tli: the segment holding the byte
// before lsn (an LSN at a segment's start ends the segment before).
func walFileName(tli uint32, lsn wal.LSN, segSize uint64) string {
	seg := uint64(0)
	if lsn > 0 {
		seg = uint64(lsn-1) / segSize
	}
	return wal.SegmentFileName(tli, seg, segSize)
}

// freeName returns name, or name-2, name-3… when a backup already uses it (two
// backups in one second). It runs under the backup lock.
func (p *Pusher) freeName(ctx context.Context, name string) (string, error) {
	for i := 1; i < 100; i++ {
		cand := name
		if i > 1 {
			cand = fmt.Sprintf("%s-%d", name, i)
		}
		free, err := p.Repo.BackupNameFree(ctx, cand)
		if err != nil {
			return "", err
		}
		if free {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no free backup name near %s", name)
}

// cleanup removes the objects of a backup that did not complete, and says what it
// could not remove.
func (p *Pusher) cleanup(ctx context.Context, name string) {
	left, err := p.Repo.RemoveIncompleteBackup(ctx, name)
	switch {
	case errors.Is(err, repo.ErrBackupComplete):
		p.Log.Warn("the backup's manifest is stored after all: it was left in place; check it with pgb backup-list", "backup", name)
	case err != nil:
		p.Log.Warn("could not remove all objects of the incomplete backup; they are not a backup (no manifest) and can be deleted",
			"backup", name, "left", left, "error", err)
	}
}

// copyFiles streams every file into parts, Concurrency at a time, checking the
// data checksums of relation pages with ck (nil: not checked).
func (p *Pusher) copyFiles(ctx context.Context, t *tree, m *repo.Manifest, open openFunc, ck *pageChecker, inc *increment) error {
	var (
		mu    sync.Mutex
		nextN atomic.Int64
		done  atomic.Int64
	)
	stopProgress := progress.Start(p.Opt.Progress, &done, t.bytes, time.Second)
	defer stopProgress()
	w := &work{backup: m.Name, list: m.List, t: t, nextN: &nextN, done: &done, open: open, ck: ck, inc: inc}
	if inc != nil {
		lw, err := m.List.Writer(0)
		if err != nil {
			return err
		}
		w.unchanged = &unchangedList{w: lw}
	}
	err := workpool.Run(ctx, p.Opt.Concurrency, t.items(), func(ctx context.Context, items <-chan item) error {
		parts, err := p.worker(ctx, w, items)
		mu.Lock()
		m.Parts = append(m.Parts, parts...)
		mu.Unlock()
		return err
	})
	if err == nil && t.control != nil {
		// pg_control after every other file, in a part of its own (tree.control).
		last := make(chan item, 1)
		last <- item{big: *t.control}
		close(last)
		var parts []repo.Part
		parts, err = p.worker(ctx, w, last)
		m.Parts = append(m.Parts, parts...)
	}
	if w.unchanged != nil {
		if cerr := w.unchanged.w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	for _, pt := range m.Parts {
		m.StoredSize += pt.Stored
	}
	m.FileCount, m.Size = m.List.Count()
	return nil
}

// part is one tar stream on its way into the repository.
type part struct {
	repo.Part
	list *repo.FileListWriter // the part's manifest entries
	w    *repo.PartWriter
	cw   *countingWriter // between tar and w: where each file's header starts
	tw   *tar.Writer
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (p *Pusher) openPart(ctx context.Context, backup string, list *repo.FileList, n int) (*part, error) {
	lw, err := list.Writer(n)
	if err != nil {
		return nil, err
	}
	w, err := p.Repo.CreatePart(ctx, backup, n)
	if err != nil {
		_ = lw.Close() // the backup fails: the list goes with it
		return nil, err
	}
	pt := &part{Part: repo.Part{N: n, FileOffsets: true}, list: lw, w: w, cw: &countingWriter{w: w}}
	pt.tw = tar.NewWriter(pt.cw)
	return pt, nil
}

// offset is where the next file's tar header starts in the plain stream: the
// previous file's padding written first.
func (pt *part) offset() (int64, error) {
	if err := pt.tw.Flush(); err != nil {
		return 0, err
	}
	return pt.cw.n, nil
}

// close finishes the part and waits until the repository has it.
func (pt *part) close() error {
	if err := pt.list.Close(); err != nil {
		pt.w.Abort(err)
		return err
	}
	if err := pt.tw.Close(); err != nil {
		pt.w.Abort(err)
		return err
	}
	stored, err := pt.w.Close()
	pt.Stored = stored
	return err
}

// abort breaks the upload so that nothing of the part is stored.
func (pt *part) abort(cause error) {
	_ = pt.list.Close() // the backup fails: the list goes with it
	pt.w.Abort(cause)
}

// work is what the workers of one backup share.
type work struct {
	backup    string
	list      *repo.FileList
	t         *tree
	nextN     *atomic.Int64
	done      *atomic.Int64
	open      openFunc
	ck        *pageChecker
	inc       *increment     // nil: a full backup
	unchanged *unchangedList // the entries of files unchanged since the base (inc set)
}

// unchangedList is the manifest entries of the files an incremental backup does not
// store, added by every worker.
type unchangedList struct {
	mu sync.Mutex
	w  *repo.FileListWriter
}

func (u *unchangedList) add(f *repo.File) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.w.Add(f)
}

// worker copies files into parts, one part at a time, and adds their entries to the
// list. It returns the parts it completed.
func (p *Pusher) worker(ctx context.Context, w *work, items <-chan item) ([]repo.Part, error) {
	backup, list, t, nextN, done, open, ck := w.backup, w.list, w.t, w.nextN, w.done, w.open, w.ck
	var (
		parts []repo.Part
		cur   *part
		buf   = make([]byte, 256<<10)
	)
	fail := func(err error) ([]repo.Part, error) {
		if cur != nil {
			cur.abort(err)
		}
		return nil, err
	}
	one := func(e entry) error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		e.abs = e.where(t.root)
		var j judgement
		if w.inc != nil {
			var err error
			if j, err = w.inc.judge(e, open, buf, ck, done); err != nil {
				return err
			}
			if j.f != nil {
				defer func() { _ = j.f.Close() }() // read only
			}
			if j.kind == storeUnchanged {
				if j.file.Path == "" {
					return nil // vanished during the backup
				}
				p.Stats.Unchanged.Add(1)
				return w.unchanged.add(&j.file)
			}
			if j.kind == storePages {
				p.Stats.Paged.Add(1)
			} else {
				p.Stats.Whole.Add(1)
			}
		}
		if cur == nil {
			var err error
			if cur, err = p.openPart(ctx, backup, list, int(nextN.Add(1))); err != nil {
				return err
			}
		}
		off, err := cur.offset()
		if err != nil {
			return err
		}
		var (
			f repo.File
			n int64
		)
		if j.kind == storePages {
			f, n, err = copyPages(cur.tw, e, j, buf)
		} else {
			f, n, err = copyFile(cur.tw, e, buf, done, open, ck)
		}
		if err != nil {
			return err
		}
		if w.inc != nil {
			p.Log.Debug("incremental: stored", "file", f.Path, "pages", j.kind == storePages, "bytes", n, "size", f.Size)
		}
		f.Offset = off
		if n < 0 {
			return nil // vanished during the backup
		}
		f.Part = cur.N
		if err := cur.list.Add(&f); err != nil {
			return err
		}
		cur.Files++
		cur.Size += n
		if cur.Size >= p.Opt.PartSize {
			pt := cur
			cur = nil // closed either way: fail must not abort it again
			if err := pt.close(); err != nil {
				return err
			}
			parts = append(parts, pt.Part)
		}
		return nil
	}
	closeCur := func() error {
		if cur == nil {
			return nil
		}
		pt := cur
		cur = nil
		if err := pt.close(); err != nil {
			return err
		}
		parts = append(parts, pt.Part)
		return nil
	}
	// Small files go into parts of their own: a restore that needs only some of them
	// (a delta restore rewrites pg_control and postgresql.auto.conf every time) then
	// reads a few MiB rather than a part that also holds relation segments.
	small := false
	for it := range items {
		if (it.batch != nil) != small {
			if err := closeCur(); err != nil {
				return fail(err)
			}
			small = it.batch != nil
		}
		if err := t.each(it, one); err != nil {
			return fail(err)
		}
	}
	if err := closeCur(); err != nil {
		return fail(err)
	}
	return parts, ctx.Err()
}

// copyFile appends one file to a tar stream. It copies the size the file has when it
// is opened: a file that shrinks meanwhile is padded with zeros and one that grows is
// cut, as PostgreSQL's own base backup does; WAL replay repairs both. A file that
// vanished returns n < 0.
func copyFile(tw *tar.Writer, e entry, buf []byte, done *atomic.Int64, open openFunc, ck *pageChecker) (repo.File, int64, error) {
	f, err := open(e.abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return repo.File{}, -1, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return repo.File{}, 0, fmt.Errorf("open %s: %w (the cluster's owner cannot read it, so neither does the backup: make it readable by the data directory's owner, or remove it)", e.abs, err)
		}
		return repo.File{}, 0, fmt.Errorf("open %s: %w", e.abs, err)
	}
	defer func() { _ = f.Close() }() // read only
	fi, err := f.Stat()
	if err != nil {
		return repo.File{}, 0, fmt.Errorf("stat %s: %w", e.abs, err)
	}
	size := fi.Size()
	hdr := &tar.Header{Name: e.path, Size: size, Mode: int64(e.mode), ModTime: fi.ModTime().Truncate(time.Second), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return repo.File{}, 0, err
	}
	crc := crc32c.New()
	var copied int64
	shrunk := false
	for copied < size {
		want := min(int64(len(buf)), size-copied)
		read := 0
		if !shrunk {
			var rerr error
			read, rerr = io.ReadFull(f, buf[:want])
			switch {
			case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
				// The file shrank: the rest is zeros, even if it grows again meanwhile
				// (reading on would put its new bytes at the wrong offsets).
				shrunk = true
			case rerr != nil:
				return repo.File{}, 0, fmt.Errorf("read %s: %w", e.abs, rerr)
			}
		}
		clear(buf[read:want])
		n := int(want)
		ck.chunk(f, e.path, copied, buf[:read]) // before the checksum: a second read may replace a page
		crc.Write(buf[:n])
		if _, err := tw.Write(buf[:n]); err != nil {
			return repo.File{}, 0, err
		}
		copied += int64(n)
		done.Add(int64(n))
	}
	return repo.File{Path: e.path, Size: size, Mode: uint32(e.mode), MTime: fi.ModTime().UTC(), CRC: crc32c.Hex(crc.Sum32())}, size, nil
}
