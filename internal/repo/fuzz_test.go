package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

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
		put(IdentityKey, data)
		put(backupLockKey, data)
		put(ManifestKey("raw"), data)
		put(restorePointKey("raw"), data)
		at := time.Date(2026, 12, 1, 3, 0, 1, 0, time.UTC)
		put(drillKey(at, "00000000000000ff", true), data)
		for _, key := range []string{ManifestKey(name), SummaryKey(name), restorePointKey("sealed"), PermanentKey(name), RelMapKey(name),
			drillKey(at, "0000000000000001", true), drillKey(at, "0000000000000002", false)} {
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
		if d, err := r.RecentDrills(ctx, 5); err == nil {
			for _, x := range append(d.Successes, d.Last) {
				if x != nil && x.Validate() != nil {
					t.Fatalf("a record that fails validation was returned: %+v", x)
				}
			}
		}
	})
}
