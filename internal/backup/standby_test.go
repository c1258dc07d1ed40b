package backup

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// fakeStandby is a fakeSource in recovery: pg_walfile_name fails there, as on a real
// standby, and its stop point is on recoveryTLI.
type fakeStandby struct {
	*fakeSource
	paused      bool
	replayed    wal.LSN
	recoveryTLI uint32
	onStop      func()
	onReplay    func() wal.LSN // the replay position, as it moves
}

func (s *fakeStandby) BackupStop(ctx context.Context) (pg.BackupStopResult, error) {
	if s.onStop != nil {
		s.onStop()
	}
	return s.fakeSource.BackupStop(ctx)
}

func (s *fakeStandby) InRecovery(context.Context) (bool, error)   { return true, nil }
func (s *fakeStandby) ReplayPaused(context.Context) (bool, error) { return s.paused, nil }
func (s *fakeStandby) ReplayLSN(context.Context) (wal.LSN, error) {
	if s.onReplay != nil {
		return s.onReplay(), nil
	}
	return s.replayed, nil
}
func (s *fakeStandby) RecoveryTimeline(context.Context) (uint32, error) {
	return s.recoveryTLI, nil
}
func (s *fakeStandby) WALFileName(context.Context, wal.LSN) (string, error) {
	return "", errors.New("ERROR: recovery is in progress (SQLSTATE 55000)")
}

// fakePrimary records what a standby's backup asks of its primary, in order.
type fakePrimary struct {
	sys        uint64
	current    wal.LSN
	recovered  bool    // it is a standby itself
	checkpoint wal.LSN // where its CHECKPOINT writes its record
	mu         sync.Mutex
	calls      []string
}

func (p *fakePrimary) InRecovery(context.Context) (bool, error) { return p.recovered, nil }

func (p *fakePrimary) call(c string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, c)
}
func (p *fakePrimary) SystemID(context.Context) (uint64, error)    { return p.sys, nil }
func (p *fakePrimary) CurrentLSN(context.Context) (wal.LSN, error) { return p.current, nil }
func (p *fakePrimary) SwitchWAL(context.Context) (string, error) {
	p.call("switch")
	return "000000010000000000000002", nil
}
func (p *fakePrimary) Checkpoint(context.Context) (wal.LSN, error) {
	p.call("checkpoint")
	return p.checkpoint, nil
}

// A backup on a standby names its segments itself, its stop segment on the standby's
// recovery timeline, has the primary checkpoint before it starts (--fast) and switch
// WAL once it stopped, and says where it was taken.
func TestPushOnAStandbyNamesItsWALAndHasThePrimarySwitch(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	src := &fakeStandby{fakeSource: newFakeSource(fx.dataDir), replayed: 0x2000100, recoveryTLI: 1}
	primary := &fakePrimary{sys: testSystemID, current: 0x2100000}
	src.onStart = func() { primary.call("start") }
	src.onStop = func() { primary.call("stop") }
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Opt.Primary = primary
	m, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !m.FromStandby || m.StopTimeline != 1 || m.StartWAL != "000000010000000000000002" || m.StopWAL != "000000010000000000000002" {
		t.Errorf("from standby %v, stop timeline %d, WAL %s to %s; want true, 1, 000000010000000000000002 to 000000010000000000000002",
			m.FromStandby, m.StopTimeline, m.StartWAL, m.StopWAL)
	}
	if got := strings.Join(primary.calls, " "); got != "checkpoint start stop switch" {
		t.Errorf("the primary was asked: %s; want checkpoint start stop switch", got)
	}
}

