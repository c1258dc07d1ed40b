package wal

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseHistory(t *testing.T) {
	for _, tc := range []struct {
		name string
		tli  uint32
		in   string
		want []TimelineSpan
	}{
		{"what PostgreSQL writes", 3,
			"1\t0/5000000\tno recovery target specified\n\n2\t0/7000A28\tbefore 2026-11-23 20:39:44.5+00\n",
			[]TimelineSpan{{1, 0, 0x5000000}, {2, 0x5000000, 0x7000A28}, {3, 0x7000A28, EndOfTimeline}}},
		{"comments, blanks, spaces, no final newline", 2, "# a comment\n  1 1/0 at restore point \"x\"",
			[]TimelineSpan{{1, 0, 0x100000000}, {2, 0x100000000, EndOfTimeline}}},
		{"gaps in the timeline numbers", 5, "1\t0/3000000\tx\n3\t0/4000000\ty\n",
			[]TimelineSpan{{1, 0, 0x3000000}, {3, 0x3000000, 0x4000000}, {5, 0x4000000, EndOfTimeline}}},
		{"no parents", 4, "", []TimelineSpan{{4, 0, EndOfTimeline}}},
		{"branched at the same point twice", 3, "1\t0/5000000\n2\t0/5000000\n",
			[]TimelineSpan{{1, 0, 0x5000000}, {2, 0x5000000, 0x5000000}, {3, 0x5000000, EndOfTimeline}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHistory(tc.tli, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseHistory = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseHistoryRefusesDamage(t *testing.T) {
	for name, tc := range map[string]struct {
		tli uint32
		in  string
	}{
		"timeline 0":            {0, ""},
		"one field":             {2, "1\n"},
		"not a number":          {2, "one\t0/1\n"},
		"negative":              {2, "-1\t0/1\n"},
		"parent 0":              {2, "0\t0/1\n"},
		"not an LSN":            {2, "1\t5000000\n"},
		"parent not below":      {2, "2\t0/1\n"},
		"parent above":          {2, "7\t0/1\n"},
		"timelines go back":     {4, "2\t0/1\n1\t0/2\n"},
		"timeline repeated":     {4, "1\t0/1\n1\t0/2\n"},
		"switch points go back": {4, "1\t0/5\n2\t0/4\n"},
		"too large":             {2, strings.Repeat("#", MaxHistorySize+1)},
		"huge timeline":         {2, "99999999999\t0/1\n"},
	} {
		if got, err := ParseHistory(tc.tli, []byte(tc.in)); !errors.Is(err, ErrBadHistory) {
			t.Errorf("%s: ParseHistory = %+v, %v; want ErrBadHistory", name, got, err)
		}
	}
}

func FuzzParseHistory(f *testing.F) {
	f.Add(uint32(3), []byte("1\t0/5000000\tno recovery target specified\n2\t0/7000A28\tbefore 2026-11-23 20:39:44.5+00\n"))
	f.Add(uint32(2), []byte("# comment\n\n  1 FFFFFFFF/FFFFFFFF at restore point \"x\""))
	f.Add(uint32(2), []byte(""))
	f.Add(uint32(9), []byte("1\t0/1\n1\t0/0\n"))
	f.Add(uint32(1), []byte("\x00\t\xff/\n"))
	f.Fuzz(func(t *testing.T, tli uint32, b []byte) {
		spans, err := ParseHistory(tli, b)
		if err != nil {
			if !errors.Is(err, ErrBadHistory) {
				t.Fatalf("error %v does not wrap ErrBadHistory", err)
			}
			return
		}
		if len(spans) == 0 || spans[len(spans)-1].TLI != tli || spans[len(spans)-1].End != EndOfTimeline {
			t.Fatalf("the last span is not timeline %d to the end: %+v", tli, spans)
		}
		for i, s := range spans {
			if s.Begin > s.End {
				t.Fatalf("span %d begins after it ends: %+v", i, s)
			}
			if i > 0 && (s.TLI <= spans[i-1].TLI || s.Begin != spans[i-1].End) {
				t.Fatalf("spans %d and %d do not follow each other: %+v", i-1, i, spans)
			}
		}
	})
}
