package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgb-project/pgb/internal/wal"
)

// Conn is a connection to the cluster being backed up.
type Conn struct {
	c       *pgx.Conn
	Version int // server_version_num, e.g. 150018
}

// Connect opens a connection. An empty dsn means the libpq environment variables
// (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE, …) alone.
func Connect(ctx context.Context, dsn string) (*Conn, error) {
	return ConnectTo(ctx, dsn, "--pg-dsn / PGB_PG_DSN and the PG* variables")
}

// ConnectTo is Connect for a connection string set by where (named in errors).
func ConnectTo(ctx context.Context, dsn, where string) (*Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL connection settings: %w (check %s)", err, where)
	}
	cfg.RuntimeParams["application_name"] = "pgb"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w (check %s)", err, where)
	}
	conn := &Conn{c: c}
	var v string
	if err := c.QueryRow(ctx, "SHOW server_version_num").Scan(&v); err != nil {
		_ = c.Close(ctx) // the error returned says why
		return nil, fmt.Errorf("query server version: %w", err)
	}
	if conn.Version, err = strconv.Atoi(v); err != nil {
		_ = c.Close(ctx) // the error returned says why
		return nil, fmt.Errorf("server_version_num %q: %w", v, err)
	}
	if conn.Version < MinMajor*10000 {
		_ = c.Close(ctx) // the error returned says why
		return nil, fmt.Errorf("PostgreSQL %d is not supported: pgb needs %d or later", conn.Version/10000, MinMajor)
	}
	return conn, nil
}

// MinMajor is the oldest PostgreSQL major version pgb connects to.
const MinMajor = 12

// TestedMajors lists the PostgreSQL major versions the integration suite runs against
// (pgb --version prints them; integration.TestVersionNamesThePostgreSQLItIsTestedWith
// fails when the server the suite runs is not among them).
func TestedMajors() []int { return []int{15} }

// Close ends the session.
func (c *Conn) Close(ctx context.Context) error { return c.c.Close(ctx) }

// Ping checks that the session still answers.
func (c *Conn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

// Major is the major version, e.g. 15.
func (c *Conn) Major() int { return c.Version / 10000 }

// ServerVersionNum is server_version_num, e.g. 150018.
func (c *Conn) ServerVersionNum() int { return c.Version }

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

// ErrArchiveFailing means pg_stat_archiver shows archive_command failing for a WAL file
// that is waited for.
var ErrArchiveFailing = errors.New("archive_command is failing")

// ArchiveFailing returns an error wrapping ErrArchiveFailing when pg_stat_archiver, compared
// with since (read before seg was completed), shows archive_command failing for the WAL
// segment seg or a later one: a failed attempt since then whose last_failed_wal is seg or
// after it. It returns nil while that is not (yet) so.
func (c *Conn) ArchiveFailing(ctx context.Context, since ArchiverStats, seg string) error {
	now, err := c.Archiver(ctx)
	if err != nil {
		return err
	}
	const nameLen = 24 // timeline, log and segment: names of one cluster sort in WAL order
	if now.FailedCount <= since.FailedCount || len(now.LastFailed) < nameLen || len(seg) < nameLen ||
		now.LastFailed[:nameLen] < seg[:nameLen] {
		return nil
	}
	return fmt.Errorf("%w: it failed %d time(s) since the switch, last for %s (last_failed_wal): see the PostgreSQL log for why",
		ErrArchiveFailing, now.FailedCount-since.FailedCount, now.LastFailed)
}

func privilegeHint(err error, what string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w (connect as a superuser, or GRANT EXECUTE ON FUNCTION %s to the pgb role)", err, what)
	}
	return err
}

// BackupStart begins a non-exclusive base backup on this session, which must stay open
// until BackupStop. fast asks for an immediate checkpoint.
func (c *Conn) BackupStart(ctx context.Context, label string, fast bool) (wal.LSN, uint32, error) {
	q := "SELECT pg_backup_start($1, $2)::text"
	if c.Major() < 15 {
		q = "SELECT pg_start_backup($1, $2, false)::text"
	}
	var lsn string
	if err := c.c.QueryRow(ctx, q, label, fast).Scan(&lsn); err != nil {
		return 0, 0, fmt.Errorf("start backup: %w", privilegeHint(err, "pg_backup_start(text, boolean)"))
	}
	start, err := wal.ParseLSN(lsn)
	if err != nil {
		return 0, 0, err
	}
	var tli int64
	if err := c.c.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&tli); err != nil {
		return 0, 0, fmt.Errorf("read timeline: %w", err)
	}
	return start, uint32(tli), nil
}

