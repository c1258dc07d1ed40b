package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// FuzzDocuments stores hostile bytes as every document pgb reads — raw and sealed as
// JSON — and reads them back: errors are expected, panics and unbounded reads are not.
func FuzzDocuments(f *testing.F) {
	good, _ := json.Marshal(bigManifest("20260101T000000Z", 1<<24, 2))
	f.Add(good)
	f.Add([]byte(`{"format":1,"name":"20260101T000000Z","files":[{"path_base64":"//8="}],"parts":[{"n":1}]}`))
	f.Add([]byte(`{"name":"b","file_count":-1,"part_count":99}`))
	f.Add([]byte("PGB\x00\x02\x00\x00\x00"))
	f.Add([]byte(`{"format":1,"id":"0123456789abcdef","cipher":"age","recipients":["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],"mac_key_id":"a1b2c3","first_used":"2026-12-03T03:00:00Z"}`))
	f.Add([]byte(`{"format":1,"started":"2026-12-01T03:00:00Z","finished":"2026-12-01T03:00:01Z","ok":true,"backup":"b","rto":{"total_seconds":1e308}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		st := mem.New()
		r := New(st, Options{})
		const name = "20260101T000000Z"
		put := func(key string, b []byte) {
			if err := st.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
				t.Fatal(err)
			}
		}
		put(backupLockKey, data)
		put(ManifestKey("raw"), data)
		put(restorePointKey("raw"), data)
		at := time.Date(2026, 12, 1, 3, 0, 1, 0, time.UTC)
		put(drillKey(at, "00000000000000ff", true), data)
		put(PassphraseKeyKey(1), data) // the raw bytes: a reader bounds them before scrypt (not run here)
		for _, key := range []string{ManifestKey(name), SummaryKey(name), restorePointKey("sealed"), PermanentKey(name), RelMapKey(name),
			drillKey(at, "0000000000000001", true), drillKey(at, "0000000000000002", false), RecipientSetKey("0123456789abcdef")} {
			if err := r.putDoc(ctx, key, data); err != nil {
				t.Fatal(err)
			}
		}
		put(IdentityKey, data) // after the sealed documents: writing them reads it
		_, _ = r.Identity(ctx)
		_, _, _ = readLock(ctx, st)
		list, _, err := r.ListBackups(ctx)
		if err == nil {
			for _, s := range list {
				_, _ = r.Manifest(ctx, s)
			}
		}
		_, _ = r.ReadManifest(ctx, "raw")
		_, _ = r.ListRestorePoints(ctx)
		_, _ = r.PermanentBackups(ctx)
		_, _ = r.ReadRelMap(ctx, name)
		if sets, err := r.RecipientSets(ctx); err == nil {
			for _, rs := range sets {
				if checkRecipientSet(RecipientSetKey(rs.ID), rs) != nil {
					t.Fatalf("a recipient set record that fails its check was returned: %+v", rs)
				}
			}
		}
		if gens, err := r.passphraseGenerations(ctx); err == nil && len(gens) == 1 {
			_, _ = r.readPassphraseKey(ctx, gens[0])
		}
		if d, err := r.RecentDrills(ctx, 5); err == nil {
			for _, x := range append(d.Successes, d.Last) {
				if x != nil && x.Validate() != nil {
					t.Fatalf("a record that fails validation was returned: %+v", x)
				}
			}
		}
	})
}

// FuzzStreamedManifest reads hostile bytes as a format 2 manifest, whole and into a
// file list: errors are expected; panics, unbounded reads and entries that pass
// unchecked are not.
func FuzzStreamedManifest(f *testing.F) {
	const name = "20261123T200000Z"
	header, entries := streamedDoc(f, name, 6)
	f.Add([]byte(header + strings.Join(entries, "")))
	f.Add([]byte(header + strings.Join(entries[1:], "")))
	// Streamed, its header then claiming format 1 (the last of two keys is kept).
	f.Add([]byte(strings.Replace(header, "}\n", `,"format":1}`+"\n", 1) + strings.Join(entries, "")))
	f.Add([]byte(`{"format":2,"name":"20261123T200000Z","file_count":1,"part_count":1,"parts":[{"n":1,"files":1,"file_offsets":true}]}` + "\n" +
		`{"path":"../x","size":0,"crc32c":"00000000","part":1}` + "\n"))
	// A streamed manifest sealed as pgb does: the format 2 reader, not zstd, is what
	// is fuzzed, and a zstd encoder per input (megabytes of tables, cleared) made this
	// target some 30 times slower (FuzzDocuments covers the zstd envelope).
	none, err := compress.New("none", 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		r := New(mem.New(), Options{})
		r.docCodec = none
		if err := r.putDoc(ctx, ManifestKey(name), data); err != nil {
			t.Fatal(err)
		}
		check := func(m *Manifest) {
			n := 0
			if err := m.EachFile(func(f *File) error {
				n++
				if !ValidPath(f.Path) || f.Size < 0 || f.Part < 1 || f.Part > len(m.Parts) {
					t.Fatalf("an entry passed unchecked: %+v", f)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != m.FileCount {
				t.Fatalf("%d files read, %d counted", n, m.FileCount)
			}
		}
		// Whenever the document is streamed (its first line says so), whatever the
		// header's fields then claim.
		first, _, _ := bytes.Cut(data, []byte("\n"))
		isStreamed := streamed(first)
		if m, err := r.readManifestFrom(ctx, name, int64(len(data)), nil); err == nil && isStreamed {
			check(m)
		}
		l, err := NewFileList("") // no name, no directory to make and remove per input
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close() }()
		if m, err := r.readManifestFrom(ctx, name, int64(len(data)), l); err == nil && isStreamed {
			check(m)
		}
	})
}
