// Package drill proves that a backup restores: it restores what pgb restore would
// into a scratch directory, through the same engine (restore.Plan, restore.Restorer),
// starts a private PostgreSQL on it, waits for recovery to reach the target, runs
// checks, measures the recovery time and the data loss, and removes everything.
package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/internal/pgserver"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/window"
)

// ErrFailed means the drill ran and something failed: recovery did not reach the
// target, or a check did not pass. The report says what.
var ErrFailed = errors.New("drill failed")

// Options are what a drill does.
type Options struct {
	Backup         string          // "" : the newest that reaches the target
	Target         *restore.Target // the recovery target; ToEnd for the end of the archive
	RestoreCommand string          // restore_command the drilled server runs
	Scratch        string          // "" : a new temporary directory
	Keep           bool            // leave the server running and the scratch dir
	Timeout        time.Duration   // bound on the wait for recovery
	CheckTimeout   time.Duration   // bound on the checks, all together; 0: none
	PGBin          string          // --pg-bin, "" to search
	Owner          string          // --owner, "" to choose as restore does
	User           string          // database user to connect as; "" : the server's OS user name
	Checks         []Statement     // --check-sql
	Concurrency    int
	Poll           time.Duration // interval between polls of the server (default 100ms)
	Log            *slog.Logger
	// Events gets one line per step ("server started, pid N"); Progress, when set,
	// gets the replay position while waiting (a terminal).
	Events   io.Writer
	Progress io.Writer
	// BeforeStart, when set, runs once the backup is restored, before the server
	// starts (a test hook: it can hold the drill there).
	BeforeStart func(ctx context.Context) error
	// AfterStart, when set, runs once the server has started (a test hook: it can
	// hold the drill there until its context is cancelled).
	AfterStart func(ctx context.Context) error
	// OwnerWarning, when set, says what the server's OS user (nil: pgb's own) lacks
	// to run restore_command, "" if nothing (pgb restore's check of --config).
	OwnerWarning func(o *restore.Owner) string
	// AtTarget, when set, runs on the running copy once recovery reached the target,
	// before the checks (pgb extract dumps tables there); its error fails Run.
	AtTarget func(ctx context.Context, c *Copy) error
	// NoChecks skips the checks (connections, amcheck, --check-sql).
	NoChecks bool
}

// Run drills rp. The report is returned also on failure, once a drill started: err
// wraps ErrFailed when the drill ran but failed.
func Run(ctx context.Context, rp *repo.Repo, opt Options) (rep *Report, err error) {
	if opt.Poll <= 0 {
		opt.Poll = 100 * time.Millisecond
	}
	started := time.Now()
	scratch, created, err := makeScratch(opt.Scratch)
	if err != nil {
		return nil, err
	}
	d := &drill{rp: rp, opt: opt, scratch: scratch}
	rep = &Report{Started: started.UTC(), Scratch: scratch, Checks: []CheckResult{}, Warnings: []string{}}
	d.rep = rep
	if !created {
		if d.orig, err = statDir(scratch); err != nil {
			return nil, err
		}
	}
	for _, l := range findLeftovers(os.TempDir(), scratch, os.Geteuid(), orphanedPostgres) {
		d.warn(l.String())
	}
	defer func() {
		if d.kept(ctx) {
			return
		}
		d.cleanup(created)
	}()
	err = d.run(ctx)
	if d.kept(ctx) {
		data := filepath.Join(scratch, "data")
		uid, gid := -1, -1
		if d.owner != nil {
			uid, gid = d.owner.UID, d.owner.GID
		}
		rep.Kept = &Kept{DataDir: data, Socket: scratch, Port: d.srv.Port, Pid: d.srv.Pid(),
			Connect: fmt.Sprintf("psql -h %s -p %d -U %s postgres", shellQuote(scratch), d.srv.Port, shellQuote(d.user)),
			Stop:    stopCommand(d.srv.Bin, data, scratch, created, os.Geteuid(), uid, gid)}
		if o := d.orig; o != nil {
			rep.Kept.Stop += fmt.Sprintf(" && chown %d:%d %s && chmod %o %s", o.uid, o.gid, shellQuote(scratch), o.mode, shellQuote(scratch))
		}
	}
	rep.Finished = time.Now().UTC()
	rep.OK = err == nil
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}

