package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// The restore command pgb events prints for a DROP DATABASE must bring the
// database back with its rows.
func TestRestoreBeforeADropDatabaseThatPgbEventsFound(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	bin := pgtest.BuildPGB(t)
	src := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: bin + " wal-push --repo " + repo + " %p"})
	src.Start(t)
	src.Exec(t, "CREATE DATABASE scratch")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, src.DSN()+" dbname=scratch")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE keep AS SELECT g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	oid := src.QueryString(t, "SELECT oid::text FROM pg_database WHERE datname = 'scratch'")
	src.Exec(t, "DROP DATABASE scratch")
	last := src.SwitchWAL(t)
	src.WaitArchived(t, last, 60*time.Second)
	doc, out := readEvents(t, repo)
	var restoreCmd string
	for _, e := range doc.Events {
		if e.Kind == "drop_database" {
			restoreCmd = e.Restore
		}
	}
	if restoreCmd == "" {
		t.Fatalf("no drop_database event: %s", out)
	}
	c := restoreWithPrintedCommand(t, repo, restoreCmd)
	if _, err := os.Stat(filepath.Join(c.DataDir(), "base", oid)); err != nil {
		t.Errorf("the dropped database's directory base/%s is not in the restored copy: %v", oid, err)
	}
	t.Logf("pg_database: %v", c.QueryRows(t, "SELECT datname, datconnlimit FROM pg_database"))
	rc, err := pgx.Connect(ctx, c.DSN()+" dbname=scratch")
	if err != nil {
		t.Fatalf("the database dropped is not back after the printed restore command: %v", err)
	}
	defer rc.Close(ctx)
	var n int
	if err := rc.QueryRow(ctx, "SELECT count(*) FROM keep").Scan(&n); err != nil || n != 100 {
		t.Fatalf("keep: %d rows, %v", n, err)
	}
}
