package pg

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// writeControl puts b as dir/global/pg_control.
func writeControl(t *testing.T, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testdata/pg_control_15 is the pg_control initdb of PostgreSQL 15 wrote: its CRC is
// where ReadControl looks for it.
func TestReadControlVerifiesTheCRC(t *testing.T) {
	real, err := os.ReadFile("testdata/pg_control_15")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ReadControl(writeControl(t, real))
	if err != nil {
		t.Fatalf("ReadControl of a real PostgreSQL 15 pg_control: %v", err)
	}
	if c.ControlVersion != 1300 || c.Timeline != 1 || c.Checkpoint == 0 || c.Redo == 0 || c.Redo > c.Checkpoint {
		t.Errorf("ReadControl = %+v", c)
	}

	for _, off := range []int{20, 100, 287} { // state, checkPointCopy, the byte before the crc
		bad := append([]byte(nil), real...)
		bad[off] ^= 0x40
		if _, err := ReadControl(writeControl(t, bad)); !errors.Is(err, ErrControlCRC) {
			t.Errorf("ReadControl with byte %d flipped = %v, want ErrControlCRC", off, err)
		}
	}

	built := make([]byte, 8192)
	binary.LittleEndian.PutUint64(built[0:], 7440292914373421110)
	binary.LittleEndian.PutUint32(built[8:], 1700)
	binary.LittleEndian.PutUint32(built[12:], 202406281)
	binary.LittleEndian.PutUint64(built[32:], 0x2000060)
	binary.LittleEndian.PutUint64(built[40:], 0x2000028)
	binary.LittleEndian.PutUint32(built[48:], 3)
	if err := SealControl(built); err != nil {
		t.Fatal(err)
	}
	c, err = ReadControl(writeControl(t, built))
	if err != nil || c.Checkpoint != 0x2000060 || c.Redo != 0x2000028 || c.Timeline != 3 {
		t.Errorf("ReadControl of a sealed pg_control = %+v, %v", c, err)
	}
}