type drill struct {
	rp      *repo.Repo
	opt     Options
	scratch string
	rep     *Report
	srv     *pgserver.Server
	user    string
	owner   *restore.Owner
	orig    *dirState      // a --scratch that existed: its mode and owner, put back afterwards
	st      *status.Report // pgb status, gathered once before the restore
	win     *window.Window // the window the drill recovers in, nil if unknown
}

// kept says whether --keep leaves the server running: given, not interrupted, and the
// server still runs (a failed drill is kept too, to look at it).
func (d *drill) kept(ctx context.Context) bool {
	if !d.opt.Keep || ctx.Err() != nil || d.srv == nil {
		return false
	}
	select {
	case <-d.srv.Exited():
		return false
	default:
		return true
	}
}

// warn adds a warning to the report and logs it.
func (d *drill) warn(w string) {
	d.rep.Warnings = append(d.rep.Warnings, w)
	if d.opt.Log != nil {
		d.opt.Log.Warn(w)
	}
}

func (d *drill) event(format string, a ...any) {
	if d.opt.Events != nil {
		_, _ = fmt.Fprintf(d.opt.Events, "drill: "+format+"\n", a...)
	}
}

// makeScratch is dir made or checked empty, or a new temporary directory. A path
// holding a comma is refused: PostgreSQL's unix_socket_directories and libpq's host
// read it as a list, and the socket is in that directory.
func makeScratch(dir string) (abs string, created bool, err error) {
	if dir == "" {
		if strings.Contains(os.TempDir(), ",") {
			return "", false, fmt.Errorf("the temporary directory %s holds a comma, which PostgreSQL and libpq read as a list separator: set TMPDIR or give --scratch without one", os.TempDir())
		}
		d, err := os.MkdirTemp("", "pgb-drill-")
		return d, true, err
	}
	abs, err = filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	if strings.Contains(abs, ",") {
		return "", false, fmt.Errorf("--scratch %s holds a comma, which PostgreSQL and libpq read as a list separator: give a path without one", abs)
	}
	if err := restore.CheckEmpty(abs, "--scratch"); err != nil {
		return "", false, fmt.Errorf("%w: the drill needs an empty or absent scratch directory", err)
	}
	if _, err := os.Stat(abs); os.IsNotExist(err) {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return "", false, err
		}
		return abs, true, nil
	}
	return abs, false, nil
}

// cleanup stops the server and removes what the drill wrote: the scratch dir itself
// when the drill created it, else its content, and puts the given directory's mode
// and owner back. What it could not remove is a warning: the drill's result stands.
func (d *drill) cleanup(created bool) {
	if d.srv != nil {
		d.srv.Stop(30 * time.Second)
	}
	if err := removeScratch(d.scratch, created, d.orig, os.RemoveAll); err != nil {
		d.warn(fmt.Sprintf("scratch directory %s not fully cleaned up: %v", d.scratch, err))
	}
}

