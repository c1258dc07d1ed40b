package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/retry"
	"github.com/pgb-project/pgb/internal/wal"
)

const testSystemID = 7440292914373421110

// pgControl is the start of a pg_control file for system id sys.
func pgControl(sys uint64) []byte {
	b := make([]byte, 8192)
	binary.LittleEndian.PutUint64(b[0:], sys)
	binary.LittleEndian.PutUint32(b[8:], 1300)
	binary.LittleEndian.PutUint32(b[12:], 202209061)
	binary.LittleEndian.PutUint64(b[32:], 0x2000060) // checkpoint, after
	binary.LittleEndian.PutUint64(b[40:], 0x2000028) // its redo point: the fake source's start LSN
	binary.LittleEndian.PutUint32(b[48:], 1)         // its timeline
	sealControl(b)
	return b
}

func sealControl(b []byte) {
	if err := pg.SealControl(b); err != nil {
		panic(err)
	}
}

// fakeSource is a PostgreSQL session with canned answers.
type fakeSource struct {
	sys         uint64
	dataDir     string
	tablespaces []pg.Tablespace
	startLSN    wal.LSN
	stopLSN     wal.LSN
	stopWAL     string // if set, the stop segment's name regardless of the LSN
	nextXID     uint64
	onStart     func() // called in BackupStart (a checkpoint that takes time)
	// control is what pg_control_checkpoint() answers, one value per call (the last
	// repeats); none: the checkpoint pgControl writes.
	control []pg.Control

	mu         sync.Mutex
	startLabel string
	startFast  bool
	stopped    bool
}

func newFakeSource(dataDir string) *fakeSource {
	return &fakeSource{sys: testSystemID, dataDir: dataDir, startLSN: 0x2000028, stopLSN: 0x2000100, nextXID: 742}
}

func (s *fakeSource) Major() int { return 15 }

func (s *fakeSource) Cluster(context.Context) (pg.ClusterInfo, error) {
	return pg.ClusterInfo{SystemID: s.sys, DataDirectory: s.dataDir, Checksums: true, SegSize: 16 << 20,
		BlockSize: 8192, Tablespaces: s.tablespaces}, nil
}

func (s *fakeSource) BackupStart(_ context.Context, label string, fast bool) (wal.LSN, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startLabel, s.startFast = label, fast
	if s.onStart != nil {
		s.onStart()
	}
	return s.startLSN, 1, nil
}

func (s *fakeSource) ControlCheckpoint(context.Context) (pg.Control, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.control) == 0 {
		return pg.Control{Checkpoint: 0x2000060, Redo: 0x2000028, Timeline: 1}, nil
	}
	c := s.control[0]
	if len(s.control) > 1 {
		s.control = s.control[1:]
	}
	return c, nil
}

func (s *fakeSource) BackupStop(context.Context) (pg.BackupStopResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	var spcmap strings.Builder
	for _, t := range s.tablespaces {
		fmt.Fprintf(&spcmap, "%d %s\n", t.OID, t.Location)
	}
	return pg.BackupStopResult{LSN: s.stopLSN, Label: "START WAL LOCATION: " + s.startLSN.String() + "\nLABEL: " + s.startLabel + "\n",
		TablespaceMap: spcmap.String(), NextXID: s.nextXID}, nil
}

func (s *fakeSource) WALFileName(_ context.Context, lsn wal.LSN) (string, error) {
	if lsn == s.stopLSN && s.stopWAL != "" {
		return s.stopWAL, nil
	}
	return wal.SegmentFileName(1, lsn.SegmentNumber(16<<20), 16<<20), nil
}

// recordingStore remembers every key it stored.
type recordingStore struct {
	storage.Store
	mu  sync.Mutex
	put []string
}

func (r *recordingStore) Put(ctx context.Context, key string, rd io.Reader, opts storage.PutOptions) error {
	err := r.Store.Put(ctx, key, rd, opts)
	if err == nil {
		r.mu.Lock()
		r.put = append(r.put, key)
		r.mu.Unlock()
	}
	return err
}

func (r *recordingStore) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.put...)
}

func putWAL(t *testing.T, st storage.Store, name string) {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), repo.WALKey(f), strings.NewReader("segment "+name), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
}

func allKeys(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), prefix, func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// backupFixture is a small data directory with a tablespace; want maps every
// file that must be in the backup to its content.
type backupFixture struct {
	dataDir, spcDir string
	want            map[string][]byte
}

