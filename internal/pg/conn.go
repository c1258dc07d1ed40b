package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Conn is a connection to the cluster being backed up.
type Conn struct {
	c       *pgx.Conn
	Version int // server_version_num, e.g. 150018
}

// Connect opens a connection. An empty dsn means the libpq environment variables
// (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE, …) alone.
func Connect(ctx context.Context, dsn string) (*Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL connection settings: %w (check --pg-dsn / PGB_PG_DSN and the PG* variables)", err)
	}
	cfg.RuntimeParams["application_name"] = "pgb"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w (check --pg-dsn / PGB_PG_DSN and the PG* variables)", err)
	}
	conn := &Conn{c: c}
	var v string
	if err := c.QueryRow(ctx, "SHOW server_version_num").Scan(&v); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("query server version: %w", err)
	}
	if conn.Version, err = strconv.Atoi(v); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("server_version_num %q: %w", v, err)
	}
	if conn.Version < 120000 {
		c.Close(ctx)
		return nil, fmt.Errorf("PostgreSQL %d is not supported: pgb needs 12 or later", conn.Version/10000)
	}
	return conn, nil
}

// Close ends the session.
func (c *Conn) Close(ctx context.Context) error { return c.c.Close(ctx) }

// Major is the major version, e.g. 15.
func (c *Conn) Major() int { return c.Version / 10000 }

// Setting returns the value of a run-time parameter (SHOW).
func (c *Conn) Setting(ctx context.Context, name string) (string, error) {
	var v string
	if err := c.c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	return v, nil
}

// SystemID is the cluster's system identifier.
func (c *Conn) SystemID(ctx context.Context) (uint64, error) {
	var id int64
	if err := c.c.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id); err != nil {
		return 0, fmt.Errorf("read system identifier: %w", err)
	}
	return uint64(id), nil
}

// SwitchWAL makes sure the current segment holds some WAL, switches to a new segment
// and returns the name of the segment that was completed.
func (c *Conn) SwitchWAL(ctx context.Context) (string, error) {
	// A segment with no new WAL is not switched; a tiny logical message is enough WAL
	// and needs no table. Without the privilege the switch may be a no-op, which is
	// harmless: the name returned is then the last completed segment.
	_, _ = c.c.Exec(ctx, "SELECT pg_logical_emit_message(false, 'pgb', 'switch')")
	var name string
	if err := c.c.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&name); err != nil {
		return "", fmt.Errorf("switch WAL: %w", privilegeHint(err, "pg_switch_wal()"))
	}
	return name, nil
}

// ArchiverStats is pg_stat_archiver.
type ArchiverStats struct {
	ArchivedCount int64
	LastArchived  string
	FailedCount   int64
	LastFailed    string
}

// Archiver reads pg_stat_archiver.
func (c *Conn) Archiver(ctx context.Context) (ArchiverStats, error) {
	var s ArchiverStats
	err := c.c.QueryRow(ctx, `SELECT archived_count, coalesce(last_archived_wal, ''),
		failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver`).
		Scan(&s.ArchivedCount, &s.LastArchived, &s.FailedCount, &s.LastFailed)
	if err != nil {
		return s, fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	return s, nil
}

func privilegeHint(err error, what string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w (connect as a superuser, or GRANT EXECUTE ON FUNCTION %s to the pgb role)", err, what)
	}
	return err
}
