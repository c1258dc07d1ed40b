package walstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/waltest"
)

// fakeServer is a walsender's side of the protocol (pgproto3 over loopback TCP), for
// what a real server does not do on demand.
type fakeServer struct {
	onQuery func(be *pgproto3.Backend, q string)
	onCopy  func(be *pgproto3.Backend, m pgproto3.FrontendMessage)
}

func (fs *fakeServer) start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		be := pgproto3.NewBackend(c, c)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.4"})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		_ = be.Flush()
		for {
			m, err := be.Receive()
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *pgproto3.Query:
				fs.onQuery(be, m.String)
			case *pgproto3.Terminate:
				return
			default:
				if fs.onCopy != nil {
					fs.onCopy(be, m)
				}
			}
			_ = be.Flush()
		}
	}()
	return ln.Addr().String()
}

func connectFake(t *testing.T, addr string) *pgconn.PgConn {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=x sslmode=disable", host, port))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func xlogData(start wal.LSN, data []byte) *pgproto3.CopyData {
	b := make([]byte, 25, 25+len(data))
	b[0] = 'w'
	binary.BigEndian.PutUint64(b[1:], uint64(start))
	binary.BigEndian.PutUint64(b[9:], uint64(start)+uint64(len(data)))
	return &pgproto3.CopyData{Data: append(b, data...)}
}

// The server ends timeline 1 (CopyDone) right after the last WAL, with --synchronous
// (a receive deadline of 200 µs): storing the timeline's last segment takes longer,
// and the end of the timeline is still read, not an i/o timeout.
func TestTheEndOfATimelineIsFollowedAfterASlowStore(t *testing.T) {
	s, srv := faultyStreamer(t)
	s.Opt = Options{Slot: "pgb", Synchronous: true, FlushInterval: time.Second, FlushBytes: 16 << 20, StatusInterval: 10 * time.Second}
	segStart := wal.LSN(5 * waltest.SegSize)
	data := seg(1, 5)[:100_000]
	fs := &fakeServer{}
	fs.onQuery = func(be *pgproto3.Backend, q string) {
		if strings.HasPrefix(q, "START_REPLICATION") {
			be.Send(&pgproto3.CopyBothResponse{})
			be.Send(xlogData(segStart, data))
			be.Send(&pgproto3.CopyDone{})
		}
	}
	fs.onCopy = func(be *pgproto3.Backend, m pgproto3.FrontendMessage) {
		if _, ok := m.(*pgproto3.CopyDone); ok {
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("next_tli"), DataTypeOID: 20}, {Name: []byte("next_tli_startpos"), DataTypeOID: 25}}})
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("2"), []byte((segStart + wal.LSN(len(data))).String())}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("START_STREAMING")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		}
	}
	srv.conn = connectFake(t, fs.start(t))
	next, err := s.stream(context.Background(), srv, Position{Timeline: 1, LSN: segStart})
	if err != nil {
		t.Fatalf("end of timeline 1 not followed: %v", err)
	}
	if next.Timeline != 2 || next.LSN != segStart+wal.LSN(len(data)) {
		t.Fatalf("next timeline %d at %s", next.Timeline, next.LSN)
	}
}

// START_REPLICATION fails with 58P01 (the WAL asked for is removed): the session ends
// (its connection is not usable for more), and the next one starts where the slot holds
// WAL from.
func TestWALTheServerRemovedIsSkippedOnlyToWhereTheSlotHoldsIt(t *testing.T) {
	s, srv := faultyStreamer(t)
	s.Opt = Options{Slot: "pgb", FlushInterval: time.Second, FlushBytes: 16 << 20, StatusInterval: 10 * time.Second}
	fs := &fakeServer{}
	fs.onQuery = func(be *pgproto3.Backend, q string) {
		if strings.HasPrefix(q, "START_REPLICATION") {
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: "requested WAL segment 000000010000000000000005 has already been removed"})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		}
	}
	srv.conn = connectFake(t, fs.start(t))
	srv.flushed = wal.LSN(12 * waltest.SegSize)
	from := wal.LSN(5 * waltest.SegSize)
	s.resume = Position{Timeline: 1, LSN: from}
	_, err := s.stream(context.Background(), srv, Position{Timeline: 1, LSN: from})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !walRemoved(pgErr) {
		t.Fatalf("stream: %v, want the server's error", err)
	}
	s.removed = from // what session does with it
	start, err := s.startPosition(context.Background(), srv, slot{restart: wal.LSN(9*waltest.SegSize + 100)})
	if err != nil || start != wal.LSN(9*waltest.SegSize) {
		t.Fatalf("start %s (%v), want the slot's restart segment 0/9000000", start, err)
	}
	if s.removed != 0 {
		t.Fatal("the removal is remembered past the jump")
	}
}