// ControlCheckpoint reads the last checkpoint from the server's own pg_control
// (pg_control_checkpoint()): its location, redo point and timeline.
func (c *Conn) ControlCheckpoint(ctx context.Context) (Control, error) {
	var ckpt, redo string
	var tli int64
	err := c.c.QueryRow(ctx, "SELECT checkpoint_lsn::text, redo_lsn::text, timeline_id FROM pg_control_checkpoint()").Scan(&ckpt, &redo, &tli)
	if err != nil {
		return Control{}, fmt.Errorf("read the server's pg_control: %w", privilegeHint(err, "pg_control_checkpoint()"))
	}
	var ctl Control
	if ctl.Checkpoint, err = wal.ParseLSN(ckpt); err != nil {
		return Control{}, err
	}
	if ctl.Redo, err = wal.ParseLSN(redo); err != nil {
		return Control{}, err
	}
	ctl.Timeline = uint32(tli)
	return ctl, nil
}

// BackupStopResult is what pg_backup_stop returns.
type BackupStopResult struct {
	LSN           wal.LSN
	Label         string // backup_label content
	TablespaceMap string // tablespace_map content ("" without tablespaces)
	NextXID       uint64 // first transaction id not yet assigned when the backup stopped
}

// BackupStop ends the backup. It does not wait for WAL archiving inside PostgreSQL
// (that wait has no bound); the caller waits for the stop segment itself.
func (c *Conn) BackupStop(ctx context.Context) (BackupStopResult, error) {
	q := "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(false)"
	if c.Major() < 15 {
		q = "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_stop_backup(false, false)"
	}
	var r BackupStopResult
	var lsn string
	if err := c.c.QueryRow(ctx, q).Scan(&lsn, &r.Label, &r.TablespaceMap); err != nil {
		return r, fmt.Errorf("stop backup: %w", privilegeHint(err, "pg_backup_stop(boolean)"))
	}
	var err error
	if r.LSN, err = wal.ParseLSN(lsn); err != nil {
		return r, err
	}
	var xmax string
	if err := c.c.QueryRow(ctx, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text").Scan(&xmax); err != nil {
		return r, fmt.Errorf("read next transaction id: %w", err)
	}
	r.NextXID, _ = strconv.ParseUint(xmax, 10, 64)
	return r, nil
}

// WALFileName is pg_walfile_name(lsn) on the server's current timeline.
func (c *Conn) WALFileName(ctx context.Context, lsn wal.LSN) (string, error) {
	var name string
	if err := c.c.QueryRow(ctx, "SELECT pg_walfile_name($1::pg_lsn)", lsn.String()).Scan(&name); err != nil {
		return "", fmt.Errorf("WAL file name of %s: %w", lsn, err)
	}
	return name, nil
}

// ClusterInfo is what a backup records about the cluster.
type ClusterInfo struct {
	SystemID      uint64
	DataDirectory string
	Checksums     bool
	SegSize       uint64
	BlockSize     int
	SegmentBlocks int // blocks per relation segment file (RELSEG_SIZE)
	Tablespaces   []Tablespace
}

// Tablespace is a user tablespace (pg_tblspc/<OID> → Location).
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
}

// Cluster reads what a backup records about the cluster.
func (c *Conn) Cluster(ctx context.Context) (ClusterInfo, error) {
	var ci ClusterInfo
	var sys int64
	var checksum int32
	var seg int64
	err := c.c.QueryRow(ctx, `SELECT s.system_identifier, current_setting('data_directory'),
		i.data_page_checksum_version, i.bytes_per_wal_segment, i.database_block_size, i.blocks_per_segment
		FROM pg_control_system() s, pg_control_init() i`).Scan(&sys, &ci.DataDirectory, &checksum, &seg, &ci.BlockSize, &ci.SegmentBlocks)
	if err != nil {
		return ci, fmt.Errorf("read cluster settings: %w", privilegeHint(err, "pg_control_init()"))
	}
	ci.SystemID, ci.Checksums, ci.SegSize = uint64(sys), checksum != 0, uint64(seg)
	rows, err := c.c.Query(ctx, `SELECT oid::int8, spcname, pg_tablespace_location(oid)
		FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`)
	if err != nil {
		return ci, fmt.Errorf("list tablespaces: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t Tablespace
		var oid int64
		if err := rows.Scan(&oid, &t.Name, &t.Location); err != nil {
			return ci, err
		}
		t.OID = uint32(oid)
		ci.Tablespaces = append(ci.Tablespaces, t)
	}
	return ci, rows.Err()
}

// CreateRestorePoint makes a named restore point and returns its LSN and timeline.
func (c *Conn) CreateRestorePoint(ctx context.Context, name string) (wal.LSN, uint32, error) {
	var lsn string
	if err := c.c.QueryRow(ctx, "SELECT pg_create_restore_point($1)::text", name).Scan(&lsn); err != nil {
		return 0, 0, fmt.Errorf("create restore point: %w", privilegeHint(err, "pg_create_restore_point(text)"))
	}
	l, err := wal.ParseLSN(lsn)
	if err != nil {
		return 0, 0, err
	}
	var tli int64
	if err := c.c.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&tli); err != nil {
		return 0, 0, fmt.Errorf("read timeline: %w", err)
	}
	return l, uint32(tli), nil
}

