package restorepoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

const sysid = 7000000000000000001

// fakeDB is a cluster whose archiver copies each switched segment into st (unless
// archiving is off), and which records the restore points it creates.
type fakeDB struct {
	st        storage.Store
	noArchive bool
	failing   bool // archive_command fails for the switched segment
	created   []string
	seg       string // the segment SwitchWAL completes
	switchErr error  // what SwitchWAL fails with
}

func (d *fakeDB) SystemID(context.Context) (uint64, error) { return sysid, nil }
func (d *fakeDB) Major() int                               { return 15 }
func (d *fakeDB) CreateRestorePoint(_ context.Context, name string) (wal.LSN, uint32, error) {
	d.created = append(d.created, name)
	return 0x3000060, 1, nil
}
func (d *fakeDB) Archiver(context.Context) (pg.ArchiverStats, error) { return pg.ArchiverStats{}, nil }
func (d *fakeDB) SwitchWAL(ctx context.Context) (string, error) {
	if d.switchErr != nil {
		return "", d.switchErr
	}
	if !d.noArchive && !d.failing {
		f, err := wal.Parse(d.seg)
		if err != nil {
			return "", err
		}
		if err := d.st.Put(ctx, repo.WALKey(f), strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
			return "", err
		}
	}
	return d.seg, nil
}
func (d *fakeDB) ArchiveFailing(context.Context, pg.ArchiverStats, string) error {
	if d.failing {
		return fmt.Errorf("%w: it failed 1 time(s)", pg.ErrArchiveFailing)
	}
	return nil
}

// repo is a repository bound to the fake cluster.
func ownRepo(t *testing.T) *mem.Store {
	t.Helper()
	st := mem.New()
	if _, err := repo.New(st, repo.Options{}).EnsureIdentity(context.Background(), repo.Identity{SystemID: sysid, PGVersion: 15}); err != nil {
		t.Fatal(err)
	}
	return st
}

func newDB(st storage.Store) *fakeDB { return &fakeDB{st: st, seg: "000000010000000000000003"} }

var at = time.Date(2026, 12, 1, 23, 0, 0, 0, time.FixedZone("", 3600))

func TestCreateRecordsThePointAndWaitsForItsWAL(t *testing.T) {
	ctx := context.Background()
	st := ownRepo(t)
	db := newDB(st)
	c, err := Create(ctx, db, repo.New(st, repo.Options{}), "before-migration", Options{ArchiveTimeout: time.Minute, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	want := repo.RestorePoint{Name: "before-migration", LSN: 0x3000060, Timeline: 1, Time: at.UTC()}
	if c.Point != want || c.Segment != db.seg || c.Archived != nil {
		t.Errorf("Create = %+v, want point %+v in segment %s, archived", c, want, db.seg)
	}
	got, err := repo.New(st, repo.Options{}).ReadRestorePoint(ctx, "before-migration")
	if err != nil || !got.Time.Equal(want.Time) || got.LSN != want.LSN || got.Timeline != want.Timeline {
		t.Errorf("recorded %+v, %v; want %+v", got, err, want)
	}
}

// The point exists once recorded: WAL that has not arrived is reported with it, not
// as a failure.
func TestCreateReportsWALThatDidNotArrive(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   func(*fakeDB)
		is   error
	}{
		{"archiver silent", func(d *fakeDB) { d.noArchive = true }, repo.ErrWALTimeout},
		{"archive_command failing", func(d *fakeDB) { d.failing = true }, pg.ErrArchiveFailing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := ownRepo(t)
			db := newDB(st)
			tc.db(db)
			c, err := Create(context.Background(), db, repo.New(st, repo.Options{}), "p1", Options{ArchiveTimeout: 0})
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(c.Archived, tc.is) || c.Segment != db.seg {
				t.Errorf("Archived = %v in segment %q, want %v in %s", c.Archived, c.Segment, tc.is, db.seg)
			}
			if _, err := repo.New(st, repo.Options{}).ReadRestorePoint(context.Background(), "p1"); err != nil {
				t.Errorf("the point was not recorded: %v", err)
			}
		})
	}
}

// Nothing is created in PostgreSQL when the point could not be recorded: a bad name,
// a repository of another cluster, a name taken (even by a damaged record), or a
// repository that cannot say whether the name is taken.
func TestCreateRefusesBeforeTouchingPostgreSQL(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) storage.Store
		point string
		is    error
		msg   string
	}{
		{"bad name", func(t *testing.T) storage.Store { return ownRepo(t) }, "a b", nil, "use letters, digits"},
		{"uninitialised repository", func(*testing.T) storage.Store { return mem.New() }, "p", repo.ErrNoIdentity, ""},
		{"another cluster's repository", func(t *testing.T) storage.Store {
			st := mem.New()
			if _, err := repo.New(st, repo.Options{}).EnsureIdentity(ctx, repo.Identity{SystemID: 42, PGVersion: 15}); err != nil {
				t.Fatal(err)
			}
			return st
		}, "p", repo.ErrForeignCluster, ""},
		{"name taken", func(t *testing.T) storage.Store {
			st := ownRepo(t)
			if err := repo.New(st, repo.Options{}).PutRestorePoint(ctx, repo.RestorePoint{Name: "p", LSN: 1, Timeline: 1}); err != nil {
				t.Fatal(err)
			}
			return st
		}, "p", repo.ErrRestorePointExists, "pick another name"},
		{"name taken by a damaged record", func(t *testing.T) storage.Store {
			st := ownRepo(t)
			if err := st.Put(ctx, "restore-points/p.json", strings.NewReader("garbage"), storage.PutOptions{Size: 7}); err != nil {
				t.Fatal(err)
			}
			return st
		}, "p", repo.ErrCorrupt, "pick another name"},
		{"repository failing", func(t *testing.T) storage.Store {
			return faulty.New(ownRepo(t), faulty.Rule{Op: faulty.Get, Key: "restore-points/p.json", Fault: faulty.Fail})
		}, "p", faulty.ErrInjected, "retry once the repository answers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.setup(t)
			db := newDB(st)
			_, err := Create(ctx, db, repo.New(st, repo.Options{}), tc.point, Options{ArchiveTimeout: time.Minute})
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Create = %v, want %v (%q)", err, tc.is, tc.msg)
			}
			if len(db.created) > 0 {
				t.Errorf("a restore point was created in PostgreSQL: %q", db.created)
			}
		})
	}
}

