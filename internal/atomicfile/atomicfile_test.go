package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCommitNewNeverReplacesAFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dump.sql")
	f, err := Create(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("ours")
	if err := f.CommitNew(); !errors.Is(err, os.ErrExist) {
		t.Fatalf("CommitNew over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "theirs" {
		t.Fatalf("the existing file became %q", b)
	}
	g, _ := Create(filepath.Join(dir, "new.sql"), 0o600)
	_, _ = g.WriteString("ours")
	if err := g.CommitNew(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("temp files left: %v", ents)
	}
}
