package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// listedManifest is a manifest whose files are in a FileList: nFiles files spread
// over three parts, each part's entries in increasing offset order, added by parts
// out of order (as concurrent workers finish them).
func listedManifest(t testing.TB, name string, nFiles int) *Manifest {
	t.Helper()
	m := testManifest(name, 0x2000100)
	m.Files = nil
	l, err := NewFileList(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	m.List = l
	m.Parts = nil
	m.Size = 0
	mtime := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	for _, n := range []int{2, 3, 1} {
		w, err := l.Writer(n)
		if err != nil {
			t.Fatal(err)
		}
		pt := Part{N: n, FileOffsets: true, Stored: 7}
		for i := n - 1; i < nFiles; i += 3 {
			f := File{Path: fmt.Sprintf("base/5/%d", 90000-i), Size: int64(i % 5), Mode: 0o600, MTime: mtime,
				CRC: fmt.Sprintf("%08x", i), Part: n, Offset: int64(i) * 1024}
			if err := w.Add(&f); err != nil {
				t.Fatal(err)
			}
			pt.Files++
			pt.Size += f.Size
			m.Size += f.Size
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m.Parts = append(m.Parts, pt)
	}
	return m
}

// A manifest with a file list is written in format 2 and reads back, whole (files
// sorted by path) or part by part (in each part's order), without a difference; a
// retried write finds it; other content is refused.
func TestStreamedManifestRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	const name = "20261123T200000Z"
	m := listedManifest(t, name, 1000) // over 64 KiB of entries: several chunks per part
	if err := r.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	if m.Format != ManifestFormat || m.FileCount != 1000 {
		t.Fatalf("format %d, %d files", m.Format, m.FileCount)
	}
	list, damaged, err := r.ListBackups(ctx)
	if err != nil || len(list) != 1 || len(damaged) != 0 || list[0].Format != 2 || list[0].FileCount != 1000 {
		t.Fatalf("ListBackups = %+v, %v, %v", list, damaged, err)
	}

	var want []File
	if err := m.EachFile(func(f *File) error { want = append(want, *f); return nil }); err != nil {
		t.Fatal(err)
	}
	whole, err := r.Manifest(ctx, list[0])
	if err != nil {
		t.Fatal(err)
	}
	if whole.List != nil || len(whole.Files) != 1000 || whole.Label != m.Label || len(whole.Dirs) != 2 || len(whole.Links) != 1 {
		t.Fatalf("whole manifest: %d files, list %v", len(whole.Files), whole.List)
	}
	if !slices.IsSortedFunc(whole.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
		t.Error("files of a manifest read whole are not sorted by path")
	}
	byPath := map[string]File{}
	for _, f := range want {
		byPath[f.Path] = f
	}
	for _, f := range whole.Files {
		if w := byPath[f.Path]; !w.MTime.Equal(f.MTime) || w.Size != f.Size || w.CRC != f.CRC || w.Part != f.Part || w.Offset != f.Offset {
			t.Fatalf("file %s read back as %+v, written as %+v", f.Path, f, w)
		}
	}

	open, err := r.OpenManifest(ctx, list[0], t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.Close() }()
	if open.List == nil || open.Files != nil {
		t.Fatal("OpenManifest read a format 2 manifest whole")
	}
	if got := open.List.Parts(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("parts listed %v", got)
	}
	var got []File
	if err := open.EachFile(func(f *File) error { got = append(got, *f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d files read part by part, %d written", len(got), len(want))
	}
	for i := range got {
		if i > 0 && (got[i].Part < got[i-1].Part || got[i].Part == got[i-1].Part && got[i].Offset <= got[i-1].Offset) {
			t.Fatalf("entry %d (%s) is not in part and offset order", i, got[i].Path)
		}
	}

	recorded, err := r.BackupRecorded(ctx, m)
	if err != nil || !recorded {
		t.Errorf("BackupRecorded = %v, %v", recorded, err)
	}
	if err := r.PutBackup(ctx, m); err != nil {
		t.Errorf("a retried write of the same manifest: %v", err)
	}
	other := listedManifest(t, name, 999)
	if err := r.PutBackup(ctx, other); !errors.Is(err, storage.ErrExist) {
		t.Errorf("writing another manifest under the same name = %v, want ErrExist", err)
	}
	if recorded, err := r.BackupRecorded(ctx, other); err != nil || recorded {
		t.Errorf("BackupRecorded(other) = %v, %v", recorded, err)
	}
}

// streamedDoc is the plain content of a valid format 2 manifest: a header line and
// entry lines.
func streamedDoc(t testing.TB, name string, nFiles int) (header string, entries []string) {
	t.Helper()
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	if err := r.PutBackup(ctx, listedManifest(t, name, nFiles)); err != nil {
		t.Fatal(err)
	}
	return storedLines(t, r, name)
}

// storedLines is the stored manifest of backup name, decoded: its first line and its
// entry lines, each with its newline.
func storedLines(t testing.TB, r *Repo, name string) (header string, entries []string) {
	t.Helper()
	o, err := r.open(context.Background(), ManifestKey(name))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = o.Close() }()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] != "" {
		t.Fatalf("the document does not end with a newline: %q", lines[len(lines)-1])
	}
	return lines[0], lines[1 : len(lines)-1]
}

// A hostile or damaged format 2 manifest is refused as damaged, by both readers,
// before anything uses it; one from a newer pgb says so.
func TestStreamedManifestRefusesHostileEntries(t *testing.T) {
	const name = "20261123T200000Z"
	header, entries := streamedDoc(t, name, 6) // parts 1, 2 and 3, two files each
	if !strings.HasPrefix(header, `{"format":2,`) {
		t.Fatalf("header %s", header)
	}
	entry := func(i int, old, repl string) []string {
		c := slices.Clone(entries)
		if !strings.Contains(c[i], old) {
			t.Fatalf("entry %s lacks %s", c[i], old)
		}
		c[i] = strings.Replace(c[i], old, repl, 1)
		return c
	}
	long := `{"path":"base/5/` + strings.Repeat("a", 20000) + `"}` + "\n"
	// corrupt is the header with damaged pages: n counted, list listed.
	corrupt := func(n int, list string) string {
		return strings.Replace(header, `"parts":`, fmt.Sprintf(`"corrupt_pages":%d,"corrupt":[%s],"parts":`, n, list), 1)
	}
	blocks := func(n int) string {
		var b []string
		for i := range n {
			b = append(b, strconv.Itoa(i))
		}
		return strings.Join(b, ",")
	}
	// The control: damaged pages listed as backup-push lists them are accepted.
	listed := corrupt(1500, `{"path":"base/5/1","blocks":[3,7]},{"path":"base/5/2.1","blocks":[`+blocks(998)+`]}`)
	for _, tc := range []struct {
		name    string
		header  string
		entries []string
		newer   bool
	}{
		{"unchanged (the control)", header, entries, false},
		{"damaged pages listed (a control)", listed, entries, false},
		{"path outside", header, entry(0, `"base/5/`, `"../../etc/`), false},
		{"absolute path", header, entry(0, `"base/5/`, `"/etc/`), false},
		{"unclean path", header, entry(0, `"base/5/`, `"base//5/`), false},
		{"NUL in the path", header, entry(0, `"base/5/`, `"base/5\u0000/`), false},
		{"entries out of order", header, append([]string{entries[1], entries[0]}, entries[2:]...), false},
		{"entry of a part not listed", header, entry(0, `"part":1`, `"part":9`), false},
		{"part holding too many", header, append(slices.Clone(entries[:2]), entry(2, `"part":2`, `"part":1`)[2:]...), false},
		{"an entry missing", header, entries[1:], false},
		{"an entry too many", header, append(slices.Clone(entries), entries[5]), false},
		{"bytes after the entries", header, append(slices.Clone(entries), "\n"), false},
		{"entry not ending", header, append(slices.Clone(entries[:5]), strings.TrimSuffix(entries[5], "\n")), false},
		{"entry too long", header, append([]string{long}, entries[1:]...), false},
		{"not JSON", header, entry(3, `{`, `[`), false},
		{"negative size", header, entry(1, `"size":`, `"size":-`), false},
		{"checksum no CRC", header, entry(1, `"crc32c":"`, `"crc32c":"zz`), false},
		{"sizes do not add up", strings.Replace(header, `"size":`, `"size":1`, 1), entries, false},
		{"header lists files", strings.Replace(header, `"parts":`, `"files":[],"parts":`, 1), entries, false},
		{"part without offsets", strings.Replace(header, `"file_offsets":true`, `"file_offsets":false`, 1), entries, false},
		{"part number out of range", strings.Replace(header, `"n":3`, `"n":4`, 1), entries, false},
		{"newer format", strings.Replace(header, `{"format":2,`, `{"format":4,`, 1), entries, true},
		{"damaged pages outside", corrupt(1, `{"path":"../x","blocks":[3]}`), entries, false},
		{"damaged pages of no path", corrupt(1, `{"path":"","blocks":[3]}`), entries, false},
		{"damaged pages without blocks", corrupt(0, `{"path":"base/5/1","blocks":[]}`), entries, false},
		{"damaged pages out of order", corrupt(2, `{"path":"base/5/1","blocks":[3,3]}`), entries, false},
		{"more damaged pages listed than counted", corrupt(1, `{"path":"base/5/1","blocks":[3,4]}`), entries, false},
		{"too many damaged pages listed", corrupt(5000, `{"path":"base/5/1","blocks":[`+blocks(1001)+`]}`), entries, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := mem.New()
			r := New(st, Options{})
			doc := tc.header + strings.Join(tc.entries, "")
			if err := r.putDoc(ctx, ManifestKey(name), []byte(doc)); err != nil {
				t.Fatal(err)
			}
			want := ErrDamagedBackup
			switch {
			case tc.newer:
				want = ErrNewerFormat
			case (tc.header == header || tc.header == listed) && slices.Equal(tc.entries, entries):
				want = nil
			}
			if _, err := r.ReadManifest(ctx, name); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Errorf("ReadManifest = %v, want %v", err, want)
			}
			if m, err := r.readManifestFrom(ctx, name, int64(len(doc)), mustList(t)); !errors.Is(err, want) || (want == nil) != (err == nil) {
				_ = m.Close()
				t.Errorf("OpenManifest = %v, want %v", err, want)
			}
		})
	}
}

