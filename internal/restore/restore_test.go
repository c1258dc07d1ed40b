package restore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/backup"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

const testSystemID = 7440292914373421110

// fakeSource is a PostgreSQL session with canned answers for backup.Pusher.
type fakeSource struct {
	dataDir     string
	tablespaces []pg.Tablespace
	label       string
	// createdAtStart are tablespaces created while pg_backup_start waits for its
	// checkpoint: in pg_tablespace from then on.
	createdAtStart []pg.Tablespace
}

func (s *fakeSource) Major() int { return 15 }

func (s *fakeSource) Cluster(context.Context) (pg.ClusterInfo, error) {
	return pg.ClusterInfo{SystemID: testSystemID, DataDirectory: s.dataDir, SegSize: 16 << 20, BlockSize: 8192,
		Tablespaces: s.tablespaces}, nil
}

func (s *fakeSource) BackupStart(_ context.Context, label string, _ bool) (wal.LSN, uint32, error) {
	s.label = label
	s.tablespaces = append(s.tablespaces, s.createdAtStart...)
	return 0x2000028, 1, nil
}

func (s *fakeSource) ControlCheckpoint(context.Context) (pg.Control, error) {
	return pg.Control{Checkpoint: 0x2000060, Redo: 0x2000028, Timeline: 1}, nil
}

func (s *fakeSource) BackupStop(context.Context) (pg.BackupStopResult, error) {
	var spcmap strings.Builder
	for _, t := range s.tablespaces {
		fmt.Fprintf(&spcmap, "%d %s\n", t.OID, t.Location)
	}
	return pg.BackupStopResult{LSN: 0x2000100, NextXID: 742, TablespaceMap: spcmap.String(),
		Label: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n" +
			"BACKUP METHOD: streamed\nBACKUP FROM: primary\nLABEL: " + s.label + "\nSTART TIMELINE: 1\n"}, nil
}