func (d *drill) run(ctx context.Context) error {
	m, target, err := restore.Plan(ctx, d.rp, d.opt.Log, d.opt.Backup, d.opt.Target)
	if errors.Is(err, restore.ErrArchiveCut) {
		// Recovery to the end would stop short of archived WAL: a failed drill, as
		// endWindow finds a cut with nothing archived after it.
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	if err != nil {
		return err
	}
	defer func() { _ = m.Close() }() // its file list, a temporary file
	if target.Kind != restore.ToEnd && target.Action != "pause" {
		target.Action = "pause" // the checks run at the target, read-only
	}
	d.rep.Backup = BackupUsed{Name: m.Name, Timeline: m.Timeline, StartLSN: m.StartLSN, StopLSN: m.StopLSN,
		StopTime: m.StopTime, Size: m.Size, PGVersion: m.PGVersion}
	d.rep.Target = target.String()
	// The end of the archive must be reachable from the backup: a missing or damaged
	// segment after it ends recovery early, and PostgreSQL promotes there as if the
	// archive ended. That is a failed drill, named before anything is restored.
	var win *window.Window
	if target.Kind == restore.ToEnd {
		if win, err = d.endWindow(ctx, m.Name); err != nil {
			return err
		}
	} else {
		d.gather(ctx, m.Name)
	}
	bin, err := pgserver.FindBin(ctx, m.PGVersion, d.opt.PGBin)
	if err != nil {
		return err
	}
	if err := d.chooseOwner(m); err != nil {
		return err
	}
	if d.opt.OwnerWarning != nil {
		if w := d.opt.OwnerWarning(d.owner); w != "" {
			d.warn(w)
		}
	}
	if err := d.tablespaceParent(m); err != nil {
		return err
	}
	data := filepath.Join(d.scratch, "data")
	t0 := time.Now()
	r := &restore.Restorer{Repo: d.rp, Log: d.opt.Log, Opt: restore.Options{DataDir: data, Owner: d.owner,
		Concurrency: d.opt.Concurrency, TablespaceMap: scratchTablespaces(m, d.scratch), ContainLinks: true,
		Recovery: &restore.Recovery{RestoreCommand: d.opt.RestoreCommand, Target: target, ArchiveOff: true}}}
	if err := r.Run(ctx, m); err != nil {
		return fmt.Errorf("restore of backup %s: %w", m.Name, err)
	}
	for _, l := range r.Contained {
		d.warn(fmt.Sprintf("the data directory's link %s -> %s is an empty directory in the copy (a drill writes nowhere outside its scratch directory): what the source keeps there is not in the copy", l.Path, l.Target))
	}
	d.rep.RTO.RestoreSeconds = time.Since(t0).Seconds()
	d.rep.RTO.BytesRestored = m.Size
	d.event("restored backup %s (%d bytes) in %.1f s", m.Name, m.Size, d.rep.RTO.RestoreSeconds)
	if err := d.ensureConf(data); err != nil {
		return err
	}
	if d.opt.BeforeStart != nil {
		if err := d.opt.BeforeStart(ctx); err != nil {
			return err
		}
	}
	if err := d.start(bin); err != nil {
		return err
	}
	if d.opt.AfterStart != nil {
		if err := d.opt.AfterStart(ctx); err != nil {
			return err
		}
	}
	t1 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, d.opt.Timeout)
	defer cancel()
	end, err := d.waitRecovery(wctx, target)
	if err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			err = fmt.Errorf("%w: recovery did not finish within --timeout %s", ErrFailed, d.opt.Timeout)
		}
		return err
	}
	d.rep.RTO.ReplaySeconds = time.Since(t1).Seconds()
	d.rep.RTO.TotalSeconds = time.Since(t0).Seconds()
	d.rep.Reached = end
	if win != nil && shortOfEnd(end.Promoted, end.ReplayLSN, win) {
		return fmt.Errorf("%w: recovery stopped at %s, before the end of the archive's last record at %s (%s): %s",
			ErrFailed, end.ReplayLSN, win.LastRecord, win.LastSegment, d.logTail())
	}
	if end.ReplayLSN > m.StartLSN {
		d.rep.RTO.BytesReplayed = int64(end.ReplayLSN - m.StartLSN)
	}
	if d.rep.RTO.TotalSeconds > 0 {
		d.rep.RTO.MBPerSecond = float64(d.rep.RTO.BytesRestored+d.rep.RTO.BytesReplayed) / d.rep.RTO.TotalSeconds / (1 << 20)
	}
	d.event("recovery reached %s in %.1f s", end.ReplayLSN, d.rep.RTO.ReplaySeconds)
	d.rpo(target)
	if d.opt.AtTarget != nil {
		c := &Copy{Bin: bin, SockDir: d.scratch, Port: d.srv.Port, User: d.user, Promoted: end.Promoted, Target: target.String()}
		if err := d.opt.AtTarget(ctx, c); err != nil {
			return err
		}
	}
	if d.opt.NoChecks {
		return nil
	}
	d.runChecks(ctx, bin)
	for _, c := range d.rep.Checks {
		if !c.Passed {
			return fmt.Errorf("%w: check %s: %s", ErrFailed, c.Name, c.Detail)
		}
	}
	return nil
}

// scratchTablespaces maps every tablespace of m into scratch/tablespaces/OID: a drill
// never writes outside its scratch directory (the source's tablespace directories may
// be on this very host).
func scratchTablespaces(m *repo.Manifest, scratch string) map[string]string {
	out := map[string]string{}
	for _, t := range m.Tablespaces {
		out[t.Location] = filepath.Join(scratch, "tablespaces", strconv.FormatUint(uint64(t.OID), 10))
	}
	return out
}

// tablespaceParent makes scratch/tablespaces, the server user's, when m has
// tablespaces: restore makes each tablespace directory, not its parent.
func (d *drill) tablespaceParent(m *repo.Manifest) error {
	if len(m.Tablespaces) == 0 {
		return nil
	}
	p := filepath.Join(d.scratch, "tablespaces")
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	if d.owner != nil {
		return os.Lchown(p, d.owner.UID, d.owner.GID) // the scratch dir is the server user's: never through a link
	}
	return nil
}