func newBackupFixture(t *testing.T, sys uint64, extra map[string][]byte) backupFixture {
	t.Helper()
	dataDir, spcDir := t.TempDir(), t.TempDir()
	want := map[string][]byte{
		"PG_VERSION":                 []byte("15\n"),
		"global/pg_control":          pgControl(sys),
		"global/1262":                randomBytes(1, 8192),
		"base/1/1259":                randomBytes(2, 3*8192),
		"base/5/16384":               randomBytes(3, 40_000),
		"base/5/16384.1":             randomBytes(4, 17),
		"base/5/16384_fsm":           bytes.Repeat([]byte{0}, 24576),
		"base/5/16385_init":          nil,
		"postgresql.conf":            []byte("shared_buffers = 16MB\n"),
		"postgresql.auto.conf":       []byte("work_mem = '64MB'\n"),
		"pg_logical/replorigin_chkp": randomBytes(5, 16),
	}
	for p, b := range extra {
		want[p] = b
	}
	writeFiles(t, dataDir, want)
	writeFiles(t, dataDir, map[string][]byte{
		"postmaster.pid":                  []byte("1234\n"),
		"base/5/16385":                    []byte("unlogged main fork"),
		"base/5/t3_16390":                 []byte("temp"),
		"pg_wal/000000010000000000000002": make([]byte, 1000),
		"pg_wal/archive_status/000000010000000000000001.done": nil,
	})
	writeFiles(t, spcDir, map[string][]byte{
		"PG_15_202209061/5/16401":    randomBytes(6, 12345),
		"PG_15_202209061/5/t4_16402": []byte("temp"),
	})
	mkdirs(t, dataDir, "pg_tblspc", "pg_stat_tmp")
	if err := os.Symlink(spcDir, filepath.Join(dataDir, "pg_tblspc", "16400")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(spcDir, "PG_15_202209061/5/16401"))
	if err != nil {
		t.Fatal(err)
	}
	want["pg_tblspc/16400/PG_15_202209061/5/16401"] = b
	return backupFixture{dataDir: dataDir, spcDir: spcDir, want: want}
}

func newPusher(st storage.Store, src Source, dataDir string, partSize int64, concurrency int, now time.Time) *Pusher {
	codec, err := compress.New("lz4", 0)
	if err != nil {
		panic(err)
	}
	return &Pusher{
		Repo: repo.New(st, repo.Options{Codec: codec}),
		Src:  src,
		Log:  slog.New(slog.DiscardHandler),
		Opt: Options{DataDir: dataDir, Fast: true, PartSize: partSize, Concurrency: concurrency,
			ArchiveTimeout: 2 * time.Second},
		Now: func() time.Time { return now },
	}
}

// readPlainPart decodes part n of a backup into its plain tar stream.
func readPlainPart(t *testing.T, st storage.Store, backup string, n int) []byte {
	t.Helper()
	o, err := repo.New(st, repo.Options{}).OpenPart(context.Background(), backup, repo.Part{N: n}) // no limit: the test reads what is there
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readPart decodes part n of a backup into its tar entries.
func readPart(t *testing.T, st storage.Store, backup string, n int) map[string][]byte {
	t.Helper()
	o, err := repo.New(st, repo.Options{}).OpenPart(context.Background(), backup, repo.Part{N: n}) // no limit: the test reads what is there
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	tr := tar.NewReader(o)
	out := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("part %d: %s: %v", n, hdr.Name, err)
		}
		out[hdr.Name] = b
	}
	if _, err := io.Copy(io.Discard, o); err != nil {
		t.Fatalf("part %d: %v", n, err)
	}
	return out
}

func TestPushEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name        string
		partSize    int64
		concurrency int
	}{
		{"one part per worker", 1 << 20, 2},
		{"part per file", 1, 3},
		{"small parts, one worker", 16 << 10, 1},
		{"zero concurrency means one", 16 << 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			fx := newBackupFixture(t, testSystemID, nil)
			st := mem.New()
			putWAL(t, st, "000000010000000000000002")
			src := newFakeSource(fx.dataDir)
			src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
			now := time.Date(2026, 11, 23, 20, 39, 44, 0, time.UTC)
			p := newPusher(st, src, fx.dataDir, tc.partSize, tc.concurrency, now)

			m, err := p.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkManifest(t, st, m, fx, src, "20261123T203944Z")

			stored, err := repo.New(st, repo.Options{}).ReadManifest(ctx, m.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored.Files) != m.FileCount || len(stored.Parts) != len(m.Parts) || stored.Size != m.Size || stored.StopLSN != m.StopLSN {
				t.Errorf("stored manifest differs from the returned one: %+v", stored)
			}
			checkManifest(t, st, stored, fx, src, "20261123T203944Z")

			list, _, err := repo.New(st, repo.Options{}).ListBackups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Name != m.Name {
				t.Errorf("ListBackups = %v, want [%s]", names(list), m.Name)
			}
			if _, err := st.Stat(ctx, "locks/backup.json"); !errors.Is(err, storage.ErrNotExist) {
				t.Errorf("backup lock after the backup: %v, want it gone", err)
			}
			id, err := repo.New(st, repo.Options{}).Identity(ctx)
			if err != nil || id.SystemID != testSystemID || id.PGVersion != 15 {
				t.Errorf("identity = %+v, %v", id, err)
			}

			// A second backup in the same second gets a name of its own.
			m2, err := p.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m2.Name != "20261123T203944Z-2" {
				t.Errorf("second backup in one second is named %s, want 20261123T203944Z-2", m2.Name)
			}
			if list, _, err := repo.New(st, repo.Options{}).ListBackups(ctx); err != nil || len(list) != 2 {
				t.Errorf("ListBackups = %v, %v; want two backups", names(list), err)
			}
		})
	}
}

