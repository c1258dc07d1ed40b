package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SwitchWAL writes a small WAL record (so there is always something to
// switch away from) and forces a WAL segment switch. It returns the file
// name of the segment that was completed, e.g. "000000010000000000000003".
// The server must not be in recovery.
func (c *Cluster) SwitchWAL(t testing.TB) string {
	t.Helper()
	var name string
	err := c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		return switchWAL(ctx, conn, &name)
	})
	if err != nil {
		t.Fatalf("pgtest: switching WAL: %v", err)
	}
	return name
}

func switchWAL(ctx context.Context, conn *pgx.Conn, name *string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_logical_emit_message(false, 'pgtest', 'switch')"); err != nil {
		return err
	}
	// pg_switch_wal() returns the end of the completed segment; the
	// segment containing the byte before it is the one that was completed.
	return conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(name)
}

// GenerateWAL inserts rows into the table pgtest_wal (created if needed) and
// switches WAL after each batch, so that at least segments new WAL segments
// are completed. It returns the name of the last completed segment.
func (c *Cluster) GenerateWAL(t testing.TB, segments int) string {
	t.Helper()
	if segments < 1 {
		t.Fatalf("pgtest: GenerateWAL(%d): need at least one segment", segments)
	}
	var last string
	err := c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS pgtest_wal (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), pad text)"); err != nil {
			return err
		}
		for range segments {
			if _, err := conn.Exec(ctx, "INSERT INTO pgtest_wal (pad) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 1000) g"); err != nil {
				return err
			}
			if err := switchWAL(ctx, conn, &last); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pgtest: generating WAL: %v", err)
	}
	return last
}

// ArchiverStats is a snapshot of pg_stat_archiver.
type ArchiverStats struct {
	ArchivedCount   int64
	LastArchivedWAL string // "" if none
	FailedCount     int64
	LastFailedWAL   string // "" if none
}

func (s ArchiverStats) String() string {
	return fmt.Sprintf("archived_count=%d last_archived_wal=%q failed_count=%d last_failed_wal=%q",
		s.ArchivedCount, s.LastArchivedWAL, s.FailedCount, s.LastFailedWAL)
}

// TryArchiverStats reads pg_stat_archiver.
func (c *Cluster) TryArchiverStats() (ArchiverStats, error) {
	rows, err := c.TryQueryRows("SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver")
	if err != nil {
		return ArchiverStats{}, err
	}
	if len(rows) != 1 || len(rows[0]) != 4 {
		return ArchiverStats{}, fmt.Errorf("unexpected pg_stat_archiver result %q", rows)
	}
	var s ArchiverStats
	s.ArchivedCount, err = strconv.ParseInt(rows[0][0], 10, 64)
	if err != nil {
		return s, err
	}
	s.FailedCount, err = strconv.ParseInt(rows[0][2], 10, 64)
	s.LastArchivedWAL, s.LastFailedWAL = rows[0][1], rows[0][3]
	return s, err
}

// ArchiverStats is TryArchiverStats failing the test on error.
func (c *Cluster) ArchiverStats(t testing.TB) ArchiverStats {
	t.Helper()
	s, err := c.TryArchiverStats()
	if err != nil {
		t.Fatalf("pgtest: reading pg_stat_archiver: %v", err)
	}
	return s
}

// isSegmentName reports whether name is a plain 24-hex-digit WAL segment
// file name (not a .history, .backup or .partial file).
func isSegmentName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for _, r := range name {
		if !strings.ContainsRune("0123456789ABCDEF", r) {
			return false
		}
	}
	return true
}

// WaitArchived waits until the archiver has archived walName: its
// pg_wal/archive_status/<walName>.done exists, or pg_stat_archiver's
// last_archived_wal is a segment of the same timeline at or after walName
// (WAL is archived in order). On timeout it fails with the archiver
// statistics and the server log tail.
func (c *Cluster) WaitArchived(t testing.TB, walName string, timeout time.Duration) {
	t.Helper()
	done := filepath.Join(c.dataDir, "pg_wal", "archive_status", walName+".done")
	c.waitFor(t, "archiving of "+walName, timeout, func() (bool, string, error) {
		if _, err := os.Stat(done); err == nil {
			return true, "", nil
		}
		s, err := c.TryArchiverStats()
		if err != nil {
			return false, err.Error(), nil
		}
		last := s.LastArchivedWAL
		if isSegmentName(last) && isSegmentName(walName) && last[:8] == walName[:8] && last >= walName {
			return true, "", nil
		}
		return false, s.String(), nil
	})
}

// WaitArchiverIdle waits until no pg_wal/archive_status/*.ready files
// remain, i.e. everything completed so far has been archived.
func (c *Cluster) WaitArchiverIdle(t testing.TB, timeout time.Duration) {
	t.Helper()
	status := filepath.Join(c.dataDir, "pg_wal", "archive_status")
	c.waitFor(t, "the archiver to become idle", timeout, func() (bool, string, error) {
		ready, err := filepath.Glob(filepath.Join(status, "*.ready"))
		if err != nil {
			return false, "", err
		}
		if len(ready) == 0 {
			return true, "", nil
		}
		reason := fmt.Sprintf("%d .ready files, first %s", len(ready), filepath.Base(ready[0]))
		if s, err := c.TryArchiverStats(); err == nil {
			reason += "; " + s.String()
		}
		return false, reason, nil
	})
}

// WALFile returns the path of a file in the cluster's pg_wal directory.
func (c *Cluster) WALFile(name string) string {
	return filepath.Join(c.dataDir, "pg_wal", name)
}
