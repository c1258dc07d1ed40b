package restore

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// A finished restore records the files that still hold the backup's bytes, as they
// are; a delta restore reads the record once, removing it first, and takes it only
// when it is a whole record of the same cluster.
func TestRestoreRecordHoldsWhatTheRestoreLeftAsTheBackupHasIt(t *testing.T) {
	dir := t.TempDir()
	r := &Restorer{Opt: Options{DataDir: dir}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	all := func(string) bool { return true }
	mtime := time.Date(2026, 12, 1, 3, 0, 0, 123456789, time.UTC)
	for _, name := range []string{"PG_VERSION", "postgresql.auto.conf", "gone", "linked", "chmod"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(dir, name), mtime, mtime); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		r.addRestored(f, name, "crc-"+name, int64(len(name)), mtime)
		_ = f.Close()
	}
	// Changed after it was checked (the recovery settings; a chmod, which keeps its
	// size and time), removed, linked: not recorded.
	if err := os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("postgresql.auto.conf"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "chmod"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "linked"), filepath.Join(t.TempDir(), "other")); err != nil {
		t.Fatal(err)
	}
	m := &repo.Manifest{Summary: repo.Summary{Name: "b1", SystemID: 42}}
	r.writeRecord(m, nil)
	if _, err := os.Stat(filepath.Join(dir, RecordFile)); err != nil {
		t.Fatalf("no record written: %v", err)
	}
	if got, err := r.loadRecord(dir, 43, all); err != nil || got != nil {
		t.Fatalf("record of cluster 42 taken for cluster 43: %v, %v", got, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, RecordFile)); err == nil {
		t.Fatal("the record is still there once a delta restore read it")
	}
	r.writeRecord(m, nil)
	got, err := r.loadRecord(dir, 42, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["PG_VERSION"] == nil || got["PG_VERSION"].CRC != "crc-PG_VERSION" {
		t.Fatalf("record %v, want PG_VERSION alone", got)
	}
	fi, err := os.Lstat(filepath.Join(dir, "PG_VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if !got["PG_VERSION"].same(fi) {
		t.Fatal("the record does not hold PG_VERSION as it is")
	}

	// Only the entries asked for are kept.
	r.writeRecord(m, nil)
	if got, err := r.loadRecord(dir, 42, func(string) bool { return false }); err != nil || len(got) != 0 {
		t.Fatalf("entries kept that were not asked for: %v, %v", got, err)
	}

	// Not a record: ignored; a regular file is removed all the same, anything else
	// left to the delta restore; a link is never followed.
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, make := range map[string]func(p string) error{
		"garbage": func(p string) error {
			return os.WriteFile(p, []byte("{\"format\":1,\"system_id\":42,\"files\":[{"), 0o600)
		},
		"other format": func(p string) error { return os.WriteFile(p, []byte(`{"format":2,"system_id":42}`), 0o600) },
		"a link":       func(p string) error { return os.Symlink(outside, p) },
		"a directory":  func(p string) error { return os.Mkdir(p, 0o700) },
		"too large": func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteString(`{"format":1,"system_id":42,"files":[` + strings.Repeat(" ", 16)); err != nil {
				return err
			}
			return f.Truncate(maxRecordSize + 1)
		},
	} {
		p := filepath.Join(dir, RecordFile)
		if err := make(p); err != nil {
			t.Fatal(err)
		}
		got, err := r.loadRecord(dir, 42, all)
		if err != nil || got != nil {
			t.Errorf("%s: %v, %v: want no record and no error", name, got, err)
		}
		fi, err := os.Lstat(p)
		if regular := name != "a link" && name != "a directory"; regular && err == nil {
			t.Errorf("%s: left in place", name)
		} else if !regular && err != nil {
			t.Errorf("%s: removed (%v), but it is left to the delta restore", name, err)
		} else if !regular && name == "a directory" && !fi.IsDir() {
			t.Errorf("%s: changed", name)
		}
		_ = os.RemoveAll(p)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "{}" {
		t.Fatal("the file a link named was changed")
	}
}

// A hostile record (the data directory is written by others too) either decodes into
// entries of the paths asked for, of the cluster asked for, or is refused; never more.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"format":1,"system_id":42,"backup":"b","taken":"2026-12-01T00:00:00Z","files":[{"path":"PG_VERSION","crc":"00000000","size":3,"mtime_ns":1,"ctime_ns":2,"dev":3,"ino":4}]}`))
	f.Add([]byte(`{"files":[{},{},{"path":"x"}],"format":1,"system_id":42}`))
	f.Add([]byte(`{"format":2,"system_id":42}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRecord(bytes.NewReader(b), 42, func(p string) bool { return p == "PG_VERSION" })
		if err != nil {
			return
		}
		for p, e := range got {
			if p != "PG_VERSION" || e.Path != p {
				t.Fatalf("entry %q (path %q) kept, not asked for", p, e.Path)
			}
		}
	})
}