// chooseOwner picks the server's OS user as restore does (restore.ChooseOwner); a
// scratch directory owned by someone other than root gives its owner.
func (d *drill) chooseOwner(m *repo.Manifest) error {
	req := restore.OwnerRequest{EUID: os.Geteuid(), Flag: d.opt.Owner, Recorded: m.DataDirOwner,
		Dir: filepath.Join(d.scratch, "data"), Users: restore.HostUsers}
	if fi, err := os.Stat(d.scratch); err == nil && d.opt.Owner == "" {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			req.Recorded = nil // the parent's owner: the scratch dir's
		}
	}
	o, err := restore.ChooseOwner(req)
	if err != nil {
		return err
	}
	d.owner = o
	uid := os.Geteuid()
	if o != nil {
		uid = o.UID
		if err := os.Chown(d.scratch, o.UID, o.GID); err != nil {
			return fmt.Errorf("give the scratch directory to the server's user: %w", err)
		}
	}
	if err := os.Chmod(d.scratch, 0o700); err != nil {
		return err
	}
	d.user = d.opt.User
	if d.user == "" {
		u, err := user.LookupId(strconv.Itoa(uid))
		if err != nil {
			return fmt.Errorf("name of the server's OS user %d: %w (give the database user with --user)", uid, err)
		}
		d.user = u.Username
	}
	return nil
}

// ensureConf writes an empty postgresql.conf into the restored data directory when
// the backup holds none: a cluster configured outside its data directory (Debian's
// /etc/postgresql/...) has none to back up, and postgres does not start without one.
// The copy then runs with PostgreSQL's defaults and the drill's own settings; the
// report says so.
func (d *drill) ensureConf(data string) error {
	p := filepath.Join(data, "postgresql.conf")
	if _, err := os.Lstat(p); err == nil || !os.IsNotExist(err) {
		return err
	}
	const text = "# Written by pgb drill: the backup holds no postgresql.conf (the source keeps its\n" +
		"# configuration outside its data directory). PostgreSQL's defaults apply.\n"
	if err := createOwned(p, []byte(text), d.owner, false); err != nil {
		return err
	}
	w := "the backup holds no postgresql.conf (the source's configuration is outside its data directory, " +
		"e.g. /etc/postgresql on Debian): the copy ran with PostgreSQL's defaults and the drill's settings, not the source's"
	d.warn(w)
	return nil
}

// start writes a pg_hba.conf that lets local socket connections in (the socket
// directory is the server user's, mode 0700) and starts the server. The scratch
// directory is the server user's by now: the file is made new, never through a link
// (createOwned).
func (d *drill) start(bin string) error {
	port, err := pgserver.FreePort()
	if err != nil {
		return err
	}
	hba := filepath.Join(d.scratch, "drill_hba.conf")
	if err := createOwned(hba, []byte("local all all trust\n"), d.owner, true); err != nil {
		return err
	}
	s := &pgserver.Server{Bin: bin, DataDir: filepath.Join(d.scratch, "data"), SockDir: d.scratch, Port: port,
		HBAFile: hba, LogFile: filepath.Join(d.scratch, "postgres.log"), Major: d.rep.Backup.PGVersion}
	if d.owner != nil {
		s.Cred = &syscall.Credential{Uid: uint32(d.owner.UID), Gid: uint32(d.owner.GID), Groups: []uint32{}}
	}
	if err := s.Start(); err != nil {
		return err
	}
	d.srv = s
	d.event("server started, pid %d, data directory %s", s.Pid(), s.DataDir)
	return nil
}

