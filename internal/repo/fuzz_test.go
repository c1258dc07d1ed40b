package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

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
		put(IdentityKey, data)
		put(backupLockKey, data)
		put(ManifestKey("raw"), data)
		put(restorePointKey("raw"), data)
		for _, key := range []string{ManifestKey(name), SummaryKey(name), restorePointKey("sealed"), PermanentKey(name), RelMapKey(name)} {
			if err := r.putDoc(ctx, key, data); err != nil {
				t.Fatal(err)
			}
		}
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
	})
}
