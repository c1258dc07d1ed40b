package backup

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
)

// writeFiles creates every file of files (relative, "/"-separated paths) under root,
// with its parent directories. The content of each file is distinct and its size
// differs from file to file, so a byte count cannot be right by accident.
func writeFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		abs := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(abs, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func mkdirs(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(d)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

func content(i int, p string) []byte {
	return []byte(strings.Repeat(p+";", i+1))
}

// walkFixture is a data directory whose expected backup contents are known.
type walkFixture struct {
	dataDir string
	kept    map[string][]byte // files that must be backed up, by backup path
	dirs    []string          // directories that must be listed
	links   map[string]string // non-tablespace links
	// tablespaces are the cluster's tablespaces (pg_tablespace): OID -> location.
	tablespaces map[uint32]string
}

// newWalkFixture builds a data directory with every kind of file a base backup
// keeps or skips. With walSymlink, pg_wal is a link to a directory elsewhere.
func newWalkFixture(t *testing.T, walSymlink bool) walkFixture {
	t.Helper()
	dataDir := t.TempDir()
	spcDir := t.TempDir()

	keep := []string{
		"PG_VERSION",
		"global/pg_control",
		"base/5/16384",
		"base/5/16384.1",
		"base/5/16384_fsm",
		"base/5/16385_init", // unlogged relation: only the init fork
		"base/5/16385_init.1",
		"base/5/PG_VERSION",
		"postgresql.conf",
		"postgresql.auto.conf",
	}
	skipped := []string{
		"base/5/16385", "base/5/16385.1", "base/5/16385_vm", "base/5/16385_fsm",
		"base/5/t3_16390", "base/5/t3_16390_fsm", "base/5/t3_16390.2",
		"base/5/pg_internal.init", "global/pg_internal.init",
		"base/pgsql_tmp/pgsql_tmp123.0",
		"pg_replslot/slot/state",
		"pg_stat_tmp/x",
		"pg_subtrans/0000",
		"pg_notify/0000",
		"pg_dynshmem/x",
		"pg_serial/x",
		"pg_snapshots/x",
		"postmaster.pid", "postmaster.opts",
		"backup_label", "backup_label.old",
		"tablespace_map", "tablespace_map.old", "backup_manifest",
		"recovery.signal", "standby.signal", ".pgb-restored",
		"postgresql.auto.conf.tmp", "current_logfiles.tmp",
		"base/5/.pgb-tmp-postgresql.auto.conf-123",
	}
	all := map[string][]byte{}
	kept := map[string][]byte{}
	for i, p := range keep {
		all[p] = content(i, p)
		kept[p] = all[p]
	}
	for i, p := range skipped {
		all[p] = content(i+len(keep), p)
	}
	writeFiles(t, dataDir, all)

	// pg_wal: its files are skipped, the directory and archive_status are kept.
	walFiles := map[string][]byte{
		"000000010000000000000001":     make([]byte, 100),
		"archive_status/x.done":        nil,
		"000000010000000000000002.tmp": []byte("x"),
	}
	if walSymlink {
		walDir := t.TempDir()
		writeFiles(t, walDir, walFiles)
		if err := os.Symlink(walDir, filepath.Join(dataDir, "pg_wal")); err != nil {
			t.Fatal(err)
		}
	} else {
		writeFiles(t, filepath.Join(dataDir, "pg_wal"), walFiles)
	}

	// A tablespace: pg_tblspc/16400 -> spcDir.
	spcFiles := map[string][]byte{
		"PG_15_202209061/5/16401":      []byte("tablespace relation 16401"),
		"PG_15_202209061/5/16401_fsm":  []byte("fsm"),
		"PG_15_202209061/5/t4_16402":   []byte("temp relation in a tablespace"),
		"PG_15_202209061/5/16403_init": []byte("init fork"),
		"PG_15_202209061/5/16403":      []byte("main fork of an unlogged relation"),
		"PG_15_202209061/pgsql_tmp/p1": []byte("temp file"),
	}
	writeFiles(t, spcDir, spcFiles)
	mkdirs(t, dataDir, "pg_tblspc")
	if err := os.Symlink(spcDir, filepath.Join(dataDir, "pg_tblspc", "16400")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"PG_15_202209061/5/16401", "PG_15_202209061/5/16401_fsm", "PG_15_202209061/5/16403_init"} {
		kept["pg_tblspc/16400/"+p] = spcFiles[p]
	}

	// A link that is not a tablespace is kept as a link.
	if err := os.Symlink("/nonexistent/pgb/log", filepath.Join(dataDir, "log")); err != nil {
		t.Fatal(err)
	}
	// A socket is not part of the cluster's state (optional: the path may be too long).
	if l, err := net.Listen("unix", filepath.Join(dataDir, ".s.PGSQL.5432")); err == nil {
		t.Cleanup(func() { l.Close() })
	} else {
		t.Logf("no socket in the fixture: %v", err)
	}

	return walkFixture{
		dataDir: dataDir,
		kept:    kept,
		dirs: []string{
			"base", "base/5", "global",
			"pg_wal", "pg_wal/archive_status",
			"pg_replslot", "pg_stat_tmp", "pg_subtrans", "pg_notify", "pg_dynshmem", "pg_serial", "pg_snapshots",
			"pg_tblspc", "pg_tblspc/16400", "pg_tblspc/16400/PG_15_202209061", "pg_tblspc/16400/PG_15_202209061/5",
		},
		links:       map[string]string{"log": "/nonexistent/pgb/log"},
		tablespaces: map[uint32]string{16400: spcDir},
	}
}

func TestWalk(t *testing.T) {
	for _, tc := range []struct {
		name       string
		walSymlink bool
	}{
		{"pg_wal directory", false},
		{"pg_wal symlink", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newWalkFixture(t, tc.walSymlink)
			tr, err := walk(fx.dataDir, fx.tablespaces, os.Open)
			if err != nil {
				t.Fatal(err)
			}

			// Files: exactly the kept set, each readable at abs with the right content.
			got := map[string]bool{}
			var sum int64
			files := allFiles(t, tr)
			for _, e := range files {
				if got[e.path] {
					t.Errorf("file %s listed twice", e.path)
				}
				got[e.path] = true
				sum += e.size
				want, ok := fx.kept[e.path]
				if !ok {
					t.Errorf("file %s is listed but must be skipped", e.path)
					continue
				}
				if e.size != int64(len(want)) {
					t.Errorf("file %s: size %d, want %d", e.path, e.size, len(want))
				}
				b, err := os.ReadFile(e.where(tr.root))
				if err != nil {
					t.Errorf("file %s: at %s: %v", e.path, e.where(tr.root), err)
				} else if !bytes.Equal(b, want) {
					t.Errorf("file %s: %s holds other content", e.path, e.where(tr.root))
				}
				if e.mode != 0o600 {
					t.Errorf("file %s: mode %o, want 600", e.path, e.mode)
				}
			}
			var wantBytes int64
			for p, b := range fx.kept {
				wantBytes += int64(len(b))
				if !got[p] {
					t.Errorf("file %s is missing from the walk", p)
				}
			}
			if tr.bytes != wantBytes || sum != wantBytes {
				t.Errorf("tree.bytes = %d (sum of listed sizes %d), want %d", tr.bytes, sum, wantBytes)
			}
			if !sort.SliceIsSorted(tr.files, func(i, j int) bool { return tr.files[i].size > tr.files[j].size }) || len(tr.files) > 0 && tr.files[len(tr.files)-1].size < smallFile {
				t.Error("the big files are not ordered largest first, or a small one is among them")
			}

			// Directories: exactly the expected set, no duplicates.
			var dirs []string
			seen := map[string]int{}
			for _, d := range tr.dirs {
				dirs = append(dirs, d.path)
				seen[d.path]++
			}
			for p, n := range seen {
				if n > 1 {
					t.Errorf("directory %s listed %d times", p, n)
				}
			}
			want := append([]string(nil), fx.dirs...)
			sort.Strings(want)
			sort.Strings(dirs)
			if strings.Join(dirs, "\n") != strings.Join(want, "\n") {
				t.Errorf("directories:\n got %q\nwant %q", dirs, want)
			}

			// Links: only the non-tablespace, non-pg_wal one.
			gotLinks := map[string]string{}
			for _, l := range tr.links {
				gotLinks[l.path] = l.target
			}
			if len(gotLinks) != len(fx.links) {
				t.Errorf("links = %v, want %v", gotLinks, fx.links)
			}
			for p, target := range fx.links {
				if gotLinks[p] != target {
					t.Errorf("link %s -> %q, want %q", p, gotLinks[p], target)
				}
			}
		})
	}
}

func TestWalkMissingDataDir(t *testing.T) {
	if _, err := walk(filepath.Join(t.TempDir(), "absent"), nil, os.Open); err == nil {
		t.Fatal("walk of an absent data directory succeeded")
	}
}

func TestWalkBrokenTablespaceLink(t *testing.T) {
	dataDir := t.TempDir()
	mkdirs(t, dataDir, "pg_tblspc")
	gone := filepath.Join(t.TempDir(), "gone")
	if err := os.Symlink(gone, filepath.Join(dataDir, "pg_tblspc", "16400")); err != nil {
		t.Fatal(err)
	}
	_, err := walk(dataDir, map[uint32]string{16400: gone}, os.Open)
	if err == nil || !strings.Contains(err.Error(), "pg_tblspc/16400") {
		t.Fatalf("walk with a dangling tablespace link: %v, want an error naming pg_tblspc/16400", err)
	}
}

func TestSkipRules(t *testing.T) {
	for _, tc := range []struct {
		name, rel string
		top       bool
		want      bool
	}{
		{"postmaster.pid", "", true, true},
		{"postmaster.pid", "base/5", false, false}, // only the top directory's
		{"backup_label", "", true, true},
		{"postgresql.conf", "", true, false},
		{"pgsql_tmp", "base", false, true},
		{"pgsql_tmp12.3", "base/5", false, true},
		{"pg_internal.init", "global", false, true},
		{"pg_internal.init.123", "base/5", false, true},
		{"t3_16390", "base/5", false, true},
		{"t3_16390_fsm", "base/5", false, true},
		{"t3_16390.7", "base/5", false, true},
		{"t3_16390", "global", false, false}, // not a database directory
		{"t4_16402", "pg_tblspc/16400/PG_15_202209061/5", false, true},
		{"t4_16402", "pg_tblspc/16400/PG_15_202209061", false, false},
		{"16390", "base/5", false, false},
		{"t3x_16390", "base/5", false, false},
		{".pgb-tmp-backup_label-1", "", true, true},
	} {
		if got := skip(tc.name, tc.rel, tc.top); got != tc.want {
			t.Errorf("skip(%q, %q, %v) = %v, want %v", tc.name, tc.rel, tc.top, got, tc.want)
		}
	}
}

func crc32cHex(b []byte) string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32c.Checksum(b))
	return hex.EncodeToString(sum[:])
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 100_000)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		bufSize int
	}{
		{"empty", nil, 16},
		{"one byte", []byte{0x42}, 16},
		{"smaller than the buffer", []byte("hello, pg_control"), 64},
		{"many buffers", big, 4096},
		{"buffer not dividing size", big[:9999], 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			abs := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(abs, tc.data, 0o640); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(abs)
			if err != nil {
				t.Fatal(err)
			}
			e := entry{path: "base/5/" + filepath.Base(abs), abs: abs, mode: 0o640, size: int64(len(tc.data))}
			var out bytes.Buffer
			tw := tar.NewWriter(&out)
			var done atomic.Int64
			f, n, err := copyFile(tw, e, make([]byte, tc.bufSize), &done, os.Open, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			if n != int64(len(tc.data)) || f.Size != n || done.Load() != n {
				t.Errorf("n = %d, Size = %d, done = %d, want %d", n, f.Size, done.Load(), len(tc.data))
			}
			if want := crc32cHex(tc.data); f.CRC != want {
				t.Errorf("CRC = %s, want %s", f.CRC, want)
			}
			if f.Path != e.path || f.Mode != 0o640 || !f.MTime.Equal(fi.ModTime()) || f.MTime.Location() != time.UTC {
				t.Errorf("file = %+v, want path %s, mode 640, mtime %s (UTC)", f, e.path, fi.ModTime().UTC())
			}

			tr := tar.NewReader(&out)
			hdr, err := tr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Name != e.path || hdr.Size != int64(len(tc.data)) || hdr.Typeflag != tar.TypeReg || fs.FileMode(hdr.Mode) != 0o640 {
				t.Errorf("tar header = %+v", hdr)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tc.data) {
				t.Errorf("tar holds %d bytes that differ from the file's %d", len(b), len(tc.data))
			}
			if _, err := tr.Next(); err != io.EOF {
				t.Errorf("more than one tar entry: %v", err)
			}
		})
	}
}

