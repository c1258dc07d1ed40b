// Package pg talks to PostgreSQL: the data directory's control file and version, and
// (in conn.go) the SQL connection with version-specific statements.
package pg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgb-project/pgb/internal/wal"
)

// Control is what pgb needs from global/pg_control. Only the leading fields are read:
// their layout has been the same in every release since 9.x.
type Control struct {
	SystemID       uint64
	ControlVersion uint32
	CatalogVersion uint32
	// Checkpoint and Redo are the last checkpoint's location and its redo point
	// (PostgreSQL 11 and later; zero for older control files).
	Checkpoint wal.LSN
	Redo       wal.LSN
}

// catalogMajor lists the catalog version each major release shipped with (first of
// its line); development builds in between map to the release below them.
var catalogMajor = []struct {
	cat   uint32
	major int
}{
	{202406281, 17}, {202307071, 16}, {202209061, 15}, {202107181, 14},
	{202007201, 13}, {201909212, 12}, {201809051, 11}, {201707211, 10},
}

// MajorFromCatalog infers the major version from a catalog version number (0 if older
// than anything pgb knows).
func MajorFromCatalog(cat uint32) int {
	for _, c := range catalogMajor {
		if cat >= c.cat {
			return c.major
		}
	}
	return 0
}

// ErrNotDataDir means the directory has no global/pg_control.
var ErrNotDataDir = errors.New("not a PostgreSQL data directory")

// ReadControl reads the leading fields of DIR/global/pg_control.
func ReadControl(dataDir string) (Control, error) {
	p := filepath.Join(dataDir, "global", "pg_control")
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Control{}, fmt.Errorf("%w: %s has no global/pg_control (set --pgdata or PGDATA)", ErrNotDataDir, dataDir)
		}
		return Control{}, fmt.Errorf("read pg_control: %w", err)
	}
	defer f.Close()
	// system_identifier, pg_control_version, catalog_version_no, state, (padding),
	// time, checkPoint, checkPointCopy.redo: the layout of PostgreSQL 11 to 17.
	var b [48]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && (err != io.ErrUnexpectedEOF || n < 16) {
		return Control{}, fmt.Errorf("read %s: %w", p, err)
	}
	c := Control{
		SystemID:       binary.LittleEndian.Uint64(b[0:]),
		ControlVersion: binary.LittleEndian.Uint32(b[8:]),
		CatalogVersion: binary.LittleEndian.Uint32(b[12:]),
	}
	if c.SystemID == 0 || c.ControlVersion < 900 || c.ControlVersion > 10000 {
		return Control{}, fmt.Errorf("%s does not look like a pg_control file (system identifier %d, version %d)", p, c.SystemID, c.ControlVersion)
	}
	if n == len(b) && c.ControlVersion >= 1100 {
		c.Checkpoint = wal.LSN(binary.LittleEndian.Uint64(b[32:]))
		c.Redo = wal.LSN(binary.LittleEndian.Uint64(b[40:]))
	}
	return c, nil
}

// MajorVersion reads DIR/PG_VERSION ("15"), falling back to the catalog version in
// pg_control when the file is missing.
func MajorVersion(dataDir string, c Control) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err == nil {
		v, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr != nil {
			return 0, fmt.Errorf("PG_VERSION in %s is not a version: %q", dataDir, strings.TrimSpace(string(b)))
		}
		return v, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("read PG_VERSION: %w", err)
	}
	if m := MajorFromCatalog(c.CatalogVersion); m != 0 {
		return m, nil
	}
	return 0, fmt.Errorf("cannot tell the PostgreSQL version of %s: no PG_VERSION and unknown catalog version %d", dataDir, c.CatalogVersion)
}