// waitRecovery polls the server until recovery reached the target: promoted (the end
// of the archive) or paused at it.
func (d *drill) waitRecovery(ctx context.Context, target restore.Target) (Reached, error) {
	tick := time.NewTicker(d.opt.Poll)
	defer tick.Stop()
	var goal wal.LSN
	if d.opt.Progress != nil {
		goal = d.goalLSN(ctx, target)
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return Reached{}, ctx.Err()
		case <-d.srv.Exited():
			return Reached{}, fmt.Errorf("%w: the server stopped during recovery (%w): %s", ErrFailed, d.srv.ExitErr(), d.logTail())
		case <-tick.C:
		}
		if conn == nil {
			c, err := pgx.Connect(ctx, d.srv.DSN(d.user, "postgres"))
			if err != nil {
				if ctx.Err() != nil || notReady(err) {
					continue // not consistent yet
				}
				return Reached{}, pollError(err, d.user)
			}
			conn = c
		}
		var inRecovery bool
		var paused string
		var lsn *string
		// pg_get_wal_replay_pause_state() is PostgreSQL 14+ (it tells a pause
		// requested from one reached); before, pg_is_wal_replay_paused() says it.
		q := `SELECT pg_is_in_recovery(),
			CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END,
			pg_last_wal_replay_lsn()::text`
		if d.rep.Backup.PGVersion < 14 {
			q = `SELECT pg_is_in_recovery(),
			CASE WHEN pg_is_in_recovery() AND pg_is_wal_replay_paused() THEN 'paused' ELSE '' END,
			pg_last_wal_replay_lsn()::text`
		}
		err := conn.QueryRow(ctx, q).Scan(&inRecovery, &paused, &lsn)
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil || notReady(err) {
				continue
			}
			return Reached{}, pollError(err, d.user)
		}
		if d.opt.Progress != nil && lsn != nil {
			_, _ = fmt.Fprint(d.opt.Progress, progressLine(*lsn, d.rep.Backup.StartLSN, goal))
		}
		done, why := settled(inRecovery, paused, target.Kind == restore.ToEnd)
		if !done {
			continue
		}
		if why != "" {
			return Reached{}, fmt.Errorf("%w: %s: %s", ErrFailed, why, d.logTail())
		}
		if d.opt.Progress != nil {
			_, _ = fmt.Fprintln(d.opt.Progress)
		}
		r := Reached{Promoted: !inRecovery}
		var ts *time.Time
		if err := conn.QueryRow(ctx, `SELECT pg_last_xact_replay_timestamp(),
			COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text`).Scan(&ts, &lsn); err != nil {
			return r, fmt.Errorf("read the point reached: %w", err)
		}
		if ts != nil {
			u := ts.UTC()
			r.LastCommit = &u
		}
		if lsn != nil {
			if l, err := wal.ParseLSN(*lsn); err == nil {
				r.ReplayLSN = l
			}
		}
		if inRecovery {
			return r, d.checkStopped(ctx, target, r.ReplayLSN)
		}
		return r, nil
	}
}

// settled says what one poll of the server means: recovery still running (not
// done), or done, and then why the drill fails ("" : it reached its target).
// Recovery to the end promotes; a pause short of it is PostgreSQL stopping for a
// reason of its own (e.g. settings lower than the source's), never the end of the
// archive. Recovery to a target pauses there (the drill sets pause): a promoted copy
// did not reach it — PostgreSQL 12 promotes at the end of the WAL when the target
// was not reached (13 and later exit with a FATAL).
func settled(inRecovery bool, paused string, toEnd bool) (done bool, why string) {
	switch {
	case inRecovery && paused != "paused":
		return false, ""
	case inRecovery && toEnd:
		return true, "recovery paused before the end of the archive"
	case !inRecovery && !toEnd:
		return true, "recovery ended without pausing at the target (the copy was promoted at the end of the WAL: the target was not reached)"
	}
	return true, ""
}

// shortOfEnd says whether recovery to the end of the archive, promoted or not, having
// replayed up to replayed (pg_last_wal_replay_lsn: the end of the last record
// replayed), stopped before the end of window w's last record. A window whose end is
// unknown is judged by its last record's start.
func shortOfEnd(promoted bool, replayed wal.LSN, w *window.Window) bool {
	end := w.EndLSN
	if end == 0 {
		end = w.LastRecord
	}
	return !promoted || replayed < end
}

func (d *drill) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.scratch, "postgres.log"))
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