func names(ms []*repo.Summary) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func checkManifest(t *testing.T, st storage.Store, m *repo.Manifest, fx backupFixture, src *fakeSource, name string) {
	t.Helper()
	m = withFiles(t, m)
	if m.Name != name {
		t.Errorf("name = %s, want %s", m.Name, name)
	}
	if m.SystemID != testSystemID || m.PGVersion != 15 || !m.DataChecksums || m.WALSegSize != 16<<20 || m.Timeline != 1 {
		t.Errorf("cluster fields: system %d, version %d, checksums %v, segsize %d, timeline %d",
			m.SystemID, m.PGVersion, m.DataChecksums, m.WALSegSize, m.Timeline)
	}
	if m.StartLSN != src.startLSN || m.StopLSN != src.stopLSN || m.StartWAL != "000000010000000000000002" ||
		m.StopWAL != "000000010000000000000002" || m.NextXID != src.nextXID {
		t.Errorf("WAL fields: start %s %s, stop %s %s, next xid %d", m.StartLSN, m.StartWAL, m.StopLSN, m.StopWAL, m.NextXID)
	}
	if src.startLabel != "pgb "+m.Name || !src.startFast {
		t.Errorf("backup started with label %q, fast %v; want %q, true", src.startLabel, src.startFast, "pgb "+m.Name)
	}
	if !strings.Contains(m.Label, "LABEL: pgb "+m.Name) {
		t.Errorf("backup label %q is not the one pg_backup_stop returned", m.Label)
	}
	if m.Compression != "lz4" {
		t.Errorf("compression = %q", m.Compression)
	}
	if len(m.Tablespaces) != 1 || m.Tablespaces[0] != (repo.Tablespace{OID: 16400, Name: "ts", Location: fx.spcDir}) {
		t.Errorf("tablespaces = %+v", m.Tablespaces)
	}
	if want := fmt.Sprintf("16400 %s\n", fx.spcDir); m.TablespaceMap != want {
		t.Errorf("tablespace map = %q, want %q", m.TablespaceMap, want)
	}

	// Files: exactly the expected ones, with size and checksum of their content.
	var size int64
	seen := map[string]bool{}
	perPart := map[int][]string{}
	for _, f := range m.Files {
		if seen[f.Path] {
			t.Errorf("file %s listed twice", f.Path)
		}
		seen[f.Path] = true
		size += f.Size
		perPart[f.Part] = append(perPart[f.Part], f.Path)
		want, ok := fx.want[f.Path]
		if !ok {
			t.Errorf("manifest lists %s, which must not be backed up", f.Path)
			continue
		}
		if f.Size != int64(len(want)) || f.CRC != crc32cHex(want) {
			t.Errorf("file %s: size %d crc %s, want %d %s", f.Path, f.Size, f.CRC, len(want), crc32cHex(want))
		}
	}
	for p := range fx.want {
		if !seen[p] {
			t.Errorf("file %s is missing from the manifest", p)
		}
	}
	if !sort.SliceIsSorted(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path }) {
		t.Error("manifest files are not sorted by path")
	}
	if m.Size != size {
		t.Errorf("Size = %d, want the sum of file sizes %d", m.Size, size)
	}

	// Parts: numbered 1..N, each holding exactly the files the manifest assigns to it.
	var stored int64
	nums := map[int]bool{}
	for _, pt := range m.Parts {
		if nums[pt.N] {
			t.Errorf("part %d listed twice", pt.N)
		}
		nums[pt.N] = true
		stored += pt.Stored
		if pt.Files != len(perPart[pt.N]) {
			t.Errorf("part %d: Files = %d, but %d files name it", pt.N, pt.Files, len(perPart[pt.N]))
		}
		info, err := st.Stat(context.Background(), repo.PartKey(m.Name, pt.N))
		if err != nil {
			t.Errorf("part %d: %v", pt.N, err)
			continue
		}
		if info.Size != pt.Stored {
			t.Errorf("part %d: stored %d bytes, manifest says %d", pt.N, info.Size, pt.Stored)
		}
		entries := readPart(t, st, m.Name, pt.N)
		if len(entries) != len(perPart[pt.N]) {
			t.Errorf("part %d holds %d entries, manifest assigns %d", pt.N, len(entries), len(perPart[pt.N]))
		}
		for _, p := range perPart[pt.N] {
			if got, ok := entries[p]; !ok || !bytes.Equal(got, fx.want[p]) {
				t.Errorf("part %d: %s missing or different (present %v)", pt.N, p, ok)
			}
		}
	}
	// Each file's recorded offset is where its tar header starts: a reader that skips
	// to it finds that file first.
	plain := map[int][]byte{}
	for _, f := range m.Files {
		if !m.Parts[0].FileOffsets {
			t.Fatal("the parts do not record file offsets")
		}
		if plain[f.Part] == nil {
			plain[f.Part] = readPlainPart(t, st, m.Name, f.Part)
		}
		b := plain[f.Part]
		if f.Offset < 0 || f.Offset >= int64(len(b)) {
			t.Errorf("%s: offset %d outside part %d (%d bytes)", f.Path, f.Offset, f.Part, len(b))
			continue
		}
		hdr, err := tar.NewReader(bytes.NewReader(b[f.Offset:])).Next()
		if err != nil || hdr.Name != f.Path || hdr.Size != f.Size {
			t.Errorf("%s: at offset %d of part %d: %+v, %v", f.Path, f.Offset, f.Part, hdr, err)
		}
	}
	for n := 1; n <= len(m.Parts); n++ {
		if !nums[n] {
			t.Errorf("parts are %v: part %d is missing", nums, n)
		}
	}
	for n := range perPart {
		if !nums[n] {
			t.Errorf("files name part %d, which the manifest does not list", n)
		}
	}
	if m.StoredSize != stored {
		t.Errorf("StoredSize = %d, want %d", m.StoredSize, stored)
	}
	if got := len(allKeys(t, st, repo.BackupPrefix(m.Name))); got != len(m.Parts)+2 {
		t.Errorf("%d objects under %s, want %d parts, the summary and the manifest", got, repo.BackupPrefix(m.Name), len(m.Parts))
	}

	// Directories.
	dirs := map[string]bool{}
	for _, d := range m.Dirs {
		dirs[d.Path] = true
	}
	for _, d := range []string{"base", "base/1", "base/5", "global", "pg_wal", "pg_wal/archive_status", "pg_tblspc",
		"pg_tblspc/16400", "pg_tblspc/16400/PG_15_202209061", "pg_tblspc/16400/PG_15_202209061/5", "pg_stat_tmp", "pg_logical"} {
		if !dirs[d] {
			t.Errorf("directory %s is missing from the manifest", d)
		}
	}
}

