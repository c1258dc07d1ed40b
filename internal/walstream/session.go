package walstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// session is one connection: identify the server, make sure of the slot, work out
// where to start, then stream timeline after timeline until the connection ends.
func (s *Streamer) session(ctx context.Context) error {
	srv, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = srv.conn.Close(context.WithoutCancel(ctx)) }() // what was received is stored before any return
	err = s.each(func(a *archive.Archive) error {
		_, err := a.Repo.EnsureIdentity(ctx, repo.Identity{
			SystemID: srv.cluster.SystemID, PGVersion: srv.cluster.PGVersion, Created: time.Now().UTC(),
			CreatedBy: "pgb", FirstWrite: "wal-stream",
		})
		return err
	})
	if err != nil {
		return err
	}
	sl, err := s.ensureSlot(ctx, srv.conn)
	if err != nil {
		return err
	}
	if resume := s.resumeAt(); sl.created && resume.LSN != 0 {
		s.Log.Error("the replication slot was gone (dropped?) and has been created again: WAL the server removed meanwhile is not in the repository unless archive_command stored it; pgb status shows the gap, and recovery cannot cross it: take a new backup",
			"slot", s.Opt.Slot, "durable_lsn", resume.LSN.String(), "slot_restart_lsn", sl.restart.String())
	} else if sl.created {
		s.Log.Info("created the physical replication slot: the server keeps WAL for the stream from now on, also while it is down", "slot", s.Opt.Slot)
	}
	if s.Opt.Synchronous {
		s.warnIfNotSynchronous(ctx, srv.conn)
	}
	if err := s.storeHistory(ctx, srv, srv.tli); err != nil {
		return err
	}
	start, err := s.startPosition(ctx, srv, sl)
	if err != nil {
		return err
	}
	pos := Position{Timeline: srv.timelineOf(start), LSN: start}
	jumped := false
	for {
		next, err := s.stream(ctx, srv, pos)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "58P01" && !jumped {
			// The server no longer has the WAL asked for: stream from what the slot holds,
			// and say loudly that the WAL in between is lost to the repository.
			sl, serr := s.ensureSlot(ctx, srv.conn)
			if serr != nil || sl.restart == 0 || s.segStart(srv, sl.restart) <= pos.LSN {
				return err
			}
			to := s.segStart(srv, sl.restart)
			s.Log.Error("WAL the stream needs is no longer on the server: it is not in the repository unless archive_command stored it; pgb status shows the gap and recovery cannot cross it: take a new backup",
				"from", pos.LSN.String(), "to", to.String(), "server_error", pgErr.Message)
			pos, jumped = Position{Timeline: srv.timelineOf(to), LSN: to}, true
			continue
		}
		if err != nil {
			return err
		}
		// The timeline ended (the server was promoted, or pos was on a timeline it left):
		// follow it onto the next, from the start of the segment of the switch point.
		if err := s.storeHistory(ctx, srv, next.Timeline); err != nil {
			return err
		}
		s.Log.Info("following the timeline switch", "timeline", next.Timeline, "switch_lsn", next.LSN.String())
		pos = Position{Timeline: next.Timeline, LSN: s.segStart(srv, next.LSN)}
	}
}

func (s *Streamer) segStart(srv *server, l wal.LSN) wal.LSN { return l - l%wal.LSN(srv.segSize) }

// storeHistory stores the history file of timeline tli (none for timeline 1) as
// wal-push would.
func (s *Streamer) storeHistory(ctx context.Context, srv *server, tli uint32) error {
	if tli <= 1 {
		return nil
	}
	h, err := pglogrepl.TimelineHistory(ctx, srv.conn, int32(tli))
	if err != nil {
		return fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
	}
	if _, err := wal.ParseHistory(tli, h.Content); err != nil {
		return err
	}
	f, err := wal.Parse(fmt.Sprintf("%08X.history", tli))
	if err != nil {
		return err
	}
	err = s.each(func(a *archive.Archive) error {
		_, err := a.PushData(ctx, f, h.Content, &srv.cluster)
		return err
	})
	if err != nil {
		return err
	}
	if tli == srv.tli {
		if srv.history, err = wal.ParseHistory(tli, h.Content); err != nil {
			return err
		}
	}
	return nil
}

