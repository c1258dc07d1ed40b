// Package walstream receives WAL from PostgreSQL over the physical replication
// protocol, as a standby's WAL receiver does, and stores it in the repository as it
// arrives: each completed segment exactly as wal-push stores it, the segment being
// written as immutable chunks (repo.PutWALChunk) every flush. The position it reports
// to PostgreSQL as flushed is only ever what is durable in the repository, so with
// PostgreSQL's synchronous_standby_names naming the stream a commit returns only once
// its WAL is in the repository.
package walstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// MinMajor is the oldest PostgreSQL major version the stream works with: it reads its
// slot with READ_REPLICATION_SLOT, new in 15.
const MinMajor = 15

// Options configure a Streamer.
type Options struct {
	// DSN is the connection string of the server to stream from (libpq's keywords or
	// URL; the PG* variables fill in what it leaves out).
	DSN string
	// Slot is the physical replication slot, created when missing.
	Slot string
	// AppName is the application_name the stream connects with: what
	// synchronous_standby_names must name for commits to wait for it.
	AppName string
	// FlushInterval and FlushBytes bound how long and how much received WAL waits
	// before it is stored as a chunk.
	FlushInterval time.Duration
	FlushBytes    int
	// Synchronous stores what was received as soon as no more is waiting on the
	// connection, so that a commit waiting for the stream is held up by one store.
	Synchronous bool
	// StatusInterval is how often the stream tells the server where it is when nothing
	// else makes it (wal_receiver_status_interval).
	StatusInterval time.Duration
	// MaxBackoff bounds the wait before reconnecting after a lost connection.
	MaxBackoff time.Duration
	// ReceiveTimeout ends a session whose server sent nothing for that long (as
	// wal_receiver_timeout does); at half of it the stream asks for a reply. 0: never.
	ReceiveTimeout time.Duration
}

// Streamer streams WAL into one or more repositories: a position is durable once it
// is stored in each.
type Streamer struct {
	Archives []*archive.Archive
	Opt      Options
	Log      *slog.Logger
	// Progress, when set, is called after each store with the position durable in the
	// repository.
	Progress func(Position)

	mu sync.Mutex
	// Where the previous session left off, for the next one in this process.
	resume Position
	// removed is where the server said the WAL asked for is gone (0: it did not).
	removed wal.LSN
}

// Position is a place in the WAL on a timeline.
type Position struct {
	Timeline uint32
	LSN      wal.LSN
}

// Fatal errors end Run: retrying cannot help, and streaming on would store wrong data.
var fatalErrors = []error{repo.ErrForeignCluster, archive.ErrConflict, repo.ErrChunkConflict, repo.ErrMustEncrypt, repo.ErrNoKey, repo.ErrWrongKey, errSettings}

// errSettings marks a mistake in the stream's own settings or in the server's.
var errSettings = errors.New("wal-stream settings")

// Run streams until ctx ends (then it returns nil, once what was received is stored)
// or a fatal error. A lost connection, or a store that fails, is retried with a
// backoff from one second up to MaxBackoff, from what is durable in the repository.
func (s *Streamer) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		before := s.resumeAt()
		err := s.session(ctx)
		if ctx.Err() != nil {
			// Stopped by a signal: what was received is stored first, and a failure to
			// store it is this run's outcome.
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("stopping: %w", err)
			}
			return nil
		}
		for _, f := range fatalErrors {
			if errors.Is(err, f) {
				return err
			}
		}
		if s.resumeAt() != before {
			backoff = time.Second
		}
		s.Log.Error("WAL stream interrupted; reconnecting", "error", err.Error(), "retry_in", backoff.String(), "durable_lsn", s.resumeAt().LSN.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, max(s.Opt.MaxBackoff, time.Second))
	}
}

// server is what a session learnt of the server at its start.
type server struct {
	conn    *pgconn.PgConn
	cluster archive.Cluster
	segSize uint64
	tli     uint32  // the server's timeline now
	flushed wal.LSN // the server's WAL flush position at IDENTIFY_SYSTEM
	history []wal.TimelineSpan
}

func (s *Streamer) connect(ctx context.Context) (*server, error) {
	cfg, err := pgconn.ParseConfig(s.Opt.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: PostgreSQL connection settings: %w (check --pg-dsn / PGB_PG_DSN and the PG* variables)", errSettings, err)
	}
	cfg.RuntimeParams["replication"] = "true"
	cfg.RuntimeParams["application_name"] = s.Opt.AppName
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL for replication: %w (the role needs REPLICATION, and pg_hba.conf a \"replication\" line)", err)
	}
	srv := &server{conn: conn}
	if err := srv.identify(ctx); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx)) // the error returned says why
		return nil, err
	}
	return srv, nil
}