func TestPushStopWALNeverArrives(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	st := &recordingStore{Store: mem.New()}
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource(fx.dataDir)
	first, err := newPusher(st, src, fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := allKeys(t, st, "")

	src = newFakeSource(fx.dataDir)
	src.stopWAL = "000000010000000000000009"
	p := newPusher(st, src, fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC))
	p.Opt.ArchiveTimeout = 300 * time.Millisecond
	m, err := p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "000000010000000000000009") {
		t.Fatalf("Run = %v, %v; want an error naming the stop segment", m, err)
	}
	if !src.stopped {
		t.Error("the backup failed before pg_backup_stop")
	}
	failed := "20260101T010000Z"
	uploaded := 0
	for _, k := range st.keys() {
		if strings.HasPrefix(k, repo.BackupPrefix(failed)) {
			uploaded++
		}
	}
	if uploaded == 0 {
		t.Fatalf("the failed backup uploaded nothing under %s (keys %v): the test proves no cleanup", repo.BackupPrefix(failed), st.keys())
	}
	if left := allKeys(t, st, repo.BackupPrefix(failed)); len(left) != 0 {
		t.Errorf("the failed backup left %v", left)
	}
	list, _, err := repo.New(st, repo.Options{}).ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != first.Name {
		t.Errorf("ListBackups = %v, want only %s", names(list), first.Name)
	}
	if after := allKeys(t, st, ""); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("repository before the failed backup:\n%v\nafter:\n%v", before, after)
	}
}