// A point made but whose WAL could not be switched exists: the failure says so, and
// what recovering to it needs, instead of reading as if nothing was made.
func TestCreateSaysThePointExistsWhenTheWALSwitchFails(t *testing.T) {
	ctx := context.Background()
	st := ownRepo(t)
	db := newDB(st)
	denied := errors.New("switch WAL: permission denied for function pg_switch_wal")
	db.switchErr = denied
	c, err := Create(ctx, db, repo.New(st, repo.Options{}), "p1", Options{ArchiveTimeout: time.Minute})
	if !errors.Is(err, denied) {
		t.Fatalf("Create = %v, want the switch's error", err)
	}
	for _, want := range []string{`restore point "p1" was created at LSN 0/3000060 on timeline 1 and recorded`, "pg_switch_wal()"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if c.Point.Name != "p1" {
		t.Errorf("Create returned no point: %+v", c)
	}
	if _, err := repo.New(st, repo.Options{}).ReadRestorePoint(ctx, "p1"); err != nil {
		t.Errorf("the point was not recorded: %v", err)
	}
}

// With several repositories: one point in PostgreSQL, recorded in each, its WAL waited
// for in each; a name taken in any one is refused before PostgreSQL is asked; one that
// cannot record it gets the point all the same in the others, the WAL switched, and an
// error naming what is missing where.
func TestCreateRecordsOnePointInEveryRepository(t *testing.T) {
	ctx := context.Background()
	opt := func(also ...*repo.Repo) Options {
		return Options{ArchiveTimeout: time.Minute, Now: func() time.Time { return at }, Also: also}
	}
	first, second := ownRepo(t), ownRepo(t)
	putSeg := func(st storage.Store) {
		f, _ := wal.Parse("000000010000000000000003")
		if err := st.Put(ctx, repo.WALKey(f), strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
			t.Fatal(err)
		}
	}
	putSeg(second) // what wal-push stores in every repository
	db := newDB(first)
	c, err := Create(ctx, db, repo.New(first, repo.Options{}), "p", opt(repo.New(second, repo.Options{})))
	if err != nil || c.Archived != nil || len(db.created) != 1 {
		t.Fatalf("Create = %+v, %v; created %v", c, err, db.created)
	}
	for _, st := range []storage.Store{first, second} {
		if _, err := repo.New(st, repo.Options{}).ReadRestorePoint(ctx, "p"); err != nil {
			t.Fatalf("not recorded in each repository: %v", err)
		}
	}

	// Taken in the second: refused before PostgreSQL.
	db = newDB(ownRepo(t))
	if _, err := Create(ctx, db, repo.New(db.st, repo.Options{}), "p", opt(repo.New(second, repo.Options{}))); !errors.Is(err, repo.ErrRestorePointExists) || len(db.created) != 0 {
		t.Fatalf("a name taken in the second repository: %v, created %v", err, db.created)
	}

	// The second cannot record it: recorded in the first, WAL switched there, an error.
	broken := faulty.New(ownRepo(t), faulty.Rule{Op: faulty.Put, Key: "restore-points/q.json", Fault: faulty.Fail})
	db = newDB(ownRepo(t))
	c, err = Create(ctx, db, repo.New(db.st, repo.Options{}), "q", opt(repo.New(broken, repo.Options{})))
	if err == nil || !strings.Contains(err.Error(), "not in every repository") || c.Point.Name != "q" || c.Segment == "" {
		t.Fatalf("second repository failing: %+v, %v", c, err)
	}
	if _, err := repo.New(db.st, repo.Options{}).ReadRestorePoint(ctx, "q"); err != nil {
		t.Fatalf("the first repository lost the point: %v", err)
	}

	// The first cannot record it: the second does, and the error says where it is not.
	brokenFirst := faulty.New(ownRepo(t), faulty.Rule{Op: faulty.Put, Key: "restore-points/r.json", Fault: faulty.Fail})
	fine := ownRepo(t)
	putSeg(fine)
	db = newDB(brokenFirst)
	c, err = Create(ctx, db, repo.New(brokenFirst, repo.Options{}), "r", opt(repo.New(fine, repo.Options{})))
	if err == nil || !strings.Contains(err.Error(), "not in every repository") || c.Point.Name != "r" {
		t.Fatalf("first repository failing: %+v, %v", c, err)
	}
	if _, err := repo.New(fine, repo.Options{}).ReadRestorePoint(ctx, "r"); err != nil {
		t.Fatalf("the second repository did not record the point: %v", err)
	}
}