func (srv *server) identify(ctx context.Context) error {
	sys, err := pglogrepl.IdentifySystem(ctx, srv.conn)
	if err != nil {
		return fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	id, err := strconv.ParseUint(sys.SystemID, 10, 64)
	if err != nil {
		return fmt.Errorf("IDENTIFY_SYSTEM: system identifier %q: %w", sys.SystemID, err)
	}
	major, err := majorVersion(srv.conn.ParameterStatus("server_version"))
	if err != nil {
		return err
	}
	if major < MinMajor {
		return fmt.Errorf("%w: PostgreSQL %d: pgb wal-stream needs PostgreSQL %d or later (READ_REPLICATION_SLOT); archive with archive_command = 'pgb wal-push %%p'", errSettings, major, MinMajor)
	}
	srv.cluster = archive.Cluster{SystemID: repo.SystemID(id), PGVersion: major}
	srv.tli, srv.flushed = uint32(sys.Timeline), wal.LSN(sys.XLogPos)
	v, err := show(ctx, srv.conn, "wal_segment_size")
	if err != nil {
		return err
	}
	if srv.segSize, err = parseSize(v); err != nil {
		return fmt.Errorf("wal_segment_size %q: %w", v, err)
	}
	if srv.tli > 1 {
		h, err := pglogrepl.TimelineHistory(ctx, srv.conn, int32(srv.tli))
		if err != nil {
			return fmt.Errorf("TIMELINE_HISTORY %d: %w", srv.tli, err)
		}
		if srv.history, err = wal.ParseHistory(srv.tli, h.Content); err != nil {
			return err
		}
	} else {
		srv.history = []wal.TimelineSpan{{TLI: 1, End: wal.EndOfTimeline}}
	}
	return nil
}

// timelineOf is the timeline of the server's history that holds lsn.
func (srv *server) timelineOf(lsn wal.LSN) uint32 {
	for _, sp := range srv.history {
		if lsn < sp.End {
			return sp.TLI
		}
	}
	return srv.tli
}

func majorVersion(v string) (int, error) {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(v[:i])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("server_version %q: not a PostgreSQL version", v)
	}
	return n, nil
}

// parseSize reads a size as SHOW prints it: 16MB, 1GB, 512kB.
func parseSize(v string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			x, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return 0, err
			}
			s := x * u.mult
			if s < 1<<20 || s > 1<<30 || s&(s-1) != 0 {
				return 0, errors.New("not a power of two from 1 MiB to 1 GiB")
			}
			return s, nil
		}
	}
	return 0, errors.New("no unit")
}

func show(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	res, err := conn.Exec(ctx, "SHOW "+name).ReadAll()
	if err != nil {
		return "", fmt.Errorf("SHOW %s: %w", name, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return "", fmt.Errorf("SHOW %s: unexpected result", name)
	}
	return string(res[0].Rows[0][0]), nil
}

// slot is what READ_REPLICATION_SLOT says of the stream's slot.
type slot struct {
	created bool
	restart wal.LSN // 0 when the slot has not reserved WAL yet
}

// ensureSlot creates the stream's physical slot (reserving WAL from now on) when it is
// missing.
func (s *Streamer) ensureSlot(ctx context.Context, conn *pgconn.PgConn) (slot, error) {
	var sl slot
	_, err := conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+quoteIdent(s.Opt.Slot)+" PHYSICAL RESERVE_WAL").ReadAll()
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		sl.created = true
	case errors.As(err, &pgErr) && pgErr.Code == "42710": // duplicate_object: it exists
	default:
		return sl, fmt.Errorf("create replication slot %s: %w", s.Opt.Slot, err)
	}
	res, err := conn.Exec(ctx, "READ_REPLICATION_SLOT "+quoteIdent(s.Opt.Slot)).ReadAll()
	if err != nil {
		return sl, fmt.Errorf("read replication slot %s: %w", s.Opt.Slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 3 {
		return sl, fmt.Errorf("read replication slot %s: unexpected result", s.Opt.Slot)
	}
	row := res[0].Rows[0]
	if row[0] == nil {
		return sl, fmt.Errorf("replication slot %s vanished as it was read", s.Opt.Slot)
	}
	if string(row[0]) != "physical" {
		return sl, fmt.Errorf("%w: replication slot %s is a %s slot: give --slot the name of a physical slot, or a new name", errSettings, s.Opt.Slot, row[0])
	}
	if row[1] != nil {
		l, err := wal.ParseLSN(string(row[1]))
		if err != nil {
			return sl, fmt.Errorf("replication slot %s: restart_lsn %q: %w", s.Opt.Slot, row[1], err)
		}
		sl.restart = l
	}
	return sl, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ValidSlotName says whether name can be a replication slot's: lower-case letters,
// digits and underscores, at most 63 characters.
func ValidSlotName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("--slot %q: a slot name has 1 to 63 characters", name)
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return fmt.Errorf("--slot %q: a slot name has only lower-case letters, digits and underscores", name)
		}
	}
	return nil
}

// isTimeout says whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errorResponse turns a server error message into an error.
func errorResponse(m *pgproto3.ErrorResponse) error { return pgconn.ErrorResponseToPgError(m) }

// each runs fn for every repository at once and returns their errors, each naming its
// repository when there are several.
func (s *Streamer) each(fn func(a *archive.Archive) error) error {
	if len(s.Archives) == 1 {
		return fn(s.Archives[0])
	}
	errs := make([]error, len(s.Archives))
	var wg sync.WaitGroup
	for i, a := range s.Archives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(a); err != nil {
				errs[i] = fmt.Errorf("repository %s: %w", a.Repo, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