// A format 2 manifest that decodes to more than pgb allows is refused without being
// read to its end.
func TestStreamedManifestIsBounded(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	const name = "20261123T200000Z"
	header, entries := streamedDoc(t, name, 3)
	header = strings.Replace(header, `"file_count":3`, `"file_count":100000000`, 1)
	// The same entries over and over: it compresses to almost nothing.
	var doc bytes.Buffer
	doc.WriteString(header)
	for doc.Len() <= manifestFloor {
		doc.WriteString(entries[0])
	}
	if err := r.putDoc(ctx, ManifestKey(name), doc.Bytes()); err != nil {
		t.Fatal(err)
	}
	for _, read := range []func() error{
		func() error { _, err := r.ReadManifest(ctx, name); return err },
		func() error {
			m, err := r.OpenManifest(ctx, &Summary{Name: name}, t.TempDir())
			_ = m.Close()
			return err
		},
	} {
		if err := read(); !errors.Is(err, ErrDamagedBackup) {
			t.Errorf("read = %v, want ErrDamagedBackup", err)
		}
	}
}

// A file list read back damaged (its temporary file changed under it) is an error,
// never entries that differ from those written.
func TestFileListChecksItsChunks(t *testing.T) {
	m := listedManifest(t, "b", 10)
	if _, err := m.List.f.WriteAt([]byte("X"), 5); err != nil {
		t.Fatal(err)
	}
	err := m.EachFile(func(*File) error { return nil })
	if !errors.Is(err, ErrListDamaged) {
		t.Errorf("EachFile over a damaged list = %v, want ErrListDamaged", err)
	}
}

