package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// QueryTimeout bounds each SQL helper call (connect plus statement).
const QueryTimeout = 2 * time.Minute

// pollInterval is the pause between polls of the Wait* helpers.
const pollInterval = 75 * time.Millisecond

// Connect opens a connection to the cluster (as postgres, database
// postgres); it is closed when the test ends.
func (c *Cluster) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), QueryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatalf("pgtest: connect: %v\n--- server log tail ---\n%s", err, c.LogTail(20))
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) }) // test teardown: nothing pending
	return conn
}

// withConn runs f on a fresh connection bounded by QueryTimeout.
func (c *Cluster) withConn(f func(ctx context.Context, conn *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), QueryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }() // f's result is what matters
	return f(ctx, conn)
}

// TryExec runs sql with args on a fresh connection. Without args, sql may
// hold several statements separated by semicolons.
func (c *Cluster) TryExec(sql string, args ...any) error {
	return c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// Exec is TryExec failing the test on error.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if err := c.TryExec(sql, args...); err != nil {
		t.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// TryQueryRows runs a query and returns every row with every column in
// PostgreSQL's text representation (NULL becomes "").
func (c *Cluster) TryQueryRows(sql string, args ...any) ([][]string, error) {
	var result [][]string
	err := c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		// The simple protocol returns every value in text format.
		rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			raw := rows.RawValues()
			row := make([]string, len(raw))
			for i, v := range raw {
				row[i] = string(v)
			}
			result = append(result, row)
		}
		return rows.Err()
	})
	return result, err
}

// QueryRows is TryQueryRows failing the test on error.
func (c *Cluster) QueryRows(t testing.TB, sql string, args ...any) [][]string {
	t.Helper()
	rows, err := c.TryQueryRows(sql, args...)
	if err != nil {
		t.Fatalf("pgtest: query %q: %v", sql, err)
	}
	return rows
}

// TryQueryString runs a query that must return exactly one row with one
// column and returns that value's text representation (NULL becomes "").
func (c *Cluster) TryQueryString(sql string, args ...any) (string, error) {
	rows, err := c.TryQueryRows(sql, args...)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		cols := 0
		if len(rows) > 0 {
			cols = len(rows[0])
		}
		return "", fmt.Errorf("got %d rows of %d columns, want exactly one value", len(rows), cols)
	}
	return rows[0][0], nil
}

// QueryString is TryQueryString failing the test on error.
func (c *Cluster) QueryString(t testing.TB, sql string, args ...any) string {
	t.Helper()
	s, err := c.TryQueryString(sql, args...)
	if err != nil {
		t.Fatalf("pgtest: query %q: %v", sql, err)
	}
	return s
}

// TryQueryInt is TryQueryString parsing the value as an integer.
func (c *Cluster) TryQueryInt(sql string, args ...any) (int64, error) {
	s, err := c.TryQueryString(sql, args...)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// QueryInt is TryQueryInt failing the test on error.
func (c *Cluster) QueryInt(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	n, err := c.TryQueryInt(sql, args...)
	if err != nil {
		t.Fatalf("pgtest: query %q: %v", sql, err)
	}
	return n
}

// WaitFor waits until cond reports done, as the Wait* helpers do: cond is polled
// every pollInterval, its error fails the test, and so do a dead server and
// timeout, with cond's last "not yet" reason and the server log's tail.
func (c *Cluster) WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (done bool, reason string, err error)) {
	t.Helper()
	c.waitFor(t, what, timeout, cond)
}

// WaitUntil polls cond every pollInterval until it reports done, failing the test
// with cond's last "not yet" reason after timeout. It is for conditions outside
// a server (a file appearing, a process reaching a point); Cluster.WaitFor also
// watches the server.
func WaitUntil(t testing.TB, what string, timeout time.Duration, cond func() (done bool, reason string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, reason := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: timed out after %v waiting for %s (last: %s)", timeout, what, reason)
		}
		time.Sleep(pollInterval)
	}
}

// waitFor polls cond every pollInterval until it reports done, returns an
// error (fatal), or timeout passes. cond's last "not yet" reason is included
// in the failure. It also fails early if the postmaster has died.
func (c *Cluster) waitFor(t testing.TB, what string, timeout time.Duration, cond func() (done bool, reason string, err error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var reason string
	for {
		done, r, err := cond()
		if err != nil {
			t.Fatalf("pgtest: waiting for %s: %v\n--- server log tail ---\n%s", what, err, c.LogTail(40))
		}
		if done {
			return
		}
		reason = r
		if !c.Running() {
			// Re-check once: the server may have exited right after cond.
			if done, _, _ := cond(); done {
				return
			}
			t.Fatalf("pgtest: waiting for %s: server is not running (last: %s)\n--- server log tail ---\n%s", what, reason, c.LogTail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: timed out after %v waiting for %s (last: %s)\n--- server log tail ---\n%s", timeout, what, reason, c.LogTail(40))
		}
		time.Sleep(pollInterval)
	}
}

// WaitReady waits until the server accepts connections and answers a query
// (read-only servers in recovery count as ready).
func (c *Cluster) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	c.waitFor(t, "server to accept connections", timeout, func() (bool, string, error) {
		if _, err := c.TryQueryString("SELECT 1"); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

// WaitRecoveryDone waits until pg_is_in_recovery() is false (recovery has
// ended and the server has been promoted). Connection errors while the
// server is still starting up are tolerated until timeout.
func (c *Cluster) WaitRecoveryDone(t testing.TB, timeout time.Duration) {
	t.Helper()
	c.waitFor(t, "recovery to finish", timeout, func() (bool, string, error) {
		s, err := c.TryQueryString("SELECT pg_is_in_recovery()")
		if err != nil {
			return false, err.Error(), nil
		}
		return s == "f", "pg_is_in_recovery() = " + s, nil
	})
}

// WaitRecoveryPaused waits until pg_get_wal_replay_pause_state() is
// 'paused', e.g. after reaching a recovery target with
// recovery_target_action = 'pause'. It fails early if recovery ends instead.
func (c *Cluster) WaitRecoveryPaused(t testing.TB, timeout time.Duration) {
	t.Helper()
	c.waitFor(t, "recovery to pause", timeout, func() (bool, string, error) {
		rows, err := c.TryQueryRows("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END")
		if err != nil {
			return false, err.Error(), nil
		}
		if rows[0][0] == "f" {
			return false, "", errors.New("server is no longer in recovery")
		}
		return rows[0][1] == "paused", "pause state = " + rows[0][1], nil
	})
}
