package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

func TestParseAcceptsWhatPostgreSQLArchives(t *testing.T) {
	cases := []struct {
		name     string
		kind     Kind
		tli      uint32
		log, seg uint32
	}{
		{"000000010000000000000001", Segment, 1, 0, 1},
		{"0000000A000000FF000000FE", Segment, 10, 255, 254},
		{"000000020000000300000004.partial", Partial, 2, 3, 4},
		{"000000010000000000000002.00000028.backup", Backup, 1, 0, 2},
		{"00000002.history", History, 2, 0, 0},
	}
	for _, c := range cases {
		f, err := Parse(c.name)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.name, err)
		}
		if f.Kind != c.kind || f.Timeline != c.tli || f.Log != c.log || f.Seg != c.seg || f.Name != c.name {
			t.Errorf("Parse(%q) = %+v", c.name, f)
		}
	}
}

func TestParseRefusesEverythingElse(t *testing.T) {
	for _, name := range []string{
		"", "postmaster.pid", "00000001000000000000001", "0000000100000000000000011",
		"000000010000000000000001.ready", "00000001000000000000000a", "pg_wal/000000010000000000000001",
		"000000000000000000000001", "00000000.history", "0000001.history", "000000010000000000000002.0000002.backup",
		"000000010000000000000001.partial.tmp", "RECOVERYXLOG", "../000000010000000000000001",
	} {
		if f, err := Parse(name); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", name, f)
		}
	}
}

func TestSegmentNamesAndNumbers(t *testing.T) {
	const mb16 = 16 << 20
	if got := SegmentFileName(1, 0x1FF, mb16); got != "0000000100000001000000FF" {
		t.Errorf("SegmentFileName = %s", got)
	}
	f, _ := Parse("0000000100000001000000FF")
	if n := f.SegmentNumber(mb16); n != 0x1FF {
		t.Errorf("SegmentNumber = %#x", n)
	}
	if got := SegmentFileName(3, 5, 1<<30); got != "000000030000000100000001" {
		t.Errorf("1 GiB segments: %s", got)
	}
}

func TestLSN(t *testing.T) {
	l, err := ParseLSN("16/B374D848")
	if err != nil || l != LSN(0x16B374D848) || l.String() != "16/B374D848" {
		t.Fatalf("ParseLSN = %v, %v", l, err)
	}
	if l.SegmentNumber(16<<20) != 0x16B3 {
		t.Errorf("SegmentNumber = %#x", l.SegmentNumber(16<<20))
	}
	for _, bad := range []string{"", "16", "16/", "/1", "G/1", "123456789/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	var back LSN
	if err := back.UnmarshalText([]byte("0/3000028")); err != nil || back != 0x3000028 {
		t.Errorf("UnmarshalText = %v %v", back, err)
	}
}

func TestParseSegmentHeader(t *testing.T) {
	b := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002|0x0004)
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], 0x3000000)
	le.PutUint64(b[24:], 7321456789012345678)
	le.PutUint32(b[32:], 16<<20)
	le.PutUint32(b[36:], 8192)
	h, err := ParseSegmentHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.SystemID != 7321456789012345678 || h.SegSize != 16<<20 || h.MajorGuess != 15 || h.Timeline != 1 || h.PageAddr != 0x3000000 {
		t.Errorf("header = %+v", h)
	}
	le.PutUint16(b[2:], 0) // short header: not the start of a segment
	if _, err := ParseSegmentHeader(b); !errors.Is(err, ErrNoHeader) {
		t.Errorf("short header accepted: %v", err)
	}
	if _, err := ParseSegmentHeader(b[:10]); !errors.Is(err, ErrNoHeader) {
		t.Errorf("10 bytes accepted: %v", err)
	}
}

// A name Parse accepts is one PostgreSQL would write: parsed again it gives the same
// file, and its kind, timeline and segment agree with its text.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"000000010000000000000001", "00000002.history", "000000010000000A000000FF.partial",
		"000000010000000000000002.00000028.backup", "00000000000000000000000", "0000000100000000000000g1", "../00000001.history"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, err := Parse(name)
		if err != nil {
			return
		}
		if file.Name != name || file.Timeline == 0 {
			t.Fatalf("Parse(%q) = %+v", name, file)
		}
		again, err := Parse(file.Name)
		if err != nil || again != file {
			t.Fatalf("Parse(%q) again = %+v, %v; first %+v", name, again, err, file)
		}
		if file.Kind != History && name[:24] != fmt.Sprintf("%08X%08X%08X", file.Timeline, file.Log, file.Seg) {
			t.Fatalf("Parse(%q) = %+v: not the name of its timeline, log and segment", name, file)
		}
	})
}
