package readonly

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// Through a read-only store reads work and every write is refused, the object left
// as it was.
func TestReadOnlyStoreReadsAndRefusesWrites(t *testing.T) {
	ctx := context.Background()
	m := mem.New()
	if err := m.Put(ctx, "a/b", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	ro := New(m)
	r, err := ro.Get(ctx, "a/b", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	_ = r.Close()
	if string(b) != "x" {
		t.Fatalf("read %q", b)
	}
	for name, err := range map[string]error{
		"put":        ro.Put(ctx, "a/c", strings.NewReader("y"), storage.PutOptions{Size: 1}),
		"delete":     ro.Delete(ctx, "a/b"),
		"delete all": storage.DeleteAll(ctx, ro, []string{"a/b"}),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s: %v, want ErrReadOnly", name, err)
		}
	}
	if _, err := m.Stat(ctx, "a/b"); err != nil {
		t.Errorf("a/b: %v", err)
	}
	if _, err := m.Stat(ctx, "a/c"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("a/c written: %v", err)
	}
}
