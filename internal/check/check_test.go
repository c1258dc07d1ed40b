package check

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

const sysid = 7000000000000000001

// fakeDB is a cluster: its archiver copies each switched segment into st when
// archive_command is pgb's (or failing is set: then pg_stat_archiver counts failures).
type fakeDB struct {
	st       storage.Store
	settings map[string]string
	failing  bool
	switched int
	closed   bool
	senders  []pg.WALSender // pg_stat_replication; a streaming "pgb" stores each switched segment
}

func (d *fakeDB) WALSenders(context.Context) ([]pg.WALSender, error) { return d.senders, nil }

func (d *fakeDB) SystemID(context.Context) (uint64, error) { return sysid, nil }
func (d *fakeDB) Major() int                               { return 15 }
func (d *fakeDB) ServerVersionNum() int                    { return 150018 }
func (d *fakeDB) Close(context.Context) error              { d.closed = true; return nil }
func (d *fakeDB) Setting(_ context.Context, name string) (string, error) {
	v, ok := d.settings[name]
	if !ok {
		return "", fmt.Errorf("read setting %s: unknown", name)
	}
	return v, nil
}

const segment = "000000010000000000000003"

func (d *fakeDB) Archiver(context.Context) (pg.ArchiverStats, error) {
	if d.failing && d.switched > 0 {
		return pg.ArchiverStats{FailedCount: 3, LastFailed: segment}, nil
	}
	return pg.ArchiverStats{}, nil
}

func (d *fakeDB) SwitchWAL(ctx context.Context) (string, error) {
	d.switched++
	archives := CallsWALPush(d.settings["archive_command"]) && d.settings["archive_mode"] != "off"
	if !d.failing && (archives || len(d.senders) > 0) {
		f, _ := wal.Parse(segment)
		if err := d.st.Put(ctx, repo.WALKey(f), strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
			return "", err
		}
	}
	return segment, nil
}

func (d *fakeDB) ArchiveFailing(ctx context.Context, since pg.ArchiverStats, seg string) error {
	now, _ := d.Archiver(ctx)
	if now.FailedCount > since.FailedCount {
		return fmt.Errorf("%w: last for %s", pg.ErrArchiveFailing, now.LastFailed)
	}
	return nil
}

// prober is a store that can tell whether it enforces conditional writes.
type prober struct {
	storage.Store
	enforced bool
	err      error
}

func (p prober) ProbeConditionalWrites(context.Context) (bool, error) { return p.enforced, p.err }

// checksummer is an S3 store that can tell whether it accepts the SDK's default
// request checksums.
type checksummer struct {
	storage.Store
	supported bool
}

func (c checksummer) ProbeChecksums(context.Context) (bool, error) { return c.supported, nil }

// wrapped is a wrapper (like retry) around a backend.
type wrapped struct{ storage.Store }

func (w wrapped) Unwrap() storage.Store { return w.Store }

func ownRepo(t *testing.T) *mem.Store {
	t.Helper()
	st := mem.New()
	if _, err := repo.New(st, repo.Options{}).EnsureIdentity(context.Background(), repo.Identity{SystemID: sysid, PGVersion: 15}); err != nil {
		t.Fatal(err)
	}
	return st
}

func working() map[string]string {
	return map[string]string{"archive_mode": "on", "archive_command": "/usr/local/bin/pgb wal-push %p"}
}

type setup struct {
	store      func(t *testing.T) storage.Store // the repository; ownRepo if nil
	settings   map[string]string                // working() if nil
	failing    bool
	connectErr error
	openErr    error
	opt        Options
	repoOpts   repo.Options
	senders    []pg.WALSender
}

// want is one expected step: its name, verdict, and words of its message.
type want struct {
	name   string
	status Status
	words  []string
}