func mustList(t testing.TB) *FileList {
	t.Helper()
	l, err := NewFileList(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// A format 2 manifest damaged in storage (a flipped byte: it decodes to garbage before
// its checksum fails at the end) is reported as corrupt, not as a bad entry.
func TestStreamedManifestDamagedInStorageIsCorrupt(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	const name = "20261123T200000Z"
	if err := r.PutBackup(ctx, listedManifest(t, name, 3000)); err != nil {
		t.Fatal(err)
	}
	key := ManifestKey(name)
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := st.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, key, bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	for _, list := range []*FileList{nil, mustList(t)} {
		_, err := r.readManifestFrom(ctx, name, int64(len(data)), list)
		if !errors.Is(err, ErrDamagedBackup) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("reading a damaged manifest (list %v) = %v, want ErrDamagedBackup wrapping ErrCorrupt", list != nil, err)
		}
	}
}

// A format 2 manifest's header line is bounded (Options.ManifestHeaderLimit), far below the whole
// manifest's limit: a longer one is refused as damaged, by both readers, without being
// held whole.
func TestStreamedManifestHeaderIsBounded(t *testing.T) {
	ctx := context.Background()
	const maxHeaderLine = 256 << 10
	const name = "20261123T200000Z"
	header, entries := streamedDoc(t, name, 3)
	for _, pad := range []int{maxHeaderLine, maxHeaderLine / 2} {
		st := mem.New()
		r := New(st, Options{ManifestHeaderLimit: maxHeaderLine})
		// JSON allows blanks: a header that parses, made longer.
		long := strings.TrimSuffix(strings.TrimSuffix(header, "\n"), "}") + strings.Repeat(" ", pad) + "}\n"
		if err := r.putDoc(ctx, ManifestKey(name), []byte(long+strings.Join(entries, ""))); err != nil {
			t.Fatal(err)
		}
		for _, read := range []func() error{
			func() error { _, err := r.ReadManifest(ctx, name); return err },
			func() error {
				m, err := r.OpenManifest(ctx, &Summary{Name: name}, t.TempDir())
				_ = m.Close()
				return err
			},
		} {
			err := read()
			switch {
			case pad < maxHeaderLine && err != nil && !strings.Contains(err.Error(), "summary and its manifest disagree"):
				t.Errorf("a header of %d bytes: %v, want it read", len(long), err)
			case pad >= maxHeaderLine && (!errors.Is(err, ErrDamagedBackup) || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "header")):
				t.Errorf("a header of %d bytes: %v, want ErrDamagedBackup, ErrTooLarge naming the header", len(long), err)
			}
		}
	}
}