func TestPushRefusesBeforeWriting(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, st storage.Store, src *fakeSource)
		wantErr string
		is      error
		check   func(t *testing.T, st storage.Store)
	}{
		{
			name:    "data directory of another cluster",
			prepare: func(t *testing.T, st storage.Store, src *fakeSource) { src.sys = testSystemID + 1 },
			wantErr: "--pgdata",
			check: func(t *testing.T, st storage.Store) {
				if _, err := repo.New(st, repo.Options{}).Identity(ctx); !errors.Is(err, repo.ErrNoIdentity) {
					t.Errorf("repository initialised for the wrong cluster: %v", err)
				}
			},
		},
		{
			name: "repository of another cluster",
			prepare: func(t *testing.T, st storage.Store, src *fakeSource) {
				if _, err := repo.New(st, repo.Options{}).EnsureIdentity(ctx, repo.Identity{SystemID: 42, PGVersion: 15}); err != nil {
					t.Fatal(err)
				}
			},
			is: repo.ErrForeignCluster,
			check: func(t *testing.T, st storage.Store) {
				if _, err := st.Stat(ctx, "locks/backup.json"); !errors.Is(err, storage.ErrNotExist) {
					t.Errorf("lock taken: %v", err)
				}
			},
		},
		{
			name: "lock held by another host",
			prepare: func(t *testing.T, st storage.Store, src *fakeSource) {
				// Recent: a lock older than --lock-max-age would be taken over.
				b := []byte(`{"host":"elsewhere.example","pid":1,"started":"` + time.Now().UTC().Format(time.RFC3339) + `","what":"backup-push"}`)
				if err := st.Put(ctx, "locks/backup.json", bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
					t.Fatal(err)
				}
			},
			is:      repo.ErrLocked,
			wantErr: "elsewhere.example",
			check: func(t *testing.T, st storage.Store) {
				rc, err := st.Get(ctx, "locks/backup.json", 0, -1)
				if err != nil {
					t.Fatalf("the other host's lock is gone: %v", err)
				}
				defer rc.Close()
				if b, _ := io.ReadAll(rc); !bytes.Contains(b, []byte("elsewhere.example")) {
					t.Errorf("the other host's lock was replaced: %s", b)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newBackupFixture(t, testSystemID, nil)
			st := mem.New()
			src := newFakeSource(fx.dataDir)
			tc.prepare(t, st, src)
			putWAL(t, st, "000000010000000000000002")
			_, err := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Now()).Run(ctx)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run = %v, want an error (%v) containing %q", err, tc.is, tc.wantErr)
			}
			if src.startLabel != "" {
				t.Error("the backup was started")
			}
			if left := allKeys(t, st, "backups/"); len(left) != 0 {
				t.Errorf("objects written: %v", left)
			}
			tc.check(t, st)
		})
	}
}