func runCheck(t *testing.T, s setup) (Result, *fakeDB) {
	t.Helper()
	var st storage.Store
	if s.store != nil {
		st = s.store(t)
	} else {
		st = ownRepo(t)
	}
	settings := s.settings
	if settings == nil {
		settings = working()
	}
	db := &fakeDB{st: st, settings: settings, failing: s.failing, senders: s.senders}
	clock := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	opt := s.opt
	opt.Now = func() time.Time { clock = clock.Add(1500 * time.Millisecond); return clock }
	res := Run(context.Background(), Deps{
		Connect: func(context.Context) (DB, error) {
			if s.connectErr != nil {
				return nil, s.connectErr
			}
			return db, nil
		},
		OpenRepo: func(context.Context) (*repo.Repo, error) {
			if s.openErr != nil {
				return nil, s.openErr
			}
			return repo.New(st, s.repoOpts), nil
		},
	}, opt)
	return res, db
}

func TestCheckSteps(t *testing.T) {
	okSwitch := want{StepWALSwitch, OK, []string{"WAL switch: segment " + segment + " reached the repository in 1.5s"}}
	for _, tc := range []struct {
		name  string
		setup setup
		want  []want
	}{
		{"a working setup", setup{}, []want{
			{StepPostgreSQL, OK, []string{"connected to PostgreSQL 15 (server_version_num 150018, system identifier 7000000000000000001)"}},
			{StepArchiveMode, OK, []string{"archive_mode = on"}},
			{StepArchiveCommand, OK, []string{"archive_command = '/usr/local/bin/pgb wal-push %p'"}},
			{StepRepository, OK, []string{"repository mem: is reachable, writable, and belongs to this cluster (PostgreSQL 15)"}},
			okSwitch,
		}},
		{"a new repository", setup{store: func(*testing.T) storage.Store { return mem.New() }}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepRepository, OK, []string{"reachable and writable (new: the first archived segment binds it to this cluster)"}},
			okSwitch,
		}},
		{"archive_mode off: no WAL switch", setup{settings: map[string]string{"archive_mode": "off", "archive_command": "pgb wal-push %p"}}, []want{
			{StepPostgreSQL, OK, nil},
			{StepArchiveMode, Fail, []string{"archive_mode = off: set archive_mode = on in postgresql.conf and restart PostgreSQL (or run pgb wal-stream)"}},
			{StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
		}},
		{"archive_mode off with pgb wal-stream connected, synchronous", setup{
			settings: map[string]string{"archive_mode": "off", "archive_command": ""},
			senders:  []pg.WALSender{{AppName: "walreceiver", State: "streaming", SyncState: "async"}, {AppName: "pgb", State: "streaming", SyncState: "sync"}}}, []want{
			{StepPostgreSQL, OK, nil},
			{StepWALStream, OK, []string{"pgb wal-stream is connected (application_name pgb) and synchronous", "RPO 0"}},
			{StepArchiveMode, OK, []string{"archive_mode = off: WAL reaches the repository through pgb wal-stream alone"}},
			{StepRepository, OK, nil},
			okSwitch,
		}},
		{"archive_command empty with pgb wal-stream connected, asynchronous", setup{
			settings: map[string]string{"archive_mode": "on", "archive_command": ""},
			senders:  []pg.WALSender{{AppName: "pgb", State: "streaming", SyncState: "async"}}}, []want{
			{StepPostgreSQL, OK, nil},
			{StepWALStream, OK, []string{"not synchronous (async)", "synchronous_standby_names = 'pgb' makes RPO 0"}},
			{StepArchiveMode, OK, nil},
			{StepArchiveCommand, OK, []string{"archive_command is empty: WAL reaches the repository through pgb wal-stream alone"}},
			{StepRepository, OK, nil},
			okSwitch,
		}},
		{"archive_mode off, a stream of another name only: no WAL path", setup{
			settings: map[string]string{"archive_mode": "off", "archive_command": ""},
			senders:  []pg.WALSender{{AppName: "walreceiver", State: "streaming", SyncState: "async"}}}, []want{
			{StepPostgreSQL, OK, nil},
			{StepArchiveMode, Fail, []string{"(or run pgb wal-stream)"}},
			{StepArchiveCommand, Fail, nil},
			{StepRepository, OK, nil},
		}},
		{"archive_command empty: no WAL switch", setup{settings: map[string]string{"archive_mode": "on", "archive_command": "(disabled)"}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil},
			{StepArchiveCommand, Fail, []string{"archive_command is empty: set archive_command = 'pgb wal-push %p' and reload PostgreSQL"}},
			{StepRepository, OK, nil},
		}},
		{"archive_command not pgb's: the WAL switch shows what it does", setup{
			settings: map[string]string{"archive_mode": "on", "archive_command": "/bin/false"}, failing: true, opt: Options{ArchiveTimeout: time.Minute}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil},
			{StepArchiveCommand, Fail, []string{"archive_command = '/bin/false' does not call pgb wal-push with %p: set archive_command = 'pgb wal-push %p'"}},
			{StepRepository, OK, nil},
			{StepWALSwitch, Fail, []string{"WAL switch: segment " + segment + " did not reach the repository: archive_command is failing"}},
		}},
		{"WAL that does not arrive", setup{settings: map[string]string{"archive_mode": "on", "archive_command": "cp %p /elsewhere/%f"}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, Fail, nil}, {StepRepository, OK, nil},
			{StepWALSwitch, Fail, []string{"did not reach the repository within 0s (--archive-timeout); is the archiver running and archive_command pointing at this repository?"}},
		}},
		{"archive_command failing", setup{failing: true, opt: Options{ArchiveTimeout: time.Minute}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepWALSwitch, Fail, []string{"did not reach the repository: archive_command is failing: last for " + segment}},
		}},
		{"PostgreSQL unreachable", setup{connectErr: errors.New("connect to PostgreSQL: refused")}, []want{
			{StepPostgreSQL, Fail, []string{"connect to PostgreSQL: refused"}},
		}},
		{"repository cannot be opened", setup{openErr: errors.New("open s3://b: no such bucket")}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepRepository, Fail, []string{"open s3://b: no such bucket"}},
		}},
		{"repository not writable", setup{store: func(t *testing.T) storage.Store { return faulty.New(ownRepo(t), faulty.Rule{Op: faulty.Put}) }}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepRepository, Fail, []string{"is not writable", "injected failure"}},
		}},
		{"another cluster's repository", setup{store: func(t *testing.T) storage.Store {
			st := mem.New()
			if _, err := repo.New(st, repo.Options{}).EnsureIdentity(context.Background(), repo.Identity{SystemID: 42, PGVersion: 15}); err != nil {
				t.Fatal(err)
			}
			return st
		}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepRepository, Fail, []string{"repository mem:: ", "belongs to another cluster"}},
		}},
		{"conditional writes enforced, behind a wrapper", setup{
			store: func(t *testing.T) storage.Store { return wrapped{prober{Store: ownRepo(t), enforced: true}} }}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepConditionalWrites, OK, []string{"the store enforces conditional writes (If-None-Match): put-if-absent is atomic"}},
			okSwitch,
		}},
		{"conditional writes ignored, head-check set", setup{
			store: func(t *testing.T) storage.Store { return prober{Store: ownRepo(t)} }, opt: Options{S3Conditional: "head-check"}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepConditionalWrites, Warn, []string{"s3-conditional-writes = head-check makes pgb check before writing"}},
			okSwitch,
		}},
		{"conditional writes ignored: no WAL switch", setup{store: func(t *testing.T) storage.Store { return prober{Store: ownRepo(t)} }}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepConditionalWrites, Fail, []string{"set s3-conditional-writes: head-check (PGB_S3_CONDITIONAL_WRITES)"}},
		}},
		{"request checksums accepted", setup{store: func(t *testing.T) storage.Store {
			return wrapped{checksummer{Store: ownRepo(t), supported: true}}
		}, opt: Options{S3Checksum: "when-supported"}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepChecksums, OK, []string{"the store accepts the SDK's request checksums (s3-checksum: when-supported works; set: when-supported)"}},
			{StepRepository, OK, nil}, okSwitch,
		}},
		{"request checksums rejected, when-required set", setup{store: func(t *testing.T) storage.Store {
			return checksummer{Store: ownRepo(t)}
		}, opt: Options{S3Checksum: "when-required"}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepChecksums, OK, []string{"rejects the SDK's default request checksums; s3-checksum: when-required, as set, works"}},
			{StepRepository, OK, nil}, okSwitch,
		}},
		{"request checksums rejected: nothing else is tried", setup{store: func(t *testing.T) storage.Store {
			return checksummer{Store: ownRepo(t)}
		}, opt: Options{S3Checksum: "when-supported"}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil},
			{StepChecksums, Fail, []string{"set s3-checksum: when-required (PGB_S3_CHECKSUM)"}},
		}},
		{"encryption without recipients: every wal-push would fail", setup{repoOpts: repo.Options{EncryptNew: true}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepEncryption, Fail, []string{"encryption is age but no recipients are given"}},
		}},
		{"encryption to recipients", setup{repoOpts: repo.Options{EncryptNew: true, Keys: checkKeys(t)}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepEncryption, OK, []string{"encryption: age, new objects to recipient set", "(1 recipient(s))"}},
			okSwitch,
		}},
		{"an encrypted repository written unencrypted here", setup{store: func(t *testing.T) storage.Store {
			st := ownRepo(t)
			r := repo.New(st, repo.Options{EncryptNew: true, Keys: checkKeys(t)})
			if err := r.PutRestorePoint(context.Background(), repo.RestorePoint{Name: "x"}); err != nil {
				t.Fatal(err)
			}
			c, err := r.CreatePart(context.Background(), "20261203T000000Z", 1) // records the recipient set
			if err != nil {
				t.Fatal(err)
			}
			c.Abort(nil)
			return st
		}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepEncryption, Warn, []string{"holds objects encrypted for 1 recipient set(s), but encryption is none here"}},
			okSwitch,
		}},
		{"conditional writes cannot be probed", setup{store: func(t *testing.T) storage.Store {
			return prober{Store: ownRepo(t), err: errors.New("403 denied")}
		}}, []want{
			{StepPostgreSQL, OK, nil}, {StepArchiveMode, OK, nil}, {StepArchiveCommand, OK, nil}, {StepRepository, OK, nil},
			{StepConditionalWrites, Fail, []string{"probing conditional writes: 403 denied"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []Step
			tc.setup.opt.OnStep = func(s Step) { seen = append(seen, s) }
			res, db := runCheck(t, tc.setup)
			if len(res.Steps) != len(tc.want) {
				t.Fatalf("steps:\n%s\nwant %d", steps(res), len(tc.want))
			}
			failed := 0
			for i, w := range tc.want {
				s := res.Steps[i]
				if s.Name != w.name || s.Status != w.status {
					t.Errorf("step %d = %s %s, want %s %s:\n%s", i, s.Name, s.Status, w.name, w.status, steps(res))
				}
				for _, word := range w.words {
					if !strings.Contains(s.Message, word) {
						t.Errorf("step %s: %q lacks %q", s.Name, s.Message, word)
					}
				}
				if w.status == Fail {
					failed++
				}
			}
			if res.Failed() != failed {
				t.Errorf("Failed() = %d, want %d", res.Failed(), failed)
			}
			if fmt.Sprint(seen) != fmt.Sprint(res.Steps) {
				t.Errorf("OnStep saw %v, the result holds %v", seen, res.Steps)
			}
			if tc.setup.connectErr == nil && !db.closed {
				t.Error("the PostgreSQL session was not closed")
			}
		})
	}
}

func steps(r Result) string {
	var b strings.Builder
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "  %-18s %-4s %s\n", s.Name, s.Status, s.Message)
	}
	return b.String()
}

// checkKeys are writers' keys: a recipient and a MAC key.
func checkKeys(t *testing.T) *crypt.Keys {
	_, rcp, err := crypt.Generate()
	if err != nil {
		t.Fatal(err)
	}
	rs, names, err := crypt.ParseRecipients(rcp)
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := crypt.ParseMACKey(crypt.NewMACKey())
	return crypt.New(rs, names, nil, mac)
}
