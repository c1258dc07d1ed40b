package repo

import (
	"context"
	"testing"

	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// BenchmarkListBackups lists 10 backups of 100,000 files each: from their summaries
// (what pgb does), and from their manifests (what it did before summaries), for the
// ratio.
func BenchmarkListBackups(b *testing.B) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	for i := range 10 {
		if err := r.PutBackup(ctx, bigManifest(string(rune('a'+i)), wal.LSN(i+1)<<24, 100_000)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("summaries", func(b *testing.B) {
		for b.Loop() {
			if list, _, err := r.ListBackups(ctx); err != nil || len(list) != 10 {
				b.Fatal(len(list), err)
			}
		}
	})
	b.Run("manifests", func(b *testing.B) {
		for b.Loop() {
			for i := range 10 {
				if _, err := r.ReadManifest(ctx, string(rune('a'+i))); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
