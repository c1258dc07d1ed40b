package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A manifest whose envelope has a version this pgb does not know (a newer pgb wrote it)
// is listed as written by a newer pgb, not as damage.
func TestManifestInANewerEnvelopeIsListedAsNewerFormat(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if err := New(st, Options{}).putJSON(ctx, ManifestKey("a"), testManifest("a", 0x2000000)); err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(ctx, ManifestKey("a"), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	obj[4] = 99 // the envelope's format version
	if err := st.Put(ctx, ManifestKey("n"), bytes.NewReader(obj), storage.PutOptions{IfAbsent: true, Size: int64(len(obj))}); err != nil {
		t.Fatal(err)
	}
	list, damaged, err := New(st, Options{}).ListBackups(ctx)
	if err != nil || len(list) != 1 || len(damaged) != 1 {
		t.Fatalf("ListBackups = %d backups, %v, %v; want a, and n skipped", len(list), damaged, err)
	}
	e := damaged[0].Err
	if !errors.Is(e, ErrNewerFormat) || errors.Is(e, ErrDamagedBackup) || !strings.Contains(e.Error(), "backup n") ||
		!strings.Contains(e.Error(), "upgrade pgb") || !errors.Is(e, envelope.ErrCorrupt) {
		t.Errorf("backup n: %v; want ErrNewerFormat (not damaged), naming it and saying upgrade pgb", e)
	}
}