func (s *fakeSource) WALFileName(_ context.Context, lsn wal.LSN) (string, error) {
	return wal.SegmentFileName(1, lsn.SegmentNumber(16<<20), 16<<20), nil
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeTree(t testing.TB, root string, files map[string][]byte) {
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

// backedUp is a repository holding one backup of a small data directory with a
// tablespace.
type backedUp struct {
	st      *mem.Store
	m       *repo.Manifest
	dataDir string
	spcDir  string
}

const bigFile = "base/5/16384"

func takeBackup(t testing.TB, codecName string) backedUp {
	t.Helper()
	ctx := context.Background()
	dataDir, spcDir := t.TempDir(), t.TempDir()
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl[0:], testSystemID)
	binary.LittleEndian.PutUint32(ctl[8:], 1300)
	binary.LittleEndian.PutUint32(ctl[12:], 202209061)
	binary.LittleEndian.PutUint64(ctl[32:], 0x2000060) // checkpoint
	binary.LittleEndian.PutUint64(ctl[40:], 0x2000028) // its redo: the fake source's start LSN
	binary.LittleEndian.PutUint32(ctl[48:], 1)         // its timeline
	if err := pg.SealControl(ctl); err != nil {
		t.Fatal(err)
	}
	writeTree(t, dataDir, map[string][]byte{
		"PG_VERSION":                      []byte("15\n"),
		"global/pg_control":               ctl,
		"global/1262":                     randomBytes(1, 8192),
		"base/1/1259":                     randomBytes(2, 3*8192),
		bigFile:                           randomBytes(3, 1<<20),
		"base/5/16384_fsm":                make([]byte, 24576),
		"base/5/16385_init":               nil,
		"postgresql.conf":                 []byte("shared_buffers = 16MB\n"),
		"postgresql.auto.conf":            []byte("work_mem = '64MB'\nrestore_command = 'cp /old/%f %p'\n"),
		"postmaster.pid":                  []byte("1234\n"),
		"backup_label.old":                []byte("old label\n"),
		"pg_wal/000000010000000000000002": make([]byte, 4096),
		"pg_wal/archive_status/000000010000000000000001.done": nil,
	})
	writeTree(t, spcDir, map[string][]byte{
		"PG_15_202209061/5/16401":    randomBytes(4, 100_000),
		"PG_15_202209061/5/t3_16402": []byte("temp"),
	})
	for _, d := range []string{"pg_tblspc", "pg_stat_tmp", "pg_logical/snapshots"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(spcDir, filepath.Join(dataDir, "pg_tblspc", "16400")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/pgb-log", filepath.Join(dataDir, "log")); err != nil {
		t.Fatal(err)
	}

	st := mem.New()
	if err := st.Put(ctx, "wal/0000000100000000/000000010000000000000002", strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	codec, err := compress.New(codecName, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &backup.Pusher{
		Repo: repo.New(st, repo.Options{Codec: codec}),
		Src:  &fakeSource{dataDir: dataDir, tablespaces: []pg.Tablespace{{OID: 16400, Name: "ts", Location: spcDir}}},
		Log:  slog.New(slog.DiscardHandler),
		Opt: backup.Options{DataDir: dataDir, PartSize: 1 << 20, Concurrency: 2,
			ArchiveTimeout: 2 * time.Second},
		Now: func() time.Time { return time.Date(2026, 11, 23, 20, 39, 44, 0, time.UTC) },
	}
	m, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) < 2 {
		t.Fatalf("backup has %d parts; the tests want several", len(m.Parts))
	}
	_ = m.Close() // restore reads the manifest back, as pgb restore does
	list, _, err := p.Repo.ListBackups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListBackups = %v, %v", list, err)
	}
	if m, err = p.Repo.OpenManifest(ctx, list[0], t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if m.List == nil || m.Format != repo.ManifestFormat {
		t.Fatalf("the backup's manifest has format %d, its files not in a list", m.Format)
	}
	return backedUp{st: st, m: m, dataDir: dataDir, spcDir: spcDir}
}

func newRestorer(st storage.Store, dataDir string, spcMap map[string]string, rec *Recovery) *Restorer {
	return &Restorer{Repo: repo.New(st, repo.Options{}), Log: slog.New(slog.DiscardHandler),
		Opt: Options{DataDir: dataDir, TablespaceMap: spcMap, Concurrency: 2, Recovery: rec}}
}

// regularFiles lists the regular files under root, without following links.
func regularFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestRestoreEndToEnd(t *testing.T) {
	b := takeBackup(t, "lz4")
	for _, tc := range []struct {
		name string
		rec  *Recovery
	}{
		{"files only", nil},
		{"with recovery", &Recovery{RestoreCommand: "pgb wal-fetch %f %p", Target: Target{Kind: ToLSN, LSN: 0x3000000, Action: "promote", Timeline: "latest"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := t.TempDir()
			target := filepath.Join(base, "pgdata")
			newSpc := filepath.Join(base, "ts")
			r := newRestorer(b.st, target, map[string]string{b.spcDir: newSpc}, tc.rec)
			if err := r.Run(ctx, b.m); err != nil {
				t.Fatal(err)
			}

			// Every file of the backup, identical to the source, with its mtime.
			for _, f := range allFiles(t, b.m) {
				src := filepath.Join(b.dataDir, filepath.FromSlash(f.Path))
				want, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				dst := filepath.Join(target, filepath.FromSlash(f.Path)) // tablespace files through the new link
				got, err := os.ReadFile(dst)
				if err != nil {
					t.Errorf("%s: %v", f.Path, err)
					continue
				}
				if f.Path == "postgresql.auto.conf" && tc.rec != nil {
					continue // rewritten, checked below
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: restored content differs from the source", f.Path)
				}
				srcInfo, _ := os.Stat(src)
				dstInfo, err := os.Stat(dst)
				if err == nil && !dstInfo.ModTime().Equal(srcInfo.ModTime()) {
					t.Errorf("%s: mtime %s, source has %s", f.Path, dstInfo.ModTime(), srcInfo.ModTime())
				}
			}

			// Exactly those files, plus what restore writes itself.
			var want []string
			var spcWant []string
			for _, f := range allFiles(t, b.m) {
				if rest, ok := strings.CutPrefix(f.Path, "pg_tblspc/16400/"); ok {
					spcWant = append(spcWant, rest)
				} else {
					want = append(want, f.Path)
				}
			}
			// The record lists every file of the backup, as restore left it: not
			// pg_control, renamed into place after it was checked, nor
			// postgresql.auto.conf, which the recovery settings changed.
			rec, err := r.loadRecord(target, uint64(b.m.SystemID), func(string) bool { return true })
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range allFiles(t, b.m) {
				if changed := f.Path == controlFile || tc.rec != nil && f.Path == "postgresql.auto.conf"; (rec[f.Path] == nil) != changed {
					t.Errorf("%s: recorded %v", f.Path, rec[f.Path] != nil)
				}
			}
			if len(rec) < len(allFiles(t, b.m))-2 {
				t.Errorf("the record holds %d files, the backup %d", len(rec), len(allFiles(t, b.m)))
			}
			want = append(want, "backup_label", "tablespace_map")
			if tc.rec != nil {
				want = append(want, "recovery.signal")
			}
			sort.Strings(want)
			sort.Strings(spcWant)
			if got := regularFiles(t, target); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("files in the data directory:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if got := regularFiles(t, newSpc); strings.Join(got, "\n") != strings.Join(spcWant, "\n") {
				t.Errorf("files in the tablespace: %v, want %v", got, spcWant)
			}
			for _, gone := range []string{"postmaster.pid", "backup_label.old", "pg_wal/000000010000000000000002", "pg_tblspc/16400/PG_15_202209061/5/t3_16402"} {
				if _, err := os.Lstat(filepath.Join(target, gone)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s restored: %v", gone, err)
				}
			}

			// Directories.
			for _, d := range b.m.Dirs {
				fi, err := os.Stat(filepath.Join(target, filepath.FromSlash(d.Path)))
				if err != nil || !fi.IsDir() {
					t.Errorf("directory %s: %v", d.Path, err)
				}
			}
			for _, d := range []string{"pg_wal", "pg_wal/archive_status", "pg_stat_tmp", "pg_logical/snapshots", "base/5", "global"} {
				fi, err := os.Lstat(filepath.Join(target, d))
				if err != nil || !fi.IsDir() {
					t.Errorf("directory %s: %v", d, err)
				}
			}

			// The tablespace: a link to its new location, and tablespace_map saying so.
			link := filepath.Join(target, "pg_tblspc", "16400")
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("pg_tblspc/16400 is not a link: %v", err)
			}
			if dest, err := os.Readlink(link); err != nil || dest != newSpc {
				t.Errorf("pg_tblspc/16400 -> %q, %v; want %s", dest, err, newSpc)
			}
			assertFile(t, filepath.Join(target, "tablespace_map"), fmt.Sprintf("16400 %s\n", newSpc))
			if got := regularFiles(t, b.spcDir); len(got) != 2 {
				t.Errorf("the original tablespace changed: %v", got)
			}

			// Other links.
			if dest, err := os.Readlink(filepath.Join(target, "log")); err != nil || dest != "/nonexistent/pgb-log" {
				t.Errorf("link log -> %q, %v", dest, err)
			}

			assertFile(t, filepath.Join(target, "backup_label"), b.m.Label)
			if !strings.Contains(b.m.Label, "LABEL: pgb "+b.m.Name) {
				t.Errorf("label %q", b.m.Label)
			}
			ctl, err := pg.ReadControl(target)
			if err != nil || ctl.SystemID != testSystemID {
				t.Errorf("pg_control: %+v, %v", ctl, err)
			}
			if _, err := os.Stat(filepath.Join(target, "global", "pg_control.pgb-restore")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("temporary pg_control left: %v", err)
			}

			auto, err := os.ReadFile(filepath.Join(target, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			_, sigErr := os.Stat(filepath.Join(target, "recovery.signal"))
			if tc.rec == nil {
				if !errors.Is(sigErr, fs.ErrNotExist) {
					t.Errorf("recovery.signal without recovery: %v", sigErr)
				}
				return
			}
			if sigErr != nil {
				t.Errorf("recovery.signal: %v", sigErr)
			}
			assertFile(t, filepath.Join(target, "recovery.signal"), "")
			conf := string(auto)
			for _, s := range []string{"work_mem = '64MB'\n", "restore_command = 'pgb wal-fetch %f %p'\n",
				"recovery_target_lsn = '0/3000000'\n", "recovery_target_action = 'promote'\n", "backup " + b.m.Name} {
				if !strings.Contains(conf, s) {
					t.Errorf("postgresql.auto.conf lacks %q:\n%s", s, conf)
				}
			}
			if strings.Contains(conf, "/old/") || strings.Count(conf, "restore_command") != 1 {
				t.Errorf("postgresql.auto.conf keeps the source's restore_command:\n%s", conf)
			}
		})
	}
}

func assertFile(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if string(b) != want {
		t.Errorf("%s = %q, want %q", p, b, want)
	}
}

func TestRestoreDamagedPart(t *testing.T) {
	for _, codec := range []string{"lz4", "zstd", "none"} {
		t.Run(codec, func(t *testing.T) {
			ctx := context.Background()
			b := takeBackup(t, codec)
			n := -1
			for _, f := range allFiles(t, b.m) {
				if f.Path == bigFile {
					n = f.Part
				}
			}
			key := repo.PartKey(b.m.Name, n)
			info, err := b.st.Stat(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			// The middle of the part: inside bigFile's data, the part's first and
			// largest file.
			st := faulty.New(b.st, faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Corrupt, Offset: info.Size / 2})
			target := filepath.Join(t.TempDir(), "pgdata")
			err = newRestorer(st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")},
				&Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}}).Run(ctx, b.m)
			if st.Faults(faulty.Get) != 1 {
				t.Fatalf("the damaged part was read %d times", st.Faults(faulty.Get))
			}
			if err == nil {
				t.Fatal("restore of a damaged part succeeded")
			}
			if !errors.Is(err, ErrDamaged) && !errors.Is(err, envelope.ErrCorrupt) {
				t.Errorf("error %v is neither ErrDamaged nor ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), "file "+bigFile) {
				t.Errorf("error %q does not name the file %s", err, bigFile)
			}
			if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed restore left global/pg_control (PostgreSQL could start it): %v", err)
			}
		})
	}
}

func TestRestoreMissingPart(t *testing.T) {
	ctx := context.Background()
	b := takeBackup(t, "lz4")
	n := -1
	for _, f := range allFiles(t, b.m) {
		if f.Path == "global/pg_control" {
			n = f.Part
		}
	}
	st := faulty.New(b.st, faulty.Rule{Op: faulty.Get, Key: repo.PartKey(b.m.Name, n), Err: storage.ErrNotExist})
	target := filepath.Join(t.TempDir(), "pgdata")
	err := newRestorer(st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")}, nil).Run(ctx, b.m)
	if !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), repo.PartKey(b.m.Name, n)) {
		t.Errorf("restore with a missing part = %v, want ErrNotExist naming the part", err)
	}
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed restore left global/pg_control: %v", err)
	}
}

func TestRestoreManifestListsFileInNoPart(t *testing.T) {
	ctx := context.Background()
	b := takeBackup(t, "none")
	m := *b.m
	m.List = nil // read whole, as a format 1 manifest is
	m.Files = append(allFiles(t, b.m), repo.File{Path: "base/5/99999", Size: 1, CRC: "00000000", Part: 1})
	target := filepath.Join(t.TempDir(), "pgdata")
	err := newRestorer(b.st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")}, nil).Run(ctx, &m)
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("restore with a file missing from its part = %v, want ErrDamaged", err)
	}
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed restore left global/pg_control: %v", err)
	}
}

