package retention

import (
	"context"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// markOnDelete runs mark (a concurrent pgb backup-mark) just before the first
// Delete of key reaches the store.
type markOnDelete struct {
	storage.Store
	key  string
	mark func()
}

func (m *markOnDelete) Delete(ctx context.Context, key string) error {
	if key == m.key && m.mark != nil {
		mark := m.mark
		m.mark = nil
		mark()
	}
	return m.Store.Delete(ctx, key)
}

// pgb backup-mark b1 --permanent while pgb delete is removing b1: either the mark
// fails or b1 survives; never "marked" and deleted.
func TestBackupMarkWhileDeleteRemovesTheBackupFailsOrKeepsIt(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	r0 := repo.New(inner, repo.Options{})
	fill(t, r0)
	var markErr error
	marked := false
	st := &markOnDelete{Store: inner, key: repo.ManifestKey("b1"), mark: func() {
		markErr = Mark(ctx, r0, "b1", true, t0, repo.LockOptions{})
		marked = true
	}}
	r := repo.New(st, repo.Options{})
	_, err := Delete(ctx, r, Options{Policy: Policy{RetainFull: 2}, Now: t0.Add(10 * 24 * time.Hour), Confirm: true})
	t.Logf("delete: %v", err)
	if !marked {
		t.Fatal("the manifest of b1 was never deleted")
	}
	if markErr == nil {
		for _, n := range backupNames(t, r0) {
			if n == "b1" {
				return
			}
		}
		t.Fatalf("backup-mark b1 --permanent succeeded, yet b1 was deleted (backups left %v)", backupNames(t, r0))
	}
}
