package drill

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage/fs"
)

// A program that drills through the library without a logger gets the warnings in
// the report, not a panic.
func TestDrillAsALibraryWithoutALoggerReportsTheOwnerWarning(t *testing.T) {
	const pgBin = "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		t.Skip("no PostgreSQL 15 server binaries")
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "repo", "testdata", "format1"))); err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	rp := repo.New(st, repo.Options{})
	defer rp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := Run(ctx, rp, Options{Target: &restore.Target{Kind: restore.ToName, Name: "before_upgrade"}, PGBin: pgBin,
		OwnerWarning: func(*restore.Owner) string {
			cancel() // the drill stops at the restore that follows
			return "the server's user cannot read the configuration"
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want it cancelled at the restore", err)
	}
	if rep == nil || !slices.Contains(rep.Warnings, "the server's user cannot read the configuration") {
		t.Errorf("the owner warning is not in the report: %+v", rep)
	}
}
