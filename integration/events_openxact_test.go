package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// A mass DELETE whose transaction got its xid before the only backup ended
// and deleted and committed after it: the restore command pgb events prints must be
// accepted by pgb restore with that backup and bring every row back.
func TestRestoreBeforeAMassDeleteThatWasOpenDuringTheBackup(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	bin := pgtest.BuildPGB(t)
	src := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: bin + " wal-push --repo " + repo + " %p"})
	src.Start(t)
	src.Exec(t, "CREATE TABLE pruned AS SELECT g AS id, 'x' AS pad FROM generate_series(1, 3000) g")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, src.DSN()+" dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT txid_current()"); err != nil { // the xid, before the backup
		t.Fatal(err)
	}
	src.Exec(t, "CREATE TABLE later (i int)") // a newer transaction commits before the backup ends
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	if _, err := tx.Exec(ctx, "DELETE FROM pruned WHERE id <= 2000"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	last := src.SwitchWAL(t)
	src.WaitArchived(t, last, 60*time.Second)

	doc, out := readEvents(t, repo)
	var restoreCmd string
	for _, e := range doc.Events {
		if e.Kind == "rows" && e.Deleted == 2000 {
			restoreCmd = e.Restore
		}
	}
	if restoreCmd == "" {
		t.Fatalf("no rows event for the DELETE of 2000 rows:\n%s", out)
	}
	c := restoreWithPrintedCommand(t, repo, restoreCmd)
	if got := c.QueryInt(t, "SELECT count(*) FROM pruned"); got != 3000 {
		t.Fatalf("restored pruned has %d rows, want the 3000 from before the DELETE", got)
	}
}