// snapshot describes every entry under root: path, kind and content.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				b.WriteString("absent")
				return nil
			}
			return err
		}
		fmt.Fprintf(&b, "%s %s", p, d.Type())
		if d.Type().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRestoreRefuses(t *testing.T) {
	b := takeBackup(t, "none")
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, target, newSpc string) (dataDir string, spcMap map[string]string)
		is      error
		msg     string
	}{
		{
			name: "data directory not empty",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				writeTree(t, target, map[string][]byte{"keep": []byte("precious")})
				return target, map[string]string{b.spcDir: newSpc}
			},
			is: ErrNotEmpty, msg: "keep",
		},
		{
			name: "tablespace directory not empty",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				writeTree(t, newSpc, map[string][]byte{"PG_15_202209061/x": []byte("precious")})
				return target, map[string]string{b.spcDir: newSpc}
			},
			is: ErrNotEmpty, msg: "tablespace directory",
		},
		{
			name: "tablespace restored to its original, used location",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				return target, nil
			},
			is: ErrNotEmpty, msg: b.spcDir,
		},
		{
			name: "relative data directory",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				return "pgdata", map[string]string{b.spcDir: newSpc}
			},
			msg: "absolute",
		},
		{
			name: "tablespace map for a location the backup does not have",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				return target, map[string]string{b.spcDir: newSpc, "/elsewhere": newSpc + "2"}
			},
			msg: "/elsewhere",
		},
		{
			name: "tablespace inside the data directory",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				return target, map[string]string{b.spcDir: filepath.Join(target, "ts")}
			},
			msg: "inside the data directory",
		},
		{
			name: "relative tablespace location",
			prepare: func(t *testing.T, target, newSpc string) (string, map[string]string) {
				return target, map[string]string{b.spcDir: "ts"}
			},
			msg: "absolute",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
			dataDir, spcMap := tc.prepare(t, target, newSpc)
			before, origSpc := snapshot(t, base), snapshot(t, b.spcDir)
			err := newRestorer(b.st, dataDir, spcMap, &Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}}).Run(context.Background(), b.m)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Run = %v, want an error (%v) containing %q", err, tc.is, tc.msg)
			}
			if after := snapshot(t, base); after != before {
				t.Errorf("a refused restore changed the file system:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if after := snapshot(t, b.spcDir); after != origSpc {
				t.Errorf("a refused restore changed the original tablespace")
			}
		})
	}
}

