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
	if !sl.created && sl.restart == 0 {
		// A slot that holds no WAL: invalidated (max_slot_wal_keep_size), or made
		// without reserving any. Made again, reserving WAL from now on; what the server
		// removed meanwhile is lost to the repository, and startPosition says so.
		s.Log.Error("the replication slot holds no WAL (invalidated by max_slot_wal_keep_size?): creating it again; WAL the server removed meanwhile is not in the repository unless archive_command stored it, and pgb status shows the gap",
			"slot", s.Opt.Slot)
		if _, err := srv.conn.Exec(ctx, "DROP_REPLICATION_SLOT "+quoteIdent(s.Opt.Slot)).ReadAll(); err != nil {
			return fmt.Errorf("drop the replication slot %s that holds no WAL: %w", s.Opt.Slot, err)
		}
		if sl, err = s.ensureSlot(ctx, srv.conn); err != nil {
			return err
		}
		s.mu.Lock()
		if s.removed == 0 {
			s.removed = max(s.resume.LSN, 1)
		}
		s.mu.Unlock()
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
	for {
		next, err := s.stream(ctx, srv, pos)
		if ctx.Err() != nil {
			return err // stopped: what was received is stored (or err says why not)
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && walRemoved(pgErr) {
			// The server no longer has the WAL asked for. The connection is not usable
			// for more (the error came mid-command): the next session, on a new one,
			// streams from what the slot holds and says loudly what is lost.
			s.mu.Lock()
			s.removed = pos.LSN
			s.mu.Unlock()
			return err
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
	if tli >= srv.tli {
		// The server's own timeline, or a newer one it was promoted to: the history
		// the start position and the timelines of segments are worked out from.
		if srv.history, err = wal.ParseHistory(tli, h.Content); err != nil {
			return err
		}
		srv.tli = tli
	}
	return nil
}

// startPosition is where a session starts streaming, always at a segment's start:
// where the previous session in this process left off; otherwise the segment after the
// newest one in the repository, but no later than where the slot holds WAL from (the
// slot advances only to what was stored, so a segment missing before the newest one,
// such as one a killed pgb was still storing, is streamed again), or where the slot
// holds WAL from when the repository has none. Never past the server's own WAL, nor
// past the end of the resumed timeline in the server's history. After the server said
// the WAL asked for is gone, from where the slot holds WAL, with an ERROR naming what is
// lost.
func (s *Streamer) startPosition(ctx context.Context, srv *server, sl slot) (wal.LSN, error) {
	s.mu.Lock()
	resume, removed := s.resume, s.removed
	s.removed = 0
	s.mu.Unlock()
	var start wal.LSN
	switch {
	case removed != 0 && s.segStart(srv, sl.restart) > removed:
		start = s.segStart(srv, sl.restart)
		s.Log.Error("WAL the stream needs is no longer on the server: it is not in the repository unless archive_command stored it; pgb status shows the gap and recovery cannot cross it: take a new backup",
			"from", removed.String(), "to", start.String(), "slot", s.Opt.Slot)
	case resume.LSN != 0:
		start = s.segStart(srv, resume.LSN)
		// The resumed timeline may end earlier on this server (a failover to a standby
		// that had not received all of it): go on from where it ends here.
		for _, sp := range srv.history {
			if sp.TLI == resume.Timeline && sp.End != wal.EndOfTimeline && start > s.segStart(srv, sp.End) {
				start = s.segStart(srv, sp.End)
			}
		}
	default:
		newest, found, err := s.newestSegment(ctx, srv)
		if err != nil {
			return 0, err
		}
		switch {
		case found:
			start = wal.LSN((newest + 1) * srv.segSize)
			if !sl.created && sl.restart != 0 {
				start = min(start, s.segStart(srv, sl.restart))
			} else if sl.restart != 0 && start < s.segStart(srv, sl.restart) {
				s.Log.Warn("the slot was created now: the WAL between the repository's newest segment and where the slot holds WAL from is streamed only if the server still has it",
					"from", start.String(), "slot_restart_lsn", sl.restart.String())
			}
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
	err := rp.ListWAL(ctx, func(o repo.WALObject) error {
		// Only a segment of the timeline the server's history has at its start counts:
		// not one another server wrote on past where this one's history leaves it.
		if o.Kind != wal.Segment || srv.timelineOf(wal.LSN(o.SegmentNumber(srv.segSize)*srv.segSize)) != o.Timeline {
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
		quoted := strings.HasPrefix(w, `"`)
		w = strings.Trim(w, `"`)
		if !quoted && (strings.EqualFold(w, "first") || strings.EqualFold(w, "any")) {
			continue // FIRST n (…), ANY n (…)
		}
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
	// A signal ends the wait for the next message at once. The deadline is cleared on
	// the way out: what follows on the connection (the end of a timeline, the next
	// command) must not meet a deadline long passed.
	stop := context.AfterFunc(ctx, func() { _ = srv.conn.Conn().SetReadDeadline(time.Now()) })
	defer func() {
		stop()
		_ = srv.conn.Conn().SetReadDeadline(time.Time{})
	}()
	lastMsg, lastPing := time.Now(), time.Time{}
	// Stores in the loop are not cut short by a signal: the loop sees it next, and
	// stores what was received before it stops.
	sctx := context.WithoutCancel(ctx)
	var lastStatus time.Time
	var reported wal.LSN
	report := func() error {
		if err := w.failed(); err != nil {
			return err
		}
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
				if err := w.flush(sctx); err != nil {
					return Position{}, err
				}
			}
			// A server that sent nothing, not even a keepalive, for ReceiveTimeout is gone
			// (a half-open connection): end the session and connect again. At half of it,
			// ask for a reply.
			switch silent := time.Since(lastMsg); {
			case s.Opt.ReceiveTimeout > 0 && silent >= s.Opt.ReceiveTimeout:
				return Position{}, fmt.Errorf("receive WAL: nothing from the server for %s (its connection is gone?)", silent.Round(time.Second))
			case s.Opt.ReceiveTimeout > 0 && silent >= s.Opt.ReceiveTimeout/2 && time.Since(lastPing) >= s.Opt.ReceiveTimeout/2:
				lastPing = time.Now()
				if err := s.ping(srv.conn, w); err != nil {
					return Position{}, err
				}
			}
			continue
		}
		if err != nil {
			return Position{}, fmt.Errorf("receive WAL: %w", err)
		}
		lastMsg = time.Now()
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
				if err := w.add(sctx, wal.LSN(x.WALStart), x.WALData); err != nil {
					return Position{}, err
				}
				// Also when messages keep coming too close together for the receive deadline
				// ever to pass: the interval bounds how long received WAL waits.
				if w.pending() >= s.Opt.FlushBytes || (w.pending() > 0 && time.Since(w.pendingSince) >= s.Opt.FlushInterval) {
					if err := w.flush(sctx); err != nil {
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
			// The server ended the timeline: what was received of it is stored (its last
			// segment stays as chunks, see endTimeline) before the next timeline is asked for.
			stop()
			if err := srv.conn.Conn().SetReadDeadline(time.Time{}); err != nil {
				return Position{}, err
			}
			if err := w.endTimeline(sctx); err != nil {
				return Position{}, err
			}
			if err := report(); err != nil {
				return Position{}, err
			}
			// The server's answer, read with a deadline of its own (SendStandbyCopyDone
			// heeds no context): a connection gone half-open here ends the session.
			if err := srv.conn.Conn().SetReadDeadline(time.Now().Add(max(s.Opt.ReceiveTimeout, 10*time.Second))); err != nil {
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
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		case *pgproto3.CommandComplete:
			return Position{}, errors.New("receive WAL: the server ended the stream (shutting down?)")
		default:
			return Position{}, fmt.Errorf("receive WAL: unexpected %T", msg)
		}
	}
}

// ping sends the stream's position asking the server for a reply.
func (s *Streamer) ping(conn *pgconn.PgConn, w *writer) error {
	durable := min(w.durable(), w.received())
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(w.received()), WALFlushPosition: pglogrepl.LSN(max(durable, 1)),
		WALApplyPosition: pglogrepl.LSN(max(durable, 1)), ReplyRequested: true,
	})
	if err != nil {
		return fmt.Errorf("send the stream's position: %w", err)
	}
	return nil
}

// sendStatus tells the server how far WAL was received and how far it is durable in
// the repository: the flush position (which synchronous replication waits for and the
// slot advances to) is never more than what is stored.
func (s *Streamer) sendStatus(conn *pgconn.PgConn, w *writer) error {
	// Never more than this server sent in this session: chunks stored before may hold
	// more of a timeline than this server has of it (a failover).
	durable := min(w.durable(), w.received())
	if durable == 0 {
		return nil // nothing stored: the library would take 0 for "as far as written"
	}
	recv := w.received()
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

// walRemoved says whether the server refused to stream because the WAL asked for is
// gone: "requested WAL segment … has already been removed", whose error code depends
// on the errno the server had at hand (58P01 for ENOENT, other codes otherwise).
func walRemoved(e *pgconn.PgError) bool {
	return e.Code == "58P01" || strings.Contains(e.Message, "has already been removed")
}
