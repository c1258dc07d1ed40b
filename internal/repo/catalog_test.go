package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestWALKeys(t *testing.T) {
	for name, want := range map[string]string{
		"000000010000000000000003":                 "wal/0000000100000000/000000010000000000000003",
		"000000020000000A000000FF.partial":         "wal/000000020000000A/000000020000000A000000FF.partial",
		"000000010000000000000002.00000028.backup": "wal/0000000100000000/000000010000000000000002.00000028.backup",
		"00000002.history":                         "wal/00000002.history",
	} {
		f, err := wal.Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := WALKey(f); got != want {
			t.Errorf("WALKey(%s) = %s, want %s", name, got, want)
		}
		if err := storage.ValidKey(WALKey(f)); err != nil {
			t.Error(err)
		}
	}
}

func TestFirstClusterWinsARace(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sys := SystemID(100)
			if i%2 == 1 {
				sys = 200
			}
			_, errs[i] = New(st, Options{}).EnsureIdentity(ctx, Identity{SystemID: sys, PGVersion: 15})
		}()
	}
	wg.Wait()
	id, err := New(st, Options{}).Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		mine := SystemID(100)
		if i%2 == 1 {
			mine = 200
		}
		if (mine == id.SystemID) != (err == nil) {
			t.Errorf("writer %d (cluster %d) got %v; repository holds %d", i, mine, err, id.SystemID)
		}
		if err != nil && !errors.Is(err, ErrForeignCluster) {
			t.Errorf("writer %d: %v", i, err)
		}
	}
}

func TestIdentityChecks(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if _, err := New(st, Options{}).Identity(ctx); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("empty repository: %v", err)
	}
	if _, err := New(st, Options{}).EnsureIdentity(ctx, Identity{SystemID: 7440292914373421110, PGVersion: 15}); err != nil {
		t.Fatal(err)
	}
	id, err := New(st, Options{}).Identity(ctx)
	if err != nil || id.SystemID != 7440292914373421110 || id.Format != FormatVersion {
		t.Fatalf("identity = %+v, %v", id, err)
	}
	if err := id.Matches(7440292914373421110, 16); !errors.Is(err, ErrForeignCluster) || !strings.Contains(err.Error(), "major upgrade") {
		t.Errorf("other major version: %v", err)
	}
	// pg_upgrade makes a new cluster: another system identifier and another major
	// version. The refusal says what to do after a major upgrade, not only that the
	// repository is another cluster's.
	if err := id.Matches(7440292914373429999, 16); !errors.Is(err, ErrForeignCluster) || !strings.Contains(err.Error(), "major upgrade") ||
		!strings.Contains(err.Error(), "new repository") {
		t.Errorf("a cluster upgraded with pg_upgrade: %v", err)
	}
	if err := id.Matches(7440292914373429999, 15); !errors.Is(err, ErrForeignCluster) || strings.Contains(err.Error(), "major upgrade") {
		t.Errorf("another cluster of the same version: %v", err)
	}
	if err := st.Put(ctx, IdentityKey, bytes.NewReader([]byte("{not json")), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Options{}).Identity(ctx); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged identity: %v", err)
	}
	if err := st.Put(ctx, IdentityKey, bytes.NewReader([]byte(`{"format": 99, "system_identifier": "1"}`)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Options{}).Identity(ctx); err == nil || !strings.Contains(err.Error(), "upgrade pgb") {
		t.Errorf("newer format: %v", err)
	}
}