// A tablespace created while the backup waits for its start checkpoint is in the data
// directory when it is read, but not in the list Cluster() returned before. A backup
// that Pusher reports as taken must restore.
func TestRestoreTablespaceCreatedDuringBackup(t *testing.T) {
	ctx := context.Background()
	dataDir, spcDir := t.TempDir(), t.TempDir()
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl[0:], testSystemID)
	binary.LittleEndian.PutUint32(ctl[8:], 1300)
	binary.LittleEndian.PutUint32(ctl[12:], 202209061)
	binary.LittleEndian.PutUint64(ctl[32:], 0x2000060) // checkpoint
	binary.LittleEndian.PutUint64(ctl[40:], 0x2000028) // its redo: the fake source's start LSN
	binary.LittleEndian.PutUint32(ctl[48:], 1)         // its timeline
	if err := pg.SealControl(ctl); err != nil {
		t.Fatal(err)
	}
	writeTree(t, dataDir, map[string][]byte{"PG_VERSION": []byte("15\n"), "global/pg_control": ctl})
	writeTree(t, spcDir, map[string][]byte{"PG_15_202209061/5/16401": []byte("new tablespace")})
	if err := os.MkdirAll(filepath.Join(dataDir, "pg_tblspc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(spcDir, filepath.Join(dataDir, "pg_tblspc", "16500")); err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	if err := st.Put(ctx, "wal/0000000100000000/000000010000000000000002", strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	codec, _ := compress.New("lz4", 0)
	src := &fakeSource{dataDir: dataDir, createdAtStart: []pg.Tablespace{{OID: 16500, Name: "new", Location: spcDir}}}
	p := &backup.Pusher{Repo: repo.New(st, repo.Options{Codec: codec}), Src: src, Log: slog.New(slog.DiscardHandler),
		Opt: backup.Options{DataDir: dataDir, PartSize: 1 << 20, Concurrency: 1, ArchiveTimeout: 2 * time.Second}}
	m, err := p.Run(ctx)
	if err != nil {
		return // refusing such a backup is also correct
	}
	target, newSpc := filepath.Join(t.TempDir(), "pgdata"), filepath.Join(t.TempDir(), "spc")
	if err := newRestorer(st, target, map[string]string{spcDir: newSpc}, nil).Run(ctx, m); err != nil {
		t.Fatalf("backup %s was reported as taken, but it does not restore: %v", m.Name, err)
	}
	if b, err := os.ReadFile(filepath.Join(newSpc, "PG_15_202209061", "5", "16401")); err != nil || string(b) != "new tablespace" {
		t.Fatalf("tablespace file: %q, %v", b, err)
	}
}

func TestRestoreRefusesTablespaceInsideDataDirWithTrailingSlash(t *testing.T) {
	b := takeBackup(t, "none")
	base := t.TempDir()
	target := filepath.Join(base, "pgdata")
	err := newRestorer(b.st, target+"/", map[string]string{b.spcDir: filepath.Join(target, "ts")}, nil).Run(context.Background(), b.m)
	if err == nil || !strings.Contains(err.Error(), "inside the data directory") {
		t.Errorf("Run = %v, want the tablespace inside the data directory refused", err)
	}
}

func TestRestoreOwnerAndModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	b := takeBackup(t, "lz4")
	base := t.TempDir()
	target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
	// An existing, empty data directory with a looser mode.
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRestorer(b.st, target, map[string]string{b.spcDir: newSpc},
		&Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}})
	r.Opt.Owner = &Owner{UID: 54321, GID: 54322}
	if err := r.Run(context.Background(), b.m); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{target, newSpc} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != 54321 || st.Gid != 54322 {
				t.Errorf("%s is owned by %d:%d, want 54321:54322", p, st.Uid, st.Gid)
			}
			switch {
			case d.IsDir() && fi.Mode().Perm() != 0o700:
				t.Errorf("directory %s has mode %o, want 700", p, fi.Mode().Perm())
			case d.Type().IsRegular() && fi.Mode().Perm() != 0o600:
				t.Errorf("file %s has mode %o, want 600", p, fi.Mode().Perm())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Every byte of a part is checked, not only the files in it: a part whose trailer does
// not match (damage after the tar stream's end, where no file's CRC looks) fails the
// restore. The restore used to stop reading at the end of the tar stream.
func TestAPartWhoseTrailerDoesNotMatchFailsTheRestore(t *testing.T) {
	ctx := context.Background()
	b := takeBackup(t, "lz4")
	key := repo.PartKey(b.m.Name, b.m.Parts[0].N)
	info, err := b.st.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// A byte of the trailer's checksum field (the trailer is the last 48 bytes; the
	// checksum starts 16 bytes into it).
	st := faulty.New(b.st, faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Corrupt, Offset: info.Size - 48 + 16})
	target := filepath.Join(t.TempDir(), "pgdata")
	err = newRestorer(st, target, map[string]string{b.spcDir: filepath.Join(t.TempDir(), "ts")}, nil).Run(ctx, b.m)
	if st.Faults(faulty.Get) != 1 {
		t.Fatalf("the damaged part was read %d times", st.Faults(faulty.Get))
	}
	if !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("restore with a part whose trailer does not match = %v, want ErrCorrupt", err)
	}
}

// allFiles returns the files of m, whether it holds them in m.Files or in m.List.
func allFiles(t *testing.T, m *repo.Manifest) []repo.File {
	t.Helper()
	var out []repo.File
	if err := m.EachFile(func(f *repo.File) error { out = append(out, *f); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