// InRecovery reports pg_is_in_recovery().
func (c *Conn) InRecovery(ctx context.Context) (bool, error) {
	var r bool
	err := c.c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r)
	return r, err
}

// ReplayPaused reports pg_is_wal_replay_paused(): a standby whose replay was paused
// (pg_wal_replay_pause()) reaches no new point, so a backup there cannot stop.
func (c *Conn) ReplayPaused(ctx context.Context) (bool, error) {
	var r bool
	if err := c.c.QueryRow(ctx, "SELECT pg_is_wal_replay_paused()").Scan(&r); err != nil {
		return false, fmt.Errorf("read whether replay is paused: %w", err)
	}
	return r, nil
}

// ReplayLSN is pg_last_wal_replay_lsn(): how far a standby has replayed.
func (c *Conn) ReplayLSN(ctx context.Context) (wal.LSN, error) {
	return c.lsn(ctx, "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text", "the replay position")
}

// CurrentLSN is pg_current_wal_lsn(): where a primary writes WAL.
func (c *Conn) CurrentLSN(ctx context.Context) (wal.LSN, error) {
	return c.lsn(ctx, "SELECT pg_current_wal_lsn()::text", "the WAL position")
}

func (c *Conn) lsn(ctx context.Context, q, what string) (wal.LSN, error) {
	var s string
	if err := c.c.QueryRow(ctx, q).Scan(&s); err != nil {
		return 0, fmt.Errorf("read %s: %w", what, err)
	}
	return wal.ParseLSN(s)
}

// RecoveryTimeline is the timeline of a standby's minimum recovery point
// (pg_control_recovery()): the timeline of the stop point pg_backup_stop returns there.
func (c *Conn) RecoveryTimeline(ctx context.Context) (uint32, error) {
	var tli int64
	if err := c.c.QueryRow(ctx, "SELECT min_recovery_end_timeline FROM pg_control_recovery()").Scan(&tli); err != nil {
		return 0, fmt.Errorf("read the recovery timeline: %w", privilegeHint(err, "pg_control_recovery()"))
	}
	return uint32(tli), nil
}

// Checkpoint runs CHECKPOINT (superuser or pg_checkpoint) and returns the location of
// the checkpoint record it wrote (pg_control_checkpoint()).
func (c *Conn) Checkpoint(ctx context.Context) (wal.LSN, error) {
	if _, err := c.c.Exec(ctx, "CHECKPOINT"); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" {
			return 0, fmt.Errorf("checkpoint: %w (connect as a superuser, or GRANT pg_checkpoint to the pgb role)", err)
		}
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	ctl, err := c.ControlCheckpoint(ctx)
	return ctl.Checkpoint, err
}

// WALSender is a connected WAL receiver, as pg_stat_replication shows it.
type WALSender struct {
	AppName, State, SyncState string
}

// WALSenders lists the server's WAL senders (standbys, pg_receivewal, pgb wal-stream).
func (c *Conn) WALSenders(ctx context.Context) ([]WALSender, error) {
	rows, err := c.c.Query(ctx, "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, '') FROM pg_stat_replication")
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_replication: %w", err)
	}
	defer rows.Close()
	var out []WALSender
	for rows.Next() {
		var s WALSender
		if err := rows.Scan(&s.AppName, &s.State, &s.SyncState); err != nil {
			return nil, fmt.Errorf("read pg_stat_replication: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pg_stat_replication: %w", err)
	}
	return out, nil
}