// What cannot make a backup on a standby is refused before anything is stored.
func TestPushOnAStandbyRefusesWhatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(s *fakeStandby, p *fakePrimary)
		want string
	}{
		{"replay paused", func(s *fakeStandby, _ *fakePrimary) { s.paused = true }, "replay is paused"},
		{"another cluster's primary", func(_ *fakeStandby, p *fakePrimary) { p.sys++ }, "point it at this standby's primary"},
		{"far behind", func(s *fakeStandby, p *fakePrimary) { p.current = s.replayed + 2<<30 }, "behind its primary"},
		{"a primary in recovery", func(_ *fakeStandby, p *fakePrimary) { p.recovered = true }, "another standby"},
		{"a new timeline during the backup", func(s *fakeStandby, _ *fakePrimary) { s.recoveryTLI = 2 }, "changed timeline during the backup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newBackupFixture(t, testSystemID, nil)
			st := mem.New()
			putWAL(t, st, "000000010000000000000002")
			src := &fakeStandby{fakeSource: newFakeSource(fx.dataDir), replayed: 0x2000100, recoveryTLI: 1}
			primary := &fakePrimary{sys: testSystemID, current: 0x2100000}
			tc.set(src, primary)
			p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			p.Opt.Primary = primary
			if _, err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error saying %q", err, tc.want)
			}
			if src.startLabel != "" && tc.name != "a new timeline during the backup" {
				t.Error("pg_backup_start was called")
			}
			if left := allKeys(t, st, "backups/"); len(left) != 0 {
				t.Errorf("objects written: %v", left)
			}
		})
	}
}

// pg_walfile_name's rule: an LSN at a segment's start ends the segment before it.
func TestWALFileNameIsPgWalfileName(t *testing.T) {
	const seg = 16 << 20
	for lsn, want := range map[wal.LSN]string{
		0x3000028: "000000010000000000000003",
		0x4000000: "000000010000000000000003",
		0x4000001: "000000010000000000000004",
	} {
		if got := walFileName(1, lsn, seg); got != want {
			t.Errorf("walFileName(%s) = %s, want %s", lsn, got, want)
		}
	}
}

// pg_control is copied after every other file, in a part of its own: in a backup of a
// standby its minimum recovery point ends the restore's recovery, so it must be at
// least as new as every page copied; incremental backups store it every time.
func TestPushCopiesPgControlLast(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		fx := newBackupFixture(t, testSystemID, nil)
		st := mem.New()
		putWAL(t, st, "000000010000000000000002")
		putWAL(t, st, "000000010000000000000003")
		src := newFakeSource(fx.dataDir)
		p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if incremental {
			if _, err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			p.Opt.Incremental = IncrementalOn
			p.Now = func() time.Time { return time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC) }
			src.startLSN, src.stopLSN = 0x3000028, 0x3000100
		}
		m, err := p.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if incremental && m.Parent == "" {
			t.Fatal("not an incremental backup")
		}
		last := 0
		for _, pt := range m.Parts {
			last = max(last, pt.N)
		}
		var in []string
		if err := m.EachFileOfPart(last, func(f *repo.File) error { in = append(in, f.Path); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(in) != 1 || in[0] != controlFile {
			t.Errorf("incremental %v: the last part (%d of %d) holds %v, want %s alone", incremental, last, len(m.Parts), in, controlFile)
		}
	}
}

// With --fast, the primary checkpoints and the backup starts once the standby has
// replayed that checkpoint, so that its restartpoint is recent.
func TestPushOnAStandbyStartsOnceThePrimarysCheckpointIsReplayed(t *testing.T) {
	fx := newBackupFixture(t, testSystemID, nil)
	st := mem.New()
	putWAL(t, st, "000000010000000000000002")
	primary := &fakePrimary{sys: testSystemID, current: 0x3100000, checkpoint: 0x3000100}
	steps := []wal.LSN{0x2000100, 0x2000100, 0x2800000, 0x3000100}
	src := &fakeStandby{fakeSource: newFakeSource(fx.dataDir), recoveryTLI: 1}
	src.onReplay = func() wal.LSN {
		primary.call("replay")
		at := steps[0]
		if len(steps) > 1 {
			steps = steps[1:]
		}
		return at
	}
	src.onStart = func() { primary.call("start") }
	p := newPusher(st, src, fx.dataDir, 1<<20, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p.Opt.Primary = primary
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The lag check's look, then the checkpoint, then looks until it is replayed.
	if got := strings.Join(primary.calls, " "); got != "replay checkpoint replay replay replay start switch" {
		t.Errorf("calls: %s; want replay checkpoint replay replay replay start switch", got)
	}
}