// startPosition is where a session starts streaming: the start of the segment where
// the previous session in this process left off; otherwise the segment after the
// newest one in the repository, or where the slot holds WAL from when the repository
// has none. Never past the server's own WAL.
func (s *Streamer) startPosition(ctx context.Context, srv *server, sl slot) (wal.LSN, error) {
	var start wal.LSN
	switch resume := s.resumeAt(); {
	case resume.LSN != 0:
		start = s.segStart(srv, resume.LSN)
	default:
		newest, found, err := s.newestSegment(ctx, srv)
		if err != nil {
			return 0, err
		}
		switch {
		case found:
			start = wal.LSN((newest + 1) * srv.segSize)
		case sl.restart != 0:
			start = s.segStart(srv, sl.restart)
		default:
			start = s.segStart(srv, srv.flushed)
		}
	}
	if last := s.segStart(srv, srv.flushed); start > last {
		s.Log.Warn("the repository holds WAL past the server's: streaming the server's current segment, which must match what is stored",
			"repository_next", start.String(), "server_flush", srv.flushed.String())
		start = last
	}
	return start, nil
}

// newestSegment is the number of the newest segment stored whole on a timeline of the
// server's history; with several repositories, the oldest of their newest, so that
// each gets every segment.
func (s *Streamer) newestSegment(ctx context.Context, srv *server) (uint64, bool, error) {
	var newest uint64
	found := false
	for i, a := range s.Archives {
		n, ok, err := newestIn(ctx, a.Repo, srv)
		if err != nil {
			return 0, false, fmt.Errorf("repository %s: %w", a.Repo, err)
		}
		if !ok {
			return 0, false, nil
		}
		if i == 0 || n < newest {
			newest, found = n, true
		}
	}
	return newest, found, nil
}

