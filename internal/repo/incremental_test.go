package repo

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// incrementalDoc is the stored text of an incremental manifest: two files unchanged
// since parent "20261123T190000Z", and in part 1 one stored whole and one as pages
// (blocks 0 and 3 of a 5-block file).
func incrementalDoc(t *testing.T, name string) (header string, entries []string) {
	t.Helper()
	ctx := context.Background()
	m := listedManifest(t, name, 0)
	m.Parent = "20261123T190000Z"
	m.List = mustList(t)
	m.Parts, m.Size = nil, 0
	mtime := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	u, err := m.List.Writer(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"base/5/1", "base/5/2"} {
		if err := u.Add(&File{Path: p, Size: 8192, Mode: 0o600, MTime: mtime, CRC: "0000abcd"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	enc, err := pagemap.Of(0, 3).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.List.Writer(1)
	if err != nil {
		t.Fatal(err)
	}
	whole := File{Path: "global/pg_control", Size: 8192, Mode: 0o600, MTime: mtime, CRC: "00001111", Part: 1}
	paged := File{Path: "base/5/3", Size: 5 * 8192, Mode: 0o600, MTime: mtime, CRC: "00002222", Part: 1, Offset: 9000,
		MapLen: int64(len(enc)), Stored: int64(len(enc)) + 2*8192}
	for _, f := range []*File{&whole, &paged} {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m.Parts = []Part{{N: 1, Files: 2, Size: 8192 + paged.Stored, Stored: 7, FileOffsets: true}}
	r := New(mem.New(), Options{})
	if err := r.PutBackup(ctx, m); err != nil {
		t.Fatal(err)
	}
	if m.Format != IncrementalFormat || m.FileCount != 4 || m.Size != 8*8192 {
		t.Fatalf("format %d, %d files, %d bytes", m.Format, m.FileCount, m.Size)
	}
	back, err := r.ReadManifest(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, f := range back.Files {
		switch {
		case f.Unchanged():
			kinds[f.Path] = "unchanged"
		case f.Delta():
			if f.TarSize() != int64(len(enc))+2*8192 {
				t.Fatalf("%s: tar size %d", f.Path, f.TarSize())
			}
			kinds[f.Path] = "pages"
		default:
			kinds[f.Path] = "whole"
		}
	}
	if kinds["base/5/1"] != "unchanged" || kinds["base/5/2"] != "unchanged" || kinds["base/5/3"] != "pages" || kinds["global/pg_control"] != "whole" {
		t.Fatalf("read back as %v", kinds)
	}
	return storedLines(t, r, name)
}

// An incremental manifest (format 3) reads back with its three kinds of file; one
// whose unchanged entries, page maps or parent do not hold together is refused as
// damaged, by both readers, before restore uses it.
func TestIncrementalManifestRefusesWhatDoesNotHoldTogether(t *testing.T) {
	const name = "20261123T200000Z"
	header, entries := incrementalDoc(t, name)
	if !strings.HasPrefix(header, `{"format":3,`) || len(entries) != 4 {
		t.Fatalf("header %s, %d entries", header, len(entries))
	}
	entry := func(i int, old, repl string) []string {
		c := append([]string(nil), entries...)
		if !strings.Contains(c[i], old) {
			t.Fatalf("entry %s lacks %s", c[i], old)
		}
		c[i] = strings.Replace(c[i], old, repl, 1)
		return c
	}
	for _, tc := range []struct {
		name    string
		header  string
		entries []string
		ok      bool
	}{
		{"as written (the control)", header, entries, true},
		{"no parent", strings.Replace(header, `"parent":"20261123T190000Z",`, ``, 1), entries, false},
		{"format 2 with a parent", strings.Replace(header, `{"format":3,`, `{"format":2,`, 1), entries, false},
		{"its own parent", strings.Replace(header, `"parent":"20261123T190000Z"`, `"parent":"`+name+`"`, 1), entries, false},
		{"a parent that is no backup name", strings.Replace(header, `"parent":"20261123T190000Z"`, `"parent":"../x"`, 1), entries, false},
		{"unchanged with an offset", header, entry(0, `"crc32c"`, `"offset":5,"crc32c"`), false},
		{"unchanged with pages", header, entry(0, `"crc32c"`, `"map_len":5,"stored":8192,"crc32c"`), false},
		{"unchanged after stored files", header, []string{entries[0], entries[2], entries[1], entries[3]}, false},
		{"stored less than its map", header, entry(3, `"stored":`, `"stored":1`), false},
		{"more pages stored than the file has", header, entry(3, `"size":40960`, `"size":100`), false},
		{"a map longer than the file allows", header, entry(3, `"map_len":`, `"map_len":99`), false},
		{"stored bytes without a map", header, entry(2, `"crc32c"`, `"stored":5,"crc32c"`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			r := New(mem.New(), Options{})
			doc := tc.header + strings.Join(tc.entries, "")
			if err := r.putDoc(ctx, ManifestKey(name), []byte(doc)); err != nil {
				t.Fatal(err)
			}
			_, err := r.ReadManifest(ctx, name)
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrDamagedBackup)) {
				t.Errorf("ReadManifest = %v, want ok %v", err, tc.ok)
			}
			m, err := r.readManifestFrom(ctx, name, int64(len(doc)), mustList(t))
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrDamagedBackup)) {
				t.Errorf("OpenManifest = %v, want ok %v", err, tc.ok)
			}
			_ = m.Close()
		})
	}
}

// Chain follows parents to the full backup, and refuses a chain missing a backup, one
// whose parent stopped after its child started, or a loop.
func TestChain(t *testing.T) {
	s := func(name, parent string, start, stop uint64) *Summary {
		f := ManifestFormat
		if parent != "" {
			f = IncrementalFormat
		}
		return &Summary{Format: f, Name: name, Parent: parent, StartLSN: wal0(start), StopLSN: wal0(stop), Timeline: 1}
	}
	f, i1, i2 := s("f", "", 1, 2), s("i1", "f", 3, 4), s("i2", "i1", 5, 6)
	c, err := Chain([]*Summary{i2, f, i1}, "i2")
	if err != nil || len(c) != 3 || c[0] != f || c[2] != i2 {
		t.Fatalf("Chain = %v, %v", c, err)
	}
	for _, tc := range []struct {
		name    string
		backups []*Summary
	}{
		{"missing", []*Summary{f, i2}},
		{"parent stopped after", []*Summary{f, s("i1", "f", 3, 9), i2}},
		{"loop", []*Summary{s("i1", "i2", 3, 4), s("i2", "i1", 4, 4)}},
		{"a parent on another timeline", []*Summary{f, func() *Summary { c := *i1; c.Timeline = 2; return &c }(), i2}},
		{"data checksums turned on", []*Summary{f, i1, func() *Summary { c := *i2; c.DataChecksums = true; return &c }()}},
		{"a parent in manifest format 1", []*Summary{func() *Summary { c := *f; c.Format = 1; return &c }(), i1, i2}},
	} {
		if _, err := Chain(tc.backups, "i2"); !errors.Is(err, ErrBrokenChain) {
			t.Errorf("%s: Chain = %v, want ErrBrokenChain", tc.name, err)
		}
	}
}

func wal0(n uint64) wal.LSN { return wal.LSN(n << 24) }

// ReadLayer reads the map at the head of a Delta entry and hands on exactly its pages;
// a map that does not decode, lies beyond the file or does not account for the entry's
// bytes is ErrCorrupt.
func TestReadLayer(t *testing.T) {
	enc := func(blocks ...uint32) []byte {
		b, err := pagemap.Of(blocks...).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc(1, 2)
	pages := strings.Repeat("p", 2*8192)
	f := File{Path: "base/5/9", Size: 3 * 8192, MapLen: int64(len(good)), Stored: int64(len(good)) + 2*8192}
	l, err := f.ReadLayer(strings.NewReader(string(good) + pages + "after"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(l.Pages)
	if l.Map.Len() != 2 || string(got) != pages {
		t.Fatalf("map %d blocks, %d bytes of pages", l.Map.Len(), len(got))
	}
	for _, tc := range []struct {
		name string
		f    File
		data string
	}{
		{"not a map", File{Path: "x", Size: 3 * 8192, MapLen: 3, Stored: 3}, "\xff\xff\xff"},
		{"stored bytes not the map's", File{Path: "x", Size: 3 * 8192, MapLen: int64(len(good)), Stored: int64(len(good)) + 8192}, string(good) + pages},
		{"a block beyond the file", File{Path: "x", Size: 8192, MapLen: int64(len(good)), Stored: int64(len(good)) + 2*8192}, string(good) + pages},
		{"a partial last block not stored", File{Path: "x", Size: 3*8192 + 1, MapLen: int64(len(good)), Stored: int64(len(good)) + 2*8192}, string(good) + pages},
	} {
		if _, err := tc.f.ReadLayer(strings.NewReader(tc.data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ReadLayer = %v, want ErrCorrupt", tc.name, err)
		}
	}
}
