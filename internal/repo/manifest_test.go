package repo

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestKeys(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{BackupPrefix("20261123T203944Z"), "backups/20261123T203944Z/"},
		{PartKey("20261123T203944Z", 1), "backups/20261123T203944Z/part-00001.tar"},
		{PartKey("20261123T203944Z-2", 123456), "backups/20261123T203944Z-2/part-123456.tar"},
		{ManifestKey("20261123T203944Z"), "backups/20261123T203944Z/manifest"},
		{restorePointKey("before-drop"), "restore-points/before-drop.json"},
	} {
		if tc.got != tc.want {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
		if err := storage.ValidKey(tc.got); err != nil && !strings.HasSuffix(tc.got, "/") {
			t.Error(err)
		}
	}
}

func testManifest(name string, stop wal.LSN) *Manifest {
	start := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	return &Manifest{
		Summary: Summary{
			Name: name, SystemID: 7440292914373421110, PGVersion: 15, WALSegSize: 16 << 20, Timeline: 1,
			StartLSN: stop - 0x100, StopLSN: stop, StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000002",
			StartTime: start, StopTime: start.Add(time.Duration(stop)), NextXID: uint64(stop),
			Compression: "lz4", Size: 10, StoredSize: 20,
		},
		Label: "START WAL LOCATION: x\n",
		Parts: []Part{{N: 1, Files: 2, Size: 10, Stored: 20}},
		Dirs:  []Dir{{Path: "global", Mode: 0o700}, {Path: "base", Mode: 0o700}},
		Files: []File{
			{Path: "global/pg_control", Size: 8, Mode: 0o600, MTime: start, CRC: "01020304", Part: 1},
			{Path: "PG_VERSION", Size: 2, Mode: 0o600, MTime: start, CRC: "0a0b0c0d", Part: 1},
		},
		Links:       []Link{{Path: "pg_log", Target: "/var/log/pg"}},
		Tablespaces: []Tablespace{{OID: 16400, Name: "ts", Location: "/srv/ts"}},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	m := testManifest("20261123T200000Z", 0x2000100)
	m.Sort()
	if m.Dirs[0].Path != "base" || m.Files[0].Path != "PG_VERSION" {
		t.Errorf("Sort: dirs %v, files %v", m.Dirs, m.Files)
	}
	if err := New(st, Options{}).PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := New(st, Options{}).ReadManifest(ctx, m.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != FormatVersion || got.Name != m.Name || got.SystemID != m.SystemID || got.StopLSN != m.StopLSN ||
		got.StartLSN != m.StartLSN || !got.StopTime.Equal(m.StopTime) || got.NextXID != m.NextXID || got.Label != m.Label ||
		len(got.Files) != 2 || !reflect.DeepEqual(got.Files[1], m.Files[1]) || !got.Files[0].MTime.Equal(m.Files[0].MTime) ||
		len(got.Parts) != 1 || got.Parts[0] != m.Parts[0] || len(got.Links) != 1 || got.Links[0] != m.Links[0] ||
		len(got.Tablespaces) != 1 || got.Tablespaces[0] != m.Tablespaces[0] {
		t.Errorf("manifest round trip:\n got %+v\nwant %+v", got, m)
	}
	if got.Duration() != m.StopTime.Sub(m.StartTime) {
		t.Errorf("Duration = %s", got.Duration())
	}

	// A manifest is never replaced.
	m2 := testManifest(m.Name, 0x9000000)
	if err := New(st, Options{}).PutBackup(ctx, m2); !errors.Is(err, storage.ErrExist) {
		t.Errorf("second PutManifest = %v, want ErrExist", err)
	}
	if got, _ := New(st, Options{}).ReadManifest(ctx, m.Name); got == nil || got.StopLSN != m.StopLSN {
		t.Errorf("the manifest was replaced: %+v", got)
	}

	// Stored compressed and checksummed: not plain JSON.
	rc, err := st.Get(ctx, ManifestKey(m.Name), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	er, err := envelope.NewReader(rc)
	if err != nil {
		t.Errorf("manifest is not an envelope: %v", err)
	} else {
		er.Close()
	}
	rc.Close()
}

func TestReadManifestErrors(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if _, err := New(st, Options{}).ReadManifest(ctx, "20990101T000000Z"); !errors.Is(err, ErrNoBackup) || !strings.Contains(err.Error(), "20990101T000000Z") {
		t.Errorf("missing manifest: %v, want ErrNoBackup naming it", err)
	}

	// Newer format.
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("future"), map[string]any{"format": IncrementalFormat + 1, "name": "future"}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Options{}).ReadManifest(ctx, "future"); err == nil || !strings.Contains(err.Error(), "upgrade pgb") {
		t.Errorf("newer format: %v", err)
	}

	// Not JSON inside a good envelope.
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("notjson"), "a string, not an object"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Options{}).ReadManifest(ctx, "notjson"); !errors.Is(err, envelope.ErrCorrupt) {
		t.Errorf("manifest that is not an object: %v, want ErrCorrupt", err)
	}

	// Damaged bytes.
	good := testManifest("damaged", 0x3000000)
	if err := New(st, Options{}).PutBackup(ctx, good); err != nil {
		t.Fatal(err)
	}
	fst := faulty.New(st, faulty.Rule{Op: faulty.Get, Fault: faulty.Corrupt, Offset: 20})
	if _, err := New(fst, Options{}).ReadManifest(ctx, "damaged"); !errors.Is(err, envelope.ErrCorrupt) || errors.Is(err, ErrNoBackup) {
		t.Errorf("damaged manifest: %v, want ErrCorrupt", err)
	}
	fst = faulty.New(st, faulty.Rule{Op: faulty.Get})
	if _, err := New(fst, Options{}).ReadManifest(ctx, "damaged"); !errors.Is(err, faulty.ErrInjected) || errors.Is(err, ErrNoBackup) {
		t.Errorf("unreadable manifest: %v, want the storage error", err)
	}
}

func TestListBackups(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if list, _, err := New(st, Options{}).ListBackups(ctx); err != nil || len(list) != 0 {
		t.Fatalf("empty repository: %v, %v", list, err)
	}
	// Names do not sort the way the backups do: StopLSN decides.
	for _, b := range []struct {
		name string
		stop wal.LSN
	}{{"c", 0x2000000}, {"a", 0x5000000}, {"b", 0x1000000}} {
		if err := New(st, Options{}).PutBackup(ctx, testManifest(b.name, b.stop)); err != nil {
			t.Fatal(err)
		}
	}
	// Not backups: an incomplete one (parts only), a nested manifest, other objects.
	for _, k := range []string{PartKey("incomplete", 1), "backups/x/y/manifest", "backups/manifest", "wal/0000000100000000/000000010000000000000001"} {
		if err := st.Put(ctx, k, strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	list, damaged, err := New(st, Options{}).ListBackups(ctx)
	if err != nil || len(damaged) != 0 {
		t.Fatal(err, damaged)
	}
	var got []string
	for _, m := range list {
		got = append(got, m.Name)
	}
	if strings.Join(got, ",") != "b,c,a" {
		t.Errorf("ListBackups = %v, want [b c a] (by stop LSN)", got)
	}

	fst := faulty.New(st, faulty.Rule{Op: faulty.List})
	if _, _, err := New(fst, Options{}).ListBackups(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("ListBackups with a failing list: %v", err)
	}
}

// One damaged manifest must not make every other backup unusable: it is reported and
// skipped. A storage error is not damage: it still fails the listing.
func TestListBackupsSkipsAndReportsDamagedManifests(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	for _, b := range []struct {
		name string
		stop wal.LSN
	}{{"a", 0x1000000}, {"b", 0x2000000}, {"c", 0x3000000}} {
		if err := New(st, Options{}).PutBackup(ctx, testManifest(b.name, b.stop)); err != nil {
			t.Fatal(err)
		}
	}
	// d: a good manifest of another backup copied under d's name.
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("d"), testManifest("a", 0x4000000)); err != nil {
		t.Fatal(err)
	}
	// e: written by a newer pgb.
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("e"), map[string]any{"format": IncrementalFormat + 1, "name": "e"}); err != nil {
		t.Fatal(err)
	}
	// b: its summary and its manifest damaged.
	fst := faulty.New(st, faulty.Rule{Op: faulty.Get, Key: BackupPrefix("b"), Fault: faulty.Corrupt, Offset: 30})
	list, damaged, err := New(fst, Options{}).ListBackups(ctx)
	if err != nil {
		t.Fatalf("ListBackups with one damaged manifest: %v", err)
	}
	var got []string
	for _, m := range list {
		got = append(got, m.Name)
	}
	if strings.Join(got, ",") != "a,c" {
		t.Errorf("usable backups %v, want [a c]", got)
	}
	if len(damaged) != 3 || damaged[0].Name != "b" || damaged[1].Name != "d" || damaged[2].Name != "e" {
		t.Fatalf("damaged = %v, want b, d, e", damaged)
	}
	for _, d := range damaged[:2] {
		if !errors.Is(d.Err, ErrDamagedBackup) || !strings.Contains(d.Err.Error(), "backup "+d.Name) {
			t.Errorf("damaged %s: %v, want ErrDamagedBackup naming it", d.Name, d.Err)
		}
	}
	if !errors.Is(damaged[0].Err, envelope.ErrCorrupt) {
		t.Errorf("damaged b: %v, want the corruption as the cause", damaged[0].Err)
	}
	if !errors.Is(damaged[2].Err, ErrNewerFormat) || !strings.Contains(damaged[2].Err.Error(), "upgrade pgb") {
		t.Errorf("newer format e: %v", damaged[2].Err)
	}

	// Reading one manifest fails in the store: that is not damage, the listing fails.
	fst = faulty.New(st, faulty.Rule{Op: faulty.Get, Key: BackupPrefix("b")})
	if list, damaged, err := New(fst, Options{}).ListBackups(ctx); !errors.Is(err, faulty.ErrInjected) || errors.Is(err, ErrDamagedBackup) {
		t.Errorf("ListBackups with an unreadable manifest = %d, %v, %v; want the storage error", len(list), damaged, err)
	}
	fst = faulty.New(st, faulty.Rule{Op: faulty.Get, Key: BackupPrefix("b"), Fault: faulty.Truncate, Offset: 30, Err: faulty.ErrInjected})
	if _, _, err := New(fst, Options{}).ListBackups(ctx); !errors.Is(err, faulty.ErrInjected) || errors.Is(err, ErrDamagedBackup) {
		t.Errorf("ListBackups with a manifest read breaking off = %v; want the storage error", err)
	}
}

// File names are bytes: one that is not valid UTF-8 must come back from the manifest
// exactly, not as U+FFFD.
func TestManifestKeepsNamesThatAreNotUTF8(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	m := testManifest("20261123T200000Z", 0x2000100)
	bad := "base/5/caf\xe9-\xff"
	m.Files = append(m.Files, File{Path: bad, Size: 1, Mode: 0o600, MTime: m.StartTime, CRC: "00000001", Part: 1})
	m.Dirs = append(m.Dirs, Dir{Path: "x\xff", Mode: 0o700})
	m.Links = append(m.Links, Link{Path: "log\xfe", Target: "/var/log/\xff"})
	m.Tablespaces = append(m.Tablespaces, Tablespace{OID: 16401, Name: "t2", Location: "/srv/\xc3\x28"})
	m.Sort()
	if err := New(st, Options{}).PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := New(st, Options{}).ReadManifest(ctx, m.Name)
	if err != nil {
		t.Fatal(err)
	}
	has := func(want string, paths []string) bool {
		for _, p := range paths {
			if p == want {
				return true
			}
		}
		return false
	}
	var files, dirs, links, targets, locs []string
	for _, f := range got.Files {
		files = append(files, f.Path)
	}
	for _, d := range got.Dirs {
		dirs = append(dirs, d.Path)
	}
	for _, l := range got.Links {
		links, targets = append(links, l.Path), append(targets, l.Target)
	}
	for _, ts := range got.Tablespaces {
		locs = append(locs, ts.Location)
	}
	for _, c := range []struct {
		want string
		in   []string
	}{{bad, files}, {"global/pg_control", files}, {"x\xff", dirs}, {"base", dirs}, {"log\xfe", links},
		{"/var/log/\xff", targets}, {"/var/log/pg", targets}, {"/srv/\xc3\x28", locs}, {"/srv/ts", locs}} {
		if !has(c.want, c.in) {
			t.Errorf("%q did not survive the manifest: got %q", c.want, c.in)
		}
	}
	for _, f := range got.Files {
		if f.Path == bad && (f.Size != 1 || f.CRC != "00000001" || f.Part != 1 || !f.MTime.Equal(m.StartTime)) {
			t.Errorf("other fields of %q changed: %+v", bad, f)
		}
	}
}