func TestCopyFileVanished(t *testing.T) {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	var done atomic.Int64
	e := entry{path: "base/5/16384", abs: filepath.Join(t.TempDir(), "16384"), mode: 0o600, size: 8192}
	f, n, err := copyFile(tw, e, make([]byte, 1024), &done, os.Open, nil)
	if err != nil || n >= 0 {
		t.Fatalf("copyFile of a vanished file = %+v, %d, %v; want n < 0 and no error", f, n, err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tar.NewReader(&out).Next(); err != io.EOF {
		t.Errorf("a vanished file left a tar entry: %v", err)
	}
	if done.Load() != 0 {
		t.Errorf("done = %d, want 0", done.Load())
	}
}

func TestCopyFileUnreadable(t *testing.T) {
	// A path that cannot be opened for another reason than absence is an error, not a
	// vanished file.
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	var done atomic.Int64
	dir := t.TempDir()
	mkdirs(t, dir, "d")
	if err := os.WriteFile(filepath.Join(dir, "d", "x"), make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	e := entry{path: "x", abs: filepath.Join(dir, "d", "x", "notadir"), mode: 0o600}
	if _, _, err := copyFile(tw, e, make([]byte, 1024), &done, os.Open, nil); err == nil {
		t.Error("copyFile of a path under a regular file succeeded")
	}
}

// The postgres OS user can plant links in pg_tblspc. A backup running as root must
// follow only the cluster's own tablespaces (pg_tablespace), at their own locations.
func TestWalkDoesNotFollowPlantedTablespaceLinks(t *testing.T) {
	fx := newWalkFixture(t, false)
	secret := t.TempDir()
	writeFiles(t, secret, map[string][]byte{"shadow": []byte("root:secret"), "PG_15_202209061/1/1": []byte("x")})
	for name, target := range map[string]string{
		"99999": secret,                                   // not a tablespace of the cluster
		"16401": filepath.Join(secret, "PG_15_202209061"), // known OID below, other location
		"abc":   secret,                                   // not an OID at all
	} {
		if err := os.Symlink(target, filepath.Join(fx.dataDir, "pg_tblspc", name)); err != nil {
			t.Fatal(err)
		}
	}
	known := map[uint32]string{16400: fx.tablespaces[16400], 16401: "/srv/elsewhere"}
	tr, err := walk(fx.dataDir, known, os.Open)
	if err != nil {
		t.Fatal(err)
	}
	for _, list := range [][]entry{allFiles(t, tr), tr.dirs, tr.links} {
		for _, e := range list {
			if strings.Contains(e.where(tr.root), secret) || strings.HasPrefix(e.path, "pg_tblspc/99999") ||
				strings.HasPrefix(e.path, "pg_tblspc/16401") || strings.HasPrefix(e.path, "pg_tblspc/abc") {
				t.Errorf("walk followed a planted link: %s (%s)", e.path, e.where(tr.root))
			}
		}
	}
	if len(tr.tablespaces) != 1 || tr.tablespaces[0].oid != 16400 {
		t.Errorf("tablespaces = %+v, want only 16400", tr.tablespaces)
	}
	if len(tr.skipped) != 3 {
		t.Errorf("skipped = %q, want the three planted links (for a warning)", tr.skipped)
	}
}

// As root, pgb reads the cluster's files as the data directory's owner: a file the
// owner cannot read (root's own, in the data directory or reached through a link) is
// not read, and the backup fails naming it.
func TestRootReadsOnlyWhatTheClusterOwnerCanRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const nobody = 65534
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // the owner reaches its data directory
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(base, "data")
	rootOnly := filepath.Join(base, "root-only")
	writeFiles(t, dataDir, map[string][]byte{"base/5/16384": []byte("the owner's own data")})
	writeFiles(t, rootOnly, map[string][]byte{"secret": []byte("root's secret, world-readable file in a root-only directory")})
	if err := os.Chmod(filepath.Join(rootOnly, "secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dataDir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}
	// Root's files inside the data directory: one in place, one through a link.
	writeFiles(t, dataDir, map[string][]byte{"base/5/16385": []byte("root-only file in the data directory")})
	if err := os.Symlink(filepath.Join(rootOnly, "secret"), filepath.Join(dataDir, "base", "5", "16386")); err != nil {
		t.Fatal(err)
	}

	open, err := clusterOpener(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := open(filepath.Join(dataDir, "base/5/16384"))
	if err != nil {
		t.Fatalf("the owner's own file: %v", err)
	}
	f.Close()
	for _, p := range []string{"base/5/16385", "base/5/16386"} {
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		var done atomic.Int64
		e := entry{path: p, abs: filepath.Join(dataDir, p), mode: 0o600}
		_, _, err := copyFile(tw, e, make([]byte, 1024), &done, open, nil)
		if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("copyFile(%s) as root = %v; want a permission error naming it", p, err)
		}
		if done.Load() != 0 {
			t.Errorf("%s: %d bytes read", p, done.Load())
		}
	}
	// The process's own credentials are untouched afterwards.
	if _, err := os.ReadFile(filepath.Join(rootOnly, "secret")); err != nil {
		t.Errorf("root lost access to its own file after reading as the owner: %v", err)
	}
}

// allFiles is every file of tr, big and small; tr is closed at the test's end.
func allFiles(t *testing.T, tr *tree) []entry {
	t.Helper()
	t.Cleanup(tr.close)
	files, err := tr.allFiles()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Small files are listed on disk, in batches, not in memory: the walk still yields
// every file once, the big ones first and biggest first, and a backup copies them all.
func TestWalkListsSmallFilesInBatches(t *testing.T) {
	dir := t.TempDir()
	want := map[string]int64{}
	write := func(p string, size int64) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		want[p] = size
	}
	for i := range 2*smallBatch + 7 {
		write(fmt.Sprintf("base/5/%d", 20000+i), int64(i%3)*8192)
	}
	write("base/5/big1", smallFile)
	write("base/5/big2", smallFile+8192)
	tr, err := walk(dir, nil, os.Open)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.files) != 2 || tr.files[0].path != "base/5/big2" || tr.files[1].path != "base/5/big1" {
		t.Errorf("big files %v, want big2 then big1", tr.files)
	}
	if n := len(tr.small.batches); n != 3 {
		t.Errorf("%d batches of small files, want 3", n)
	}
	files := allFiles(t, tr)
	if len(files) != len(want) || files[0].path != "base/5/big2" {
		t.Fatalf("%d files listed, want %d, the biggest first", len(files), len(want))
	}
	for _, e := range files {
		size, ok := want[e.path]
		if !ok || size != e.size || e.mode != 0o600 {
			t.Errorf("file %s: size %d mode %o; want %d (listed: %v)", e.path, e.size, e.mode, size, ok)
		}
		delete(want, e.path)
	}
}