func TestPushFailingUploads(t *testing.T) {
	for _, tc := range []struct {
		name        string
		concurrency int
		extra       map[string][]byte
	}{
		{
			// The failure surfaces while a file is written into the part.
			name:        "upload fails during a large file",
			concurrency: 1,
			extra:       map[string][]byte{"base/5/99999": randomBytes(7, 3<<20)},
		},
		{
			// The failure surfaces only when the part is closed: every file fits in
			// the part's buffers.
			name:        "upload fails at the end of a part",
			concurrency: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			fx := newBackupFixture(t, testSystemID, tc.extra)
			inner := mem.New()
			putWAL(t, inner, "000000010000000000000002")
			st := faulty.New(inner, faulty.Rule{Op: faulty.Put, Key: "backups/"})
			p := newPusher(st, newFakeSource(fx.dataDir), fx.dataDir, 1<<20, tc.concurrency, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

			type result struct {
				m   *repo.Manifest
				err error
			}
			done := make(chan result, 1)
			go func() {
				m, err := p.Run(ctx)
				done <- result{m, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return (deadlock) after its uploads failed")
			}
			if r.err == nil || !errors.Is(r.err, faulty.ErrInjected) {
				t.Fatalf("Run = %v, %v; want the injected upload failure", r.m, r.err)
			}
			if st.Faults(faulty.Put) == 0 {
				t.Fatal("no upload was attempted")
			}
			if _, err := repo.New(inner, repo.Options{}).ReadManifest(ctx, "20260101T000000Z"); !errors.Is(err, repo.ErrNoBackup) {
				t.Errorf("ReadManifest after a failed backup: %v, want ErrNoBackup", err)
			}
			if list, _, err := repo.New(inner, repo.Options{}).ListBackups(ctx); err != nil || len(list) != 0 {
				t.Errorf("ListBackups = %v, %v; want none", names(list), err)
			}
			if left := allKeys(t, inner, "backups/"); len(left) != 0 {
				t.Errorf("the failed backup left %v", left)
			}
			if _, err := inner.Stat(ctx, "locks/backup.json"); !errors.Is(err, storage.ErrNotExist) {
				t.Errorf("backup lock after the failed backup: %v, want it gone", err)
			}
		})
	}
}

// A manifest write whose acknowledgement is lost (the object store stored it, the
// response never came) is retried by the retry layer, which then finds the manifest
// already there. The backup is complete: it must be kept and listed, not cleaned up.
func TestPushManifestAckLostKeepsTheBackup(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	inner := mem.New()
	putWAL(t, inner, "000000010000000000000002")
	name := "20260101T000000Z"
	fst := faulty.New(inner, faulty.Rule{Op: faulty.Put, Key: repo.ManifestKey(name), Fault: faulty.FailAfter, Count: 1})
	st := retry.New(fst, retry.Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	p := newPusher(st, src, fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

	m, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("Run = %v; the manifest is stored, so the backup is complete", err)
	}
	if fst.Faults(faulty.Put) != 1 {
		t.Fatalf("the lost acknowledgement was not injected (%d faults)", fst.Faults(faulty.Put))
	}
	list, _, err := repo.New(inner, repo.Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 || list[0].Name != name {
		t.Fatalf("ListBackups = %v, %v; want [%s]", names(list), err, name)
	}
	stored, err := repo.New(inner, repo.Options{}).Manifest(ctx, list[0])
	if err != nil {
		t.Fatal(err)
	}
	checkManifest(t, inner, stored, fx, src, name)
	if m.FileCount != len(stored.Files) {
		t.Errorf("returned manifest lists %d files, stored one %d", m.FileCount, len(stored.Files))
	}
}

// A manifest that is already there with other content is not this backup's: the
// backup fails (and says so), and the other manifest is left untouched.
func TestPutManifestRefusesADifferentExistingOne(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	other := &repo.Manifest{Summary: repo.Summary{Name: "20260101T000000Z", StopLSN: 1}}
	if err := repo.New(st, repo.Options{}).PutBackup(ctx, other); err != nil {
		t.Fatal(err)
	}
	mine := &repo.Manifest{Summary: repo.Summary{Name: "20260101T000000Z", StopLSN: 2}}
	if err := repo.New(st, repo.Options{}).PutBackup(ctx, mine); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("PutManifest over a different manifest = %v, want ErrExist", err)
	}
	got, err := repo.New(st, repo.Options{}).ReadManifest(ctx, other.Name)
	if err != nil || got.StopLSN != 1 {
		t.Fatalf("stored manifest = %+v, %v; want the first one untouched", got, err)
	}
	if err := repo.New(st, repo.Options{}).PutBackup(ctx, other); err != nil {
		t.Errorf("PutManifest of the identical manifest again = %v, want success", err)
	}
}

func TestRateIsOverTheCopyOnly(t *testing.T) {
	for _, tc := range []struct {
		size int64
		d    time.Duration
		want float64
	}{
		{100 << 20, 2 * time.Second, 50 << 20},
		{0, time.Second, 0},
		{1 << 20, 0, 0}, // nothing timed: no rate, not +Inf
		{3 << 20, 1500 * time.Millisecond, 2 << 20},
	} {
		if got := Rate(tc.size, tc.d); got != tc.want {
			t.Errorf("Rate(%d, %s) = %v, want %v", tc.size, tc.d, got, tc.want)
		}
	}

	// A spread checkpoint of ten minutes is not part of the copy's time.
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	src := newFakeSource(fx.dataDir)
	src.onStart = func() { mu.Lock(); clock = clock.Add(10 * time.Minute); mu.Unlock() }
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, clock)
	p.Opt.Fast = false
	var logs bytes.Buffer
	p.Log = slog.New(slog.NewTextHandler(&logs, nil))
	p.Now = func() time.Time { // every reading advances the clock by a second
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	m, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.Start < 10*time.Minute {
		t.Errorf("Stats.Start = %s, want the ten-minute checkpoint", p.Stats.Start)
	}
	if p.Stats.Copy != time.Second {
		t.Errorf("Stats.Copy = %s, want 1s (the copy alone)", p.Stats.Copy)
	}
	if got, want := Rate(m.Size, p.Stats.Copy), float64(m.Size); got != want {
		t.Errorf("rate = %v B/s, want %v", got, want)
	}
	if !strings.Contains(logs.String(), "waiting for the checkpoint (spread; --fast to force it)") {
		t.Errorf("a spread checkpoint is not announced; log:\n%s", logs.String())
	}
}

// A copy of the data directory (same system identifier) whose pg_control predates the
// checkpoint pg_backup_start just made is not the directory the server runs on.
func TestPushRefusesAnOldCopyOfTheDataDirectory(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	old := pgControl(testSystemID)
	binary.LittleEndian.PutUint64(old[32:], 0x1000060)
	binary.LittleEndian.PutUint64(old[40:], 0x1000028) // an earlier checkpoint
	sealControl(old)
	writeFiles(t, fx.dataDir, map[string][]byte{"global/pg_control": old})
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource("/var/lib/postgresql/15/main")
	_, err := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Now()).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "old copy") || !strings.Contains(err.Error(), fx.dataDir) {
		t.Fatalf("Run on an old copy = %v, want it refused naming the directory", err)
	}
	if left := allKeys(t, st, "backups/"); len(left) != 0 {
		t.Errorf("objects written: %v", left)
	}
}

