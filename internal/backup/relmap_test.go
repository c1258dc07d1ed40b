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
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// namingSource is a fakeSource that names relation files, or fails to.
type namingSource struct {
	*fakeSource
	dbs []pg.DatabaseRelations
	err error
}

func (s *namingSource) Databases(context.Context) ([]pg.Database, error) {
	if s.err != nil {
		return nil, s.err
	}
	out := []pg.Database{{OID: 4, Name: "locked_db"}}
	for _, d := range s.dbs {
		out = append(out, pg.Database{OID: d.OID, Name: d.Name})
	}
	return out, nil
}

func (s *namingSource) EachRelation(_ context.Context, db string, limit int, fn func(pg.Relation) error) error {
	if db == "locked_db" {
		return errors.New("no pg_hba.conf entry")
	}
	for _, d := range s.dbs {
		if d.Name != db {
			continue
		}
		if len(d.Relations) > limit {
			return errors.New("too many relations")
		}
		for _, r := range d.Relations {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
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

// blockingNames reads relation names until its context ends, as a database that answers
// slowly.
type blockingNames struct{ *fakeSource }

func (blockingNames) Databases(context.Context) ([]pg.Database, error) {
	return []pg.Database{{OID: 5, Name: "postgres"}}, nil
}

func (blockingNames) EachRelation(ctx context.Context, _ string, _ int, _ func(pg.Relation) error) error {
	<-ctx.Done()
	return ctx.Err()
}

// The relation names are read while the backup stops; a backup that then fails leaves
// nothing behind, the names' object included: it is never written after the failed
// backup's objects are removed.
func TestAFailedBackupLeavesNoRelationNamesBehind(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New() // the stop segment never arrives
	src := blockingNames{newFakeSource(fx.dataDir)}
	src.tablespaces = []pg.Tablespace{{OID: 16400, Name: "ts", Location: fx.spcDir}}
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Opt.ArchiveTimeout = time.Millisecond
	if _, err := p.Run(context.Background()); err == nil {
		t.Fatal("a backup whose stop segment never arrives succeeded")
	}
	err := st.List(context.Background(), "backups/", func(o storage.ObjectInfo) error {
		if !strings.Contains(o.Key, "lock") {
			t.Errorf("left behind: %s", o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
