// Package pg talks to PostgreSQL: the data directory's control file and version, and
// (in conn.go) the SQL connection with version-specific statements.
package pg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgb-project/pgb/internal/crc32c"
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
	// Timeline is the last checkpoint's timeline (checkPointCopy.ThisTimeLineID).
	Timeline uint32
}

// SameCheckpoint reports whether c and o show the same last checkpoint: same location, redo
// point and timeline.
func (c Control) SameCheckpoint(o Control) bool {
	return c.Checkpoint == o.Checkpoint && c.Redo == o.Redo && c.Timeline == o.Timeline
}

// controlCRCOffset is offsetof(ControlFileData, crc) for each pg_control_version pgb
// knows: 1201 (PostgreSQL 12), 1300 (13 to 16) and 1700 (17). The fields before the
// crc kept their sizes across these (12's float4ByVal and 17's CheckPoint.wal_level
// took padding), so the offset is the same.
var controlCRCOffset = map[uint32]int{1201: 288, 1300: 288, 1700: 288}

// controlCRCChecked are the versions whose offset was confirmed on a real pg_control
// (testdata/pg_control_15). For the others a CRC that does not match at the computed
// offset is not taken as damage (the offset could be wrong): the file must instead
// read the same twice, as for an unknown version.
var controlCRCChecked = map[uint32]bool{1300: true}

// controlReadSize is how much of pg_control is read: PG_CONTROL_MAX_SAFE_SIZE, which
// holds ControlFileData in every version.
const controlReadSize = 512

// ErrControlCRC means pg_control's contents do not match its CRC-32C: damaged, or
// read while PostgreSQL rewrote it (it does so in place) and still torn after retries.
var ErrControlCRC = errors.New("pg_control's CRC does not match its contents")

// SealControl writes the CRC-32C of pg_control contents b (at least up to the crc
// field) into b, for the pg_control_version b holds. It is how a pg_control file is
// built (in tests).
func SealControl(b []byte) error {
	off, ok := controlCRCOffset[binary.LittleEndian.Uint32(b[8:])]
	if !ok || len(b) < off+4 {
		return fmt.Errorf("cannot seal a pg_control of version %d (%d bytes)", binary.LittleEndian.Uint32(b[8:]), len(b))
	}
	binary.LittleEndian.PutUint32(b[off:], crc32c.Checksum(b[:off]))
	return nil
}

// controlReads bounds how often pg_control is read while its CRC does not match:
// PostgreSQL rewrites it in place, so one read can see half of a write.
const controlReads = 5

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

// ReadControl reads the leading fields of DIR/global/pg_control and, for the versions
// pgb knows (PostgreSQL 12 to 17), verifies its CRC-32C. A mismatch is read again a
// few times, since PostgreSQL rewrites the file in place; it persists as an error
// wrapping ErrControlCRC. For an unknown version the CRC is not checked; instead the
// file is read until two reads agree.
func ReadControl(dataDir string) (Control, error) {
	p := filepath.Join(dataDir, "global", "pg_control")
	var prev []byte
	var err error
	for i := 0; i < controlReads; i++ {
		var b []byte
		if b, err = readControlFile(p, dataDir); err != nil {
			return Control{}, err
		}
		var c Control
		if c, err = parseControl(p, b); err != nil {
			return Control{}, err
		}
		off, known := controlCRCOffset[c.ControlVersion]
		crcOK := known && len(b) >= off+4 && binary.LittleEndian.Uint32(b[off:]) == crc32c.Checksum(b[:off])
		switch {
		case crcOK:
			return c, nil
		case known && controlCRCChecked[c.ControlVersion]:
			err = fmt.Errorf("%w: %s (read %d times): the file is damaged, or is not a pg_control file", ErrControlCRC, p, i+1)
		case prev != nil && bytes.Equal(prev, b):
			return c, nil
		default:
			err = fmt.Errorf("%s changed between %d reads (pg_control version %d: its CRC is not checked)", p, i+1, c.ControlVersion)
		}
		prev = b
	}
	return Control{}, err
}

func readControlFile(p, dataDir string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no global/pg_control (set --pgdata or PGDATA)", ErrNotDataDir, dataDir)
		}
		return nil, fmt.Errorf("read pg_control: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	b := make([]byte, controlReadSize)
	n, err := io.ReadFull(f, b)
	if err != nil && (!errors.Is(err, io.ErrUnexpectedEOF) || n < 16) {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return b[:n], nil
}

// parseControl reads system_identifier, pg_control_version, catalog_version_no,
// state, (padding), time, checkPoint, checkPointCopy.redo and .ThisTimeLineID: the
// layout of PostgreSQL 11 to 17.
func parseControl(p string, b []byte) (Control, error) {
	c := Control{
		SystemID:       binary.LittleEndian.Uint64(b[0:]),
		ControlVersion: binary.LittleEndian.Uint32(b[8:]),
		CatalogVersion: binary.LittleEndian.Uint32(b[12:]),
	}
	if c.SystemID == 0 || c.ControlVersion < 900 || c.ControlVersion > 10000 {
		return Control{}, fmt.Errorf("%s does not look like a pg_control file (system identifier %d, version %d)", p, c.SystemID, c.ControlVersion)
	}
	if len(b) >= 52 && c.ControlVersion >= 1100 {
		c.Checkpoint = wal.LSN(binary.LittleEndian.Uint64(b[32:]))
		c.Redo = wal.LSN(binary.LittleEndian.Uint64(b[40:]))
		c.Timeline = binary.LittleEndian.Uint32(b[48:])
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