func newestIn(ctx context.Context, rp *repo.Repo, srv *server) (uint64, bool, error) {
	var newest uint64
	found := false
	onHistory := map[uint32]bool{}
	for _, sp := range srv.history {
		onHistory[sp.TLI] = true
	}
	err := rp.ListWAL(ctx, func(o repo.WALObject) error {
		if o.Kind != wal.Segment || !onHistory[o.Timeline] {
			return nil
		}
		if n := o.SegmentNumber(srv.segSize); !found || n > newest {
			newest, found = n, true
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("list archived WAL: %w", err)
	}
	return newest, found, nil
}

// warnIfNotSynchronous warns when the server's synchronous_standby_names does not name
// the stream: commits then do not wait for it, and --synchronous only stores sooner.
func (s *Streamer) warnIfNotSynchronous(ctx context.Context, conn *pgconn.PgConn) {
	v, err := show(ctx, conn, "synchronous_standby_names")
	if err != nil {
		s.Log.Warn("could not read synchronous_standby_names", "error", err.Error())
		return
	}
	if !namesStandby(v, s.Opt.AppName) {
		s.Log.Warn("synchronous_standby_names does not name the stream: commits do not wait for their WAL to reach the repository (RPO is not 0); set synchronous_standby_names = '"+s.Opt.AppName+"' (or list it) and reload",
			"synchronous_standby_names", v, "application_name", s.Opt.AppName)
	}
}

// namesStandby says whether synchronous_standby_names v names app (or '*'), in any of
// its forms: a list, FIRST n (...), ANY n (...).
func namesStandby(v, app string) bool {
	f := func(r rune) bool { return r == ',' || r == '(' || r == ')' || r == ' ' || r == '\t' }
	for _, w := range strings.FieldsFunc(v, f) {
		w = strings.Trim(w, `"`)
		if w == "*" || strings.EqualFold(w, app) {
			return true
		}
	}
	return false
}

// stream runs START_REPLICATION from pos and stores what arrives until the connection
// ends (an error), ctx ends (nil, once what was received is stored) or the timeline
// ends: then it returns where the next timeline starts.
func (s *Streamer) stream(ctx context.Context, srv *server, pos Position) (Position, error) {
	err := pglogrepl.StartReplication(ctx, srv.conn, s.Opt.Slot, pglogrepl.LSN(pos.LSN),
		pglogrepl.StartReplicationOptions{Timeline: int32(pos.Timeline), Mode: pglogrepl.PhysicalReplication})
	if tli, lsn, ok := pglogrepl.IsErrEndTimeline(err); ok {
		return Position{Timeline: uint32(tli), LSN: wal.LSN(lsn)}, nil
	}
	if err != nil {
		return Position{}, fmt.Errorf("START_REPLICATION at %s on timeline %d: %w", pos.LSN, pos.Timeline, err)
	}
	s.Log.Info("streaming WAL", "timeline", pos.Timeline, "from", pos.LSN.String(), "slot", s.Opt.Slot, "synchronous", s.Opt.Synchronous)
	w, err := s.newWriter(ctx, srv, pos)
	if err != nil {
		return Position{}, err
	}
	defer func() { _ = w.close() }() // the segments being stored are stored, or fail, before the session ends
	// A signal ends the wait for the next message at once.
	stop := context.AfterFunc(ctx, func() { _ = srv.conn.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	var lastStatus time.Time
	var reported wal.LSN
	report := func() error {
		reported = w.durable()
		lastStatus = time.Now()
		return s.sendStatus(srv.conn, w)
	}
	for {
		if ctx.Err() != nil {
			// Store what was received and tell the server, with a deadline of its own.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			err := w.flush(fctx)
			if cerr := w.close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = report()
			}
			return Position{}, err
		}
		if err := w.failed(); err != nil {
			return Position{}, err
		}
		now := time.Now()
		if now.Sub(lastStatus) >= s.Opt.StatusInterval || w.durable() != reported {
			if err := report(); err != nil {
				return Position{}, err
			}
		}
		deadline := earliest(now.Add(time.Second), lastStatus.Add(s.Opt.StatusInterval))
		if w.waiting() {
			deadline = earliest(deadline, now.Add(5*time.Millisecond)) // to report a segment stored
		}
		if w.pending() > 0 {
			if s.Opt.Synchronous {
				deadline = now.Add(syncIdle)
			} else {
				deadline = earliest(deadline, w.pendingSince.Add(s.Opt.FlushInterval))
			}
		}
		if err := srv.conn.Conn().SetReadDeadline(deadline); err != nil {
			return Position{}, err
		}
		if ctx.Err() != nil {
			continue // ended since the check above: the deadline just set would hold it up
		}
		msg, err := srv.conn.ReceiveMessage(context.Background())
		if err != nil && isTimeout(err) {
			if w.pending() > 0 && (s.Opt.Synchronous || time.Since(w.pendingSince) >= s.Opt.FlushInterval) {
				if err := w.flush(ctx); err != nil {
					return Position{}, err
				}
			}
			continue
		}
		if err != nil {
			return Position{}, fmt.Errorf("receive WAL: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				return Position{}, errors.New("receive WAL: empty message")
			}
			switch m.Data[0] {
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return Position{}, fmt.Errorf("receive WAL: %w", err)
				}
				if err := w.add(ctx, wal.LSN(x.WALStart), x.WALData); err != nil {
					return Position{}, err
				}
				if w.pending() >= s.Opt.FlushBytes {
					if err := w.flush(ctx); err != nil {
						return Position{}, err
					}
				}
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				k, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return Position{}, fmt.Errorf("receive WAL: %w", err)
				}
				if k.ReplyRequested {
					if err := report(); err != nil {
						return Position{}, err
					}
				}
			}
		case *pgproto3.CopyDone:
			// The server ended the timeline: what was received of it is stored, the last
			// segment as PostgreSQL's own receiver leaves it (.partial).
			if err := w.endTimeline(ctx); err != nil {
				return Position{}, err
			}
			if err := report(); err != nil {
				return Position{}, err
			}
			cdr, err := pglogrepl.SendStandbyCopyDone(ctx, srv.conn)
			if err != nil {
				return Position{}, fmt.Errorf("end of timeline %d: %w", pos.Timeline, err)
			}
			if cdr == nil || uint32(cdr.Timeline) <= pos.Timeline {
				return Position{}, fmt.Errorf("timeline %d ended and the server named no next timeline", pos.Timeline)
			}
			return Position{Timeline: uint32(cdr.Timeline), LSN: wal.LSN(cdr.LSN)}, nil
		case *pgproto3.ErrorResponse:
			return Position{}, errorResponse(m)
		case *pgproto3.NoticeResponse:
		default:
			return Position{}, fmt.Errorf("receive WAL: unexpected %T", msg)
		}
	}
}

// sendStatus tells the server how far WAL was received and how far it is durable in
// the repository: the flush position (which synchronous replication waits for and the
// slot advances to) is never more than what is stored.
func (s *Streamer) sendStatus(conn *pgconn.PgConn, w *writer) error {
	durable := w.durable()
	if durable == 0 {
		return nil // nothing stored: the library would take 0 for "as far as written"
	}
	recv := max(w.received(), durable)
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(recv),
		WALFlushPosition: pglogrepl.LSN(durable),
		WALApplyPosition: pglogrepl.LSN(durable),
	})
	if err != nil {
		return fmt.Errorf("send the stream's position: %w", err)
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// syncIdle is how long --synchronous waits for more WAL before it stores what came:
// WAL the server sends in one go arrives within it, and a commit waiting for the store
// is not held up for more.
const syncIdle = 200 * time.Microsecond