// Without --pgdata the backup reads the directory the server reports.
func TestPushDefaultsToTheServersDataDirectory(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	m, err := newPusher(st, src, "", 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkManifest(t, st, m, fx, src, "20260101T000000Z")
}

// pingingSource is a fakeSource whose session can be lost: then Ping and BackupStop fail.
type pingingSource struct {
	*fakeSource
	gone  chan struct{} // closed when the server stops
	pings atomic.Int64
}

var errConnClosed = errors.New("conn closed")

func (s *pingingSource) Ping(ctx context.Context) error {
	s.pings.Add(1)
	select {
	case <-s.gone:
		return errConnClosed
	default:
		return nil
	}
}

func (s *pingingSource) BackupStop(ctx context.Context) (pg.BackupStopResult, error) {
	select {
	case <-s.gone:
		return pg.BackupStopResult{}, fmt.Errorf("stop backup: write: broken pipe")
	default:
		return s.fakeSource.BackupStop(ctx)
	}
}

func TestPushNoticesTheServerStoppingDuringTheCopy(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	inner := mem.New()
	putWAL(t, inner, "000000010000000000000002")
	// Uploads hang (as a long copy would) until the backup gives up on them.
	st := faulty.New(inner, faulty.Rule{Op: faulty.Put, Key: "backups/", Fault: faulty.Hang})
	src := &pingingSource{fakeSource: newFakeSource(fx.dataDir), gone: make(chan struct{})}
	close(src.gone) // PostgreSQL stops while the files are copied
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Opt.PingInterval = time.Millisecond
	_, err := p.Run(ctx)
	if !errors.Is(err, ErrServerGone) || !errors.Is(err, errConnClosed) {
		t.Fatalf("Run = %v; want ErrServerGone with the ping's error", err)
	}
	if src.stopped {
		t.Error("pg_backup_stop was called on a lost session")
	}
	if list, _, err := repo.New(inner, repo.Options{}).ListBackups(ctx); err != nil || len(list) != 0 {
		t.Errorf("ListBackups = %v, %v; want none", names(list), err)
	}
	if left := allKeys(t, inner, "backups/"); len(left) != 0 {
		t.Errorf("the failed backup left %v", left)
	}
}

func TestPushSaysPlainlyWhenTheServerStoppedBeforePgBackupStop(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := &pingingSource{fakeSource: newFakeSource(fx.dataDir), gone: make(chan struct{})}
	src.onStart = func() { close(src.gone) }
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Opt.PingInterval = time.Hour // the copy ends before any ping: the stop runs into it
	_, err := p.Run(ctx)
	if !errors.Is(err, ErrServerGone) || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("Run = %v; want ErrServerGone, keeping the failing step's error", err)
	}
	if list, _, err := repo.New(st, repo.Options{}).ListBackups(ctx); err != nil || len(list) != 0 {
		t.Errorf("ListBackups = %v, %v; want none", names(list), err)
	}
}

// Without --pgdata (the cron case) the owner of the server's data directory is still
// recorded, so that a restore as root gives the files back to it.
func TestPushWithoutPgdataRecordsTheDataDirectoryOwner(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	m, err := newPusher(st, src, "", 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := ownerOf(fx.dataDir)
	if want == nil {
		t.Fatal("cannot tell the fixture's owner")
	}
	if m.DataDirOwner == nil || m.DataDirOwner.UID != want.UID || m.DataDirOwner.GID != want.GID {
		t.Fatalf("manifest records data directory owner %+v, want %+v", m.DataDirOwner, want)
	}
	got, err := repo.New(st, repo.Options{}).ReadManifest(context.Background(), m.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.DataDirOwner == nil || got.DataDirOwner.UID != want.UID {
		t.Fatalf("stored manifest records data directory owner %+v, want %+v", got.DataDirOwner, want)
	}
}

// Another copy of the cluster that checkpointed later than the server (a second
// standby on this host, while the connection goes to the first) passes a check of
// "redo at or after the backup's start", but its pg_control is not the server's.
func TestPushRefusesANewerLookingCopyOfTheDataDirectory(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	newer := pgControl(testSystemID)
	binary.LittleEndian.PutUint64(newer[32:], 0x3000060)
	binary.LittleEndian.PutUint64(newer[40:], 0x3000028) // a later checkpoint than the server's
	sealControl(newer)
	writeFiles(t, fx.dataDir, map[string][]byte{"global/pg_control": newer})
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource("/var/lib/postgresql/15/main")
	_, err := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Now()).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), fx.dataDir) || !strings.Contains(err.Error(), "0/3000060") ||
		!strings.Contains(err.Error(), "0/2000060") {
		t.Fatalf("Run on a newer-looking copy = %v, want it refused naming the directory and both checkpoints", err)
	}
	if left := allKeys(t, st, "backups/"); len(left) != 0 {
		t.Errorf("objects written: %v", left)
	}
}

