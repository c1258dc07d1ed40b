package backup

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// namingSource is a fakeSource that names relation files, or fails to.
type namingSource struct {
	*fakeSource
	dbs []pg.DatabaseRelations
	err error
}

func (s *namingSource) RelationNames(context.Context) ([]pg.DatabaseRelations, []string, error) {
	return s.dbs, []string{"locked_db: no pg_hba.conf entry"}, s.err
}

func TestPushRecordsRelationNamesBeforeTheManifest(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := &recordingStore{Store: mem.New()}
	putWAL(t, st, "000000010000000000000002")
	src := &namingSource{fakeSource: newFakeSource(fx.dataDir), dbs: []pg.DatabaseRelations{{OID: 5, Name: "postgres",
		Relations: []pg.Relation{{OID: 16384, Filenode: 16390, Schema: "public", Name: "orders", Kind: "r"}}}}}
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	var log bytes.Buffer
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Log = slog.New(slog.NewTextHandler(&log, nil))
	m, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Repo.ReadRelMap(context.Background(), m.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Databases) != 1 || got.Databases[0].Name != "postgres" || len(got.Databases[0].Relations) != 1 ||
		got.Databases[0].Relations[0] != (repo.Relation{OID: 16384, Filenode: 16390, Schema: "public", Name: "orders", Kind: "r"}) {
		t.Fatalf("relation map %+v", got)
	}
	keys := st.keys()
	relAt, manifestAt := -1, -1
	for i, k := range keys {
		switch k {
		case repo.RelMapKey(m.Name):
			relAt = i
		case repo.ManifestKey(m.Name):
			manifestAt = i
		}
	}
	if relAt < 0 || relAt > manifestAt || manifestAt != len(keys)-1 {
		t.Fatalf("the relation map must come before the manifest, which comes last: %v", keys)
	}
	if !strings.Contains(log.String(), "locked_db") {
		t.Fatalf("a database left out must be named in a warning: %s", log.String())
	}
}

func TestPushWithoutRelationNamesStillSucceeds(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := &namingSource{fakeSource: newFakeSource(fx.dataDir), err: errors.New("permission denied for table pg_class")}
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	var log bytes.Buffer
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Log = slog.New(slog.NewTextHandler(&log, nil))
	m, err := p.Run(context.Background())
	if err != nil {
		t.Fatalf("a failure to read names must not fail the backup: %v", err)
	}
	if _, err := p.Repo.ReadRelMap(context.Background(), m.Name); !errors.Is(err, repo.ErrNoRelMap) {
		t.Fatalf("got %v, want no relation map", err)
	}
	if !strings.Contains(log.String(), "permission denied") {
		t.Fatalf("the failure must be warned about: %s", log.String())
	}
}
