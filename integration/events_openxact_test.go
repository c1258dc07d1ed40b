package integration

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// A mass DELETE whose transaction got its xid before the only backup ended
// and deleted and committed after it: the restore command pgb events prints must be
// accepted by pgb restore with that backup and bring every row back.
func TestRestoreBeforeAMassDeleteThatWasOpenDuringTheBackup(t *testing.T) {
	pgtest.Require(t)
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

	var doc eventsDoc
	out := mustPGB(t, "", nil, "events", "--repo", repo, "--json")
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("events --json: %v\n%s", err, out.stdout)
	}
	var cmd []string
	for _, e := range doc.Events {
		if e.Kind == "rows" && e.Deleted == 2000 {
			cmd = strings.Fields(e.Restore)
		}
	}
	if cmd == nil {
		t.Fatalf("no rows event for the DELETE of 2000 rows:\n%s", out.stdout)
	}
	t.Logf("restore command: %v", cmd)
	statusReaches(t, repo, strings.Join(cmd, " "))
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	args := []string{"restore", "--repo", repo}
	for _, a := range cmd[2:] {
		if a == "DIR" {
			a = dir
		}
		args = append(args, a)
	}
	mustPGB(t, "", nil, append(args, "--target-action", "promote")...)
	c := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c.Start(t)
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM pruned"); got != 3000 {
		t.Fatalf("restored pruned has %d rows, want the 3000 from before the DELETE", got)
	}
}