// endWindow is the recoverable window (as pgb status computes it) that backup lies
// in, when recovery from it can reach the end of the archive; otherwise an error
// wrapping ErrFailed that names where recovery would stop and the gap.
func (d *drill) endWindow(ctx context.Context, backup string) (*window.Window, error) {
	st, err := status.Gather(ctx, d.rp, status.Options{Now: time.Now(), Log: d.opt.Log})
	if err != nil {
		return nil, err
	}
	d.st = st
	for _, w := range st.Windows {
		if w.Backup != backup && !slices.Contains(w.Backups, backup) {
			continue
		}
		if !w.CutByGap && !w.EndOfWAL {
			d.win = w
			return w, nil
		}
		why, dropped := "its last segment ends early with zeros", false
		for _, g := range st.Gaps {
			if !w.EndOfWAL && position(g.From) > position(w.LastSegment) {
				why, dropped = restore.DescribeGap(g), g.Dropped
				break
			}
		}
		if dropped {
			why += "; no restore can cross dropped WAL: drill to a --target within the window, or take a new base backup, which starts a window after the drop"
		}
		return nil, fmt.Errorf("%w: recovery from backup %s cannot reach the end of the archive: it stops after %s, cut by %s; pgb status shows the window",
			ErrFailed, backup, w.LastSegment, why)
	}
	return nil, fmt.Errorf("%w: backup %s is in no recoverable window (pgb status shows why)", ErrFailed, backup)
}

// position is a segment name's place in the WAL, whatever its timeline.
func position(seg string) string {
	if len(seg) < 24 {
		return seg
	}
	return seg[8:24]
}

// gather is what pgb status shows, once, before the restore, and the window backup
// lies in, for the RPO; a failure only leaves the RPO unmeasured.
func (d *drill) gather(ctx context.Context, backup string) {
	st, err := status.Gather(ctx, d.rp, status.Options{Now: time.Now(), Log: d.opt.Log})
	if err != nil {
		d.rep.Warnings = append(d.rep.Warnings, "RPO not measured: "+err.Error())
		return
	}
	d.st = st
	for _, w := range st.Windows {
		if w.Backup == backup || slices.Contains(w.Backups, backup) {
			d.win = w
		}
	}
}

// rpo compares the point reached with the window the drill recovered in, as pgb
// status showed it before the restore.
func (d *drill) rpo(target restore.Target) {
	if d.st == nil {
		return
	}
	var warn []string
	d.rep.RPO, d.rep.WAL, warn = measureRPO(d.st, d.win, target, d.rep.Reached.LastCommit)
	d.rep.Warnings = append(d.rep.Warnings, warn...)
}

// runChecks connects to every database, runs pg_amcheck and the --check-sql
// statements, all within --check-timeout: the check running then fails, naming it,
// and the others are not run.
func (d *drill) runChecks(ctx context.Context, bin string) {
	parent := ctx
	if d.opt.CheckTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.opt.CheckTimeout)
		defer cancel()
	}
	add := func(name string, err error, detail string) {
		if err != nil && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("cancelled: the checks did not finish within --check-timeout %s", d.opt.CheckTimeout)
		}
		c := CheckResult{Name: name, Passed: err == nil, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		d.rep.Checks = append(d.rep.Checks, c)
	}
	dbs, err := d.databases(ctx)
	add("connect to every database", err, fmt.Sprintf("%d databases", len(dbs)))
	d.amcheck(ctx, bin, dbs, add)
	if len(d.opt.Checks) == 0 || ctx.Err() != nil {
		return
	}
	conn, err := pgx.Connect(ctx, d.srv.DSN(d.user, "postgres"))
	if err != nil {
		add("check-sql", err, "")
		return
	}
	defer func() { _ = conn.Close(context.Background()) }()
	for _, s := range d.opt.Checks {
		if ctx.Err() != nil {
			break
		}
		name := fmt.Sprintf("check-sql line %d: %s", s.Line, oneLine(s.SQL))
		rows, err := conn.Query(ctx, s.SQL)
		if err != nil {
			add(name, err, "")
			continue
		}
		var got [][]any
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				break
			}
			got = append(got, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			add(name, err, "")
			continue
		}
		if ok, why := Passed(got); !ok {
			add(name, errors.New(why), "")
			continue
		}
		add(name, nil, "passed")
	}
}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\t' {
			r = ' '
		}
		out = append(out, r)
	}
	if len(out) > 60 {
		out = append(out[:57], '.', '.', '.')
	}
	return string(out)
}

func (d *drill) databases(ctx context.Context) ([]string, error) {
	conn, err := pgx.Connect(ctx, d.srv.DSN(d.user, "postgres"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	if err != nil {
		return nil, err
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, db := range dbs {
		c, err := pgx.Connect(ctx, d.srv.DSN(d.user, db))
		if err != nil {
			return dbs, fmt.Errorf("database %s: %w", db, err)
		}
		err = c.Ping(ctx)
		_ = c.Close(context.Background())
		if err != nil {
			return dbs, fmt.Errorf("database %s: %w", db, err)
		}
	}
	return dbs, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
