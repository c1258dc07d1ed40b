package drill

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/restore"
)

func TestParseCheckSQL(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Statement
		err      bool
	}{
		{"one per line", "SELECT true;\nSELECT 1;\n", []Statement{{1, "SELECT true"}, {2, "SELECT 1"}}, false},
		{"multi-line, comments and blanks skipped", "-- first\n\nSELECT count(*) > 0\n  FROM t;  \n-- x\nSELECT 2",
			[]Statement{{3, "SELECT count(*) > 0\n  FROM t"}, {6, "SELECT 2"}}, false},
		{"a ; inside a line does not split", "SELECT ';' = ';'\n;\n", []Statement{{1, "SELECT ';' = ';'"}}, false},
		{"empty file", "\n-- nothing\n", nil, true},
		{"empty statement", ";\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCheckSQL(tt.in)
			if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestPassed(t *testing.T) {
	tests := []struct {
		rows [][]any
		want bool
	}{
		{nil, false},
		{[][]any{{true}}, true},
		{[][]any{{false}}, false},
		{[][]any{{nil}}, false},
		{[][]any{{int64(0)}}, true},
		{[][]any{{"x", 1}}, true},
	}
	for _, tt := range tests {
		if got, why := Passed(tt.rows); got != tt.want {
			t.Errorf("Passed(%v) = %v (%s), want %v", tt.rows, got, why, tt.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for in, kind := range map[string]restore.TargetKind{
		"": restore.ToEnd, "latest": restore.ToEnd, "0/3000060": restore.ToLSN,
		"2026-12-01T10:00:00Z": restore.ToTime, "before-upgrade": restore.ToName,
	} {
		got, err := ParseTarget(in)
		if err != nil || got.Kind != kind || got.Action != "pause" {
			t.Errorf("ParseTarget(%q) = %+v, %v; want kind %v", in, got, err, kind)
		}
	}
}

func TestReportWriteFitsIn80Columns(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	gap := 0.25
	r := &Report{OK: false, Error: strings.Repeat("a long error ", 20), Target: "the end of the archive",
		Backup:  BackupUsed{Name: "20261201T090000Z", PGVersion: 15, Timeline: 1, StopTime: now},
		WAL:     WALRange{First: "000000010000000000000002", Last: "000000010000000000000009"},
		Reached: Reached{ReplayLSN: 0x9000000, LastCommit: &now, Promoted: true},
		RTO:     RTO{TotalSeconds: 12, RestoreSeconds: 4, ReplaySeconds: 8, BytesRestored: 3 << 30, BytesReplayed: 1 << 20},
		RPO:     RPO{LastArchivedCommit: &now, GapSeconds: &gap, NewestWAL: "000000010000000000000009", NewestWALAgeSeconds: 30},
		Checks: []CheckResult{{Name: "check-sql line 1: " + strings.Repeat("SELECT ", 30), Passed: false, Detail: "returned false"},
			{Name: "connect to every database", Passed: true}},
		Warnings: []string{"amcheck not run: pg_amcheck not found"}}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if len([]rune(l)) > 80 {
			t.Errorf("wider than 80 columns: %q", l)
		}
	}
	for _, want := range []string{"Drill FAILED", "RTO: 12.0 s", "3.0 GB restored", "gap 0.250 s", "FAIL check-sql line 1", "warning: amcheck not run"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRunRefusesANonEmptyScratchDirAndLeavesItAlone(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "precious")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), nil, Options{Scratch: dir})
	if err == nil || rep != nil || !strings.Contains(err.Error(), "--scratch") {
		t.Fatalf("Run on a non-empty scratch dir: %v, %v", rep, err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("the scratch dir's content was touched: %v", err)
	}
}

func TestParseTargetFlags(t *testing.T) {
	tests := []struct {
		name string
		in   TargetFlags
		want restore.Target
		err  bool
	}{
		{"default", TargetFlags{}, restore.Target{Kind: restore.ToEnd, Action: "pause", Timeline: "latest"}, false},
		{"xid", TargetFlags{XID: "750", Exclusive: true, Timeline: "2"},
			restore.Target{Kind: restore.ToXID, XID: 750, Exclusive: true, Action: "pause", Timeline: "2"}, false},
		{"full xid after latest", TargetFlags{Target: "latest", XID: "4294968046"},
			restore.Target{Kind: restore.ToXID, XID: 4294968046, Action: "pause", Timeline: "latest"}, false},
		{"exclusive LSN", TargetFlags{Target: "0/3000060", Exclusive: true, Timeline: "current"},
			restore.Target{Kind: restore.ToLSN, LSN: 0x3000060, Exclusive: true, Action: "pause", Timeline: "current"}, false},
		{"xid not a number", TargetFlags{XID: "seven"}, restore.Target{}, true},
		{"xid below the first normal one", TargetFlags{XID: "2"}, restore.Target{}, true},
		{"xid and a name", TargetFlags{Target: "before-upgrade", XID: "750"}, restore.Target{}, true},
		{"exclusive name", TargetFlags{Target: "before-upgrade", Exclusive: true}, restore.Target{}, true},
		{"exclusive end", TargetFlags{Exclusive: true}, restore.Target{}, true},
		{"bad timeline", TargetFlags{Timeline: "newest"}, restore.Target{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTargetFlags(tt.in)
		if (err != nil) != tt.err || err == nil && got != tt.want {
			t.Errorf("%s: ParseTargetFlags(%+v) = %+v, %v; want %+v (error %v)", tt.name, tt.in, got, err, tt.want, tt.err)
		}
	}
}

// A warning and the --keep commands are wrapped, never cut: the stop command pasted
// from the report is the whole command.
func TestReportWrapsWarningsAndKeepsCommandsWhole(t *testing.T) {
	stop := stopCommand("/usr/lib/postgresql/15/bin", "/tmp/pgb-drill-1234567890/my data/data", "/tmp/pgb-drill-1234567890/my data", true, 0, 987654, 987654)
	leftover := leftover{Dir: "/tmp/pgb-drill-42", Pid: 4242, Stop: stop}
	r := &Report{OK: true, Target: "the end of the archive", Warnings: []string{leftover.String()},
		Kept: &Kept{Pid: 4343, Connect: "psql -h /tmp/pgb-drill-1234567890 -p 45678 -U postgres postgres", Stop: stop}}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, l := range strings.Split(out, "\n") {
		if len([]rune(l)) > 80 || strings.HasSuffix(l, "…") {
			t.Errorf("line cut or wider than 80 columns: %q", l)
		}
	}
	_, after, _ := strings.Cut(out, "  stop: ")
	got := strings.TrimSpace(strings.ReplaceAll(after, " \\\n    ", " "))
	if got != stop {
		t.Errorf("the stop command as printed, joined: %q, want %q\n%s", got, stop, out)
	}
	t.Log("\n" + out)
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "pid 4242 on /tmp/pgb-drill-42") {
		t.Errorf("the leftover warning is not whole:\n%s", out)
	}
}

// A scratch directory whose path holds a comma is refused before anything is made:
// PostgreSQL (unix_socket_directories) and libpq (host) read it as a list of two.
func TestDrillRefusesAScratchDirWithACommaInItsPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a,b")
	rep, err := Run(context.Background(), nil, Options{Scratch: dir})
	if err == nil || rep != nil || !strings.Contains(err.Error(), "comma") {
		t.Fatalf("Run with --scratch %s: %v, %v", dir, rep, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the scratch dir was made: %v", err)
	}
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "x,y"))
	if _, err := Run(context.Background(), nil, Options{}); err == nil || !strings.Contains(err.Error(), "comma") {
		t.Fatalf("Run with TMPDIR holding a comma: %v", err)
	}
}
