package cmd

import (
	"context"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/fs"
)

// testSystemID is the system identifier of the repositories fsRepo makes.
const testSystemID = 7440292914373421110

// fsRepo is a new filesystem repository (its directory and pgb's repository layer on
// it), holding a pgb.json of cluster testSystemID when identify is true.
func fsRepo(t *testing.T, identify bool) (string, *repo.Repo) {
	t.Helper()
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	rp := repo.New(st, repo.Options{})
	t.Cleanup(func() { _ = rp.Close() })
	if identify {
		id := repo.Identity{Format: 1, SystemID: testSystemID, PGVersion: 15, Created: time.Now()}
		if _, err := rp.EnsureIdentity(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	return dir, rp
}