// A checkpoint that completes between reading the server's pg_control and the
// directory's is not mistaken for a copy: both are read again.
func TestPushLiveCheckRereadsWhenACheckpointRaces(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := newFakeSource(fx.dataDir)
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	// The server's answer is first the checkpoint before, then the one on disk.
	src.control = []pg.Control{{Checkpoint: 0x1000060, Redo: 0x1000028, Timeline: 1}, {Checkpoint: 0x2000060, Redo: 0x2000028, Timeline: 1}}
	if _, err := newPusher(st, src, "", 1<<20, 2, time.Now()).Run(context.Background()); err != nil {
		t.Fatalf("Run with a checkpoint racing the live check: %v", err)
	}
}

// When the cleanup of a failed backup cannot list or remove what it uploaded, it says
// so, naming the backup and what was left, instead of dropping the error.
func TestPushSaysWhatAFailedCleanupLeftBehind(t *testing.T) {
	ctx := context.Background()
	fx := newBackupFixture(t, testSystemID, nil)
	inner := mem.New()
	putWAL(t, inner, "000000010000000000000002")
	name := "20260101T000000Z"
	fst := faulty.New(inner,
		faulty.Rule{Op: faulty.Put, Key: repo.ManifestKey(name)},
		// The first listing of the backup's prefix is the check that its name is free.
		faulty.Rule{Op: faulty.List, Key: repo.BackupPrefix(name), Skip: 1})
	var logged bytes.Buffer
	p := newPusher(fst, newFakeSource(fx.dataDir), fx.dataDir, 16<<10, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Log = slog.New(slog.NewTextHandler(&logged, nil))
	if _, err := p.Run(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("Run = %v, want the injected manifest failure", err)
	}
	if fst.Faults(faulty.List) != 1 {
		t.Fatalf("the cleanup's listing was not failed (%d faults)", fst.Faults(faulty.List))
	}
	out := logged.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, name) || !strings.Contains(out, "left=") {
		t.Errorf("log after a failed cleanup:\n%s\nwant a warning naming backup %s and what was left", out, name)
	}
}

// withFiles is m with the files of its list (Run keeps them in m.List) in m.Files,
// sorted by path as a manifest read whole has them.
func withFiles(t *testing.T, m *repo.Manifest) *repo.Manifest {
	t.Helper()
	if m.List == nil {
		return m
	}
	c := *m
	c.List = nil
	if err := m.EachFile(func(f *repo.File) error { c.Files = append(c.Files, *f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(c.Files) != m.FileCount {
		t.Errorf("the file list holds %d files, the manifest counts %d", len(c.Files), m.FileCount)
	}
	c.Sort()
	return &c
}

// Small files go into parts of their own, never after a relation segment: a restore
// that needs only some of them (a delta restore rewrites pg_control and
// postgresql.auto.conf every time) reads a few MiB, not a part of a GiB.
func TestPushKeepsSmallFilesOutOfTheBigFilesParts(t *testing.T) {
	for _, concurrency := range []int{1, 2} {
		ctx := context.Background()
		fx := newBackupFixture(t, testSystemID, map[string][]byte{
			"base/5/16500":   randomBytes(7, 2<<20),
			"base/5/16500.1": randomBytes(8, smallFile),
			"base/5/16501":   randomBytes(9, 3<<20/2),
		})
		st := mem.New()
		putWAL(t, st, "000000010000000000000002")
		src := newFakeSource(fx.dataDir)
		src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
		m, err := newPusher(st, src, fx.dataDir, 1<<30, concurrency, time.Now()).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		big, small := map[int]int{}, map[int]int{}
		for _, f := range withFiles(t, m).Files {
			if f.Size >= smallFile {
				big[f.Part]++
			} else if f.Part != 0 {
				small[f.Part]++
			}
		}
		if len(big) == 0 || len(small) == 0 {
			t.Fatalf("concurrency %d: parts of big files %v, of small ones %v: want both", concurrency, big, small)
		}
		for n := range big {
			if small[n] > 0 {
				t.Errorf("concurrency %d: part %d holds %d big files and %d small ones", concurrency, n, big[n], small[n])
			}
		}
	}
}
