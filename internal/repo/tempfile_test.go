package repo

import (
	"io"
	"os"
	"testing"
)

// A scratch file has no name in its directory, from the start: a killed pgb leaves
// nothing there. It reads back what was written.
func TestTempFileHasNoName(t *testing.T) {
	dir := t.TempDir()
	f, err := TempFile(dir, ".pgb-test-*")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("directory holds %v (%v), want nothing", ents, err)
	}
	if _, err := f.WriteString("scratch"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != "scratch" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if _, err := TempFile(dir+"/missing", ".pgb-test-*"); err == nil {
		t.Error("a scratch file in a missing directory was made")
	}
}
