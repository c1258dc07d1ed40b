package retention

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

const seg = 16 << 20

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// backup b ran on timeline tli from segment start to segment stop, and ended day days
// after t0.
func backup(name string, tli uint32, start, stop uint64, day int, permanent bool) Backup {
	return Backup{Permanent: permanent, Summary: &repo.Summary{
		Name: name, Timeline: tli, WALSegSize: seg,
		StartLSN: wal.LSN(start*seg + 0x28), StopLSN: wal.LSN(stop*seg + 0x100),
		StartTime: t0.Add(time.Duration(day) * 24 * time.Hour).Add(-time.Minute),
		StopTime:  t0.Add(time.Duration(day) * 24 * time.Hour), StoredSize: 1000,
	}}
}

// segs archives segments from..to of timeline tli.
func segs(tli uint32, from, to uint64) []repo.WALObject {
	var out []repo.WALObject
	for n := from; n <= to; n++ {
		f, err := wal.Parse(wal.SegmentFileName(tli, n, seg))
		if err != nil {
			panic(err)
		}
		out = append(out, repo.WALObject{File: f, Size: 10})
	}
	return out
}

func history(tli uint32) repo.WALObject {
	f, _ := wal.Parse(fmt.Sprintf("%08X.history", tli))
	return repo.WALObject{File: f, Size: 1}
}

func join(ws ...[]repo.WALObject) []repo.WALObject {
	var out []repo.WALObject
	for _, w := range ws {
		out = append(out, w...)
	}
	return out
}

func names(bs []Backup) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func walNames(ws []repo.WALObject) []string {
	out := []string{}
	for _, w := range ws {
		out = append(out, w.Name)
	}
	return out
}

func segNames(tli uint32, from, to uint64) []string { return walNames(segs(tli, from, to)) }

func TestPlan(t *testing.T) {
	now := t0.Add(10 * 24 * time.Hour)
	three := []Backup{backup("b1", 1, 2, 3, 1, false), backup("b2", 1, 5, 6, 2, false), backup("b3", 1, 8, 9, 3, false)}
	for _, tc := range []struct {
		name       string
		backups    []Backup
		wal        []repo.WALObject
		rps        []repo.RestorePoint
		policy     Policy
		delete     []string
		deleteWAL  []string
		deleteRPs  []string
		windowFrom string
		bytes      int64
	}{
		{name: "retain-full 2 of 3", backups: three, wal: segs(1, 1, 10), policy: Policy{RetainFull: 2},
			delete: []string{"b1"}, deleteWAL: segNames(1, 1, 4), windowFrom: "b2", bytes: 1000 + 4*10},
		{name: "fewer backups than N", backups: three, wal: segs(1, 1, 10), policy: Policy{RetainFull: 5},
			delete: []string{}, deleteWAL: segNames(1, 1, 1), windowFrom: "b1", bytes: 10},
		{name: "retain-full 1 keeps the newest", backups: three, wal: segs(1, 2, 10), policy: Policy{RetainFull: 1},
			delete: []string{"b1", "b2"}, deleteWAL: segNames(1, 2, 7), windowFrom: "b3", bytes: 2000 + 6*10},
		{name: "empty repository", policy: Policy{RetainFull: 1}, delete: []string{}, deleteWAL: []string{}},
		{name: "no backup: WAL is kept", wal: segs(1, 1, 5), policy: Policy{RetainFull: 1}, delete: []string{}, deleteWAL: []string{}},
		{name: "the newest backup is never deleted", backups: three, wal: segs(1, 8, 10), policy: Policy{BeforeTime: now},
			delete: []string{"b1", "b2"}, deleteWAL: []string{}, windowFrom: "b3", bytes: 2000},
		{name: "before a backup", backups: three, wal: segs(1, 2, 10), policy: Policy{BeforeBackup: "b2"},
			delete: []string{"b1"}, deleteWAL: segNames(1, 2, 4), windowFrom: "b2", bytes: 1000 + 3*10},
		{name: "before a time", backups: three, wal: segs(1, 2, 10), policy: Policy{BeforeTime: t0.Add(36 * time.Hour)},
			delete: []string{"b1"}, deleteWAL: segNames(1, 2, 4), windowFrom: "b2", bytes: 1000 + 3*10},
		{name: "recovery window keeps the backup that ended before its start", backups: three, wal: segs(1, 2, 10),
			policy: Policy{RetainDays: 8}, // now-8d = day 2: b2 ended then, so b2 reaches the window's start
			delete: []string{"b1"}, deleteWAL: segNames(1, 2, 4), windowFrom: "b2", bytes: 1000 + 3*10},
		{name: "recovery window older than every backup keeps all", backups: three, wal: segs(1, 2, 10),
			policy: Policy{RetainDays: 30}, delete: []string{}, deleteWAL: []string{}, windowFrom: "b1"},
		{name: "recovery window after every backup keeps the newest", backups: three, wal: segs(1, 2, 10),
			policy: Policy{RetainDays: 1}, delete: []string{"b1", "b2"}, deleteWAL: segNames(1, 2, 7), windowFrom: "b3", bytes: 2000 + 6*10},
		{name: "several policies: the one that keeps more wins", backups: three, wal: segs(1, 2, 10),
			policy: Policy{RetainFull: 1, RetainDays: 8}, delete: []string{"b1"}, deleteWAL: segNames(1, 2, 4), windowFrom: "b2", bytes: 1000 + 3*10},
		{name: "a permanent backup and the WAL it needs to become consistent stay",
			backups: []Backup{backup("b1", 1, 2, 3, 1, true), backup("b2", 1, 5, 6, 2, false), backup("b3", 1, 8, 9, 3, false)},
			wal:     segs(1, 1, 10), policy: Policy{RetainFull: 1},
			delete: []string{"b2"}, deleteWAL: append(segNames(1, 1, 1), segNames(1, 4, 7)...), windowFrom: "b3", bytes: 1000 + 5*10},
		{name: "the newest backup permanent",
			backups: []Backup{backup("b1", 1, 2, 3, 1, false), backup("b2", 1, 5, 6, 2, true)},
			wal:     segs(1, 2, 7), policy: Policy{RetainFull: 1},
			delete: []string{"b1"}, deleteWAL: segNames(1, 2, 4), windowFrom: "b2", bytes: 1000 + 3*10},
		{name: "a gap in the WAL changes nothing",
			backups: three, wal: join(segs(1, 1, 3), segs(1, 6, 10)), policy: Policy{RetainFull: 2},
			delete: []string{"b1"}, deleteWAL: segNames(1, 1, 3), windowFrom: "b2", bytes: 1000 + 3*10},
		{name: "several timelines: history files and the kept backup's timelines stay",
			// timeline 2 branched at segment 6 of timeline 1; b3 ran on it.
			backups: []Backup{backup("b1", 1, 2, 3, 1, false), backup("b2", 1, 4, 4, 2, false), backup("b3", 2, 8, 9, 3, false)},
			wal:     join(segs(1, 2, 7), []repo.WALObject{history(2)}, segs(2, 6, 11)), policy: Policy{RetainFull: 1},
			delete: []string{"b1", "b2"}, deleteWAL: []string{
				wal.SegmentFileName(1, 2, seg), wal.SegmentFileName(1, 3, seg), wal.SegmentFileName(1, 4, seg),
				wal.SegmentFileName(1, 5, seg), wal.SegmentFileName(1, 6, seg), wal.SegmentFileName(2, 6, seg),
				wal.SegmentFileName(1, 7, seg), wal.SegmentFileName(2, 7, seg)},
			windowFrom: "b3", bytes: 2000 + 8*10},
		{name: "a kept backup on a newer timeline with a lower LSN keeps its WAL",
			// b2 on timeline 1 ended on day 2 at segment 9; then a restore to segment 5
			// started timeline 2, where b3 ran on day 3 from segment 6.
			backups: []Backup{backup("b1", 1, 2, 3, 1, false), backup("b2", 1, 8, 9, 2, false), backup("b3", 2, 6, 7, 3, false)},
			wal:     join(segs(1, 2, 10), []repo.WALObject{history(2)}, segs(2, 5, 8)), policy: Policy{RetainFull: 2},
			delete: []string{"b1"}, deleteWAL: append(segNames(1, 2, 4), wal.SegmentFileName(1, 5, seg), wal.SegmentFileName(2, 5, seg)),
			windowFrom: "b2", bytes: 1000 + 5*10},
		{name: "restore points before the window go",
			backups: three, wal: segs(1, 2, 10), policy: Policy{RetainFull: 2},
			rps:    []repo.RestorePoint{{Name: "old", LSN: 3 * seg}, {Name: "in-b2", LSN: 6 * seg}, {Name: "new", LSN: 7 * seg}},
			delete: []string{"b1"}, deleteWAL: segNames(1, 2, 4), deleteRPs: []string{"old", "in-b2"}, windowFrom: "b2", bytes: 1000 + 3*10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Make(Input{Backups: tc.backups, WAL: tc.wal, RestorePoints: tc.rps, Policy: tc.policy, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(p.Delete); !reflect.DeepEqual(got, tc.delete) {
				t.Errorf("backups deleted %v, want %v", got, tc.delete)
			}
			if len(p.Keep)+len(p.Delete) != len(tc.backups) {
				t.Errorf("kept %v and deleted %v of %d", names(p.Keep), names(p.Delete), len(tc.backups))
			}
			if got := walNames(p.WAL); !reflect.DeepEqual(got, tc.deleteWAL) {
				t.Errorf("WAL deleted %v, want %v", got, tc.deleteWAL)
			}
			var rps []string
			for _, rp := range p.RestorePoints {
				rps = append(rps, rp.Name)
			}
			if !reflect.DeepEqual(rps, tc.deleteRPs) {
				t.Errorf("restore points deleted %v, want %v", rps, tc.deleteRPs)
			}
			if p.Window.FromBackup != tc.windowFrom {
				t.Errorf("window from %q, want %q", p.Window.FromBackup, tc.windowFrom)
			}
			if p.Bytes != tc.bytes {
				t.Errorf("bytes freed %d, want %d", p.Bytes, tc.bytes)
			}
		})
	}
}

func TestPlanRefusesNoPolicyAndAnUnknownBackup(t *testing.T) {
	in := Input{Backups: []Backup{backup("b1", 1, 2, 3, 1, false)}}
	if _, err := Make(in); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("no policy: %v", err)
	}
	in.Policy.BeforeBackup = "nope"
	if _, err := Make(in); !errors.Is(err, repo.ErrNoBackup) {
		t.Errorf("unknown backup: %v", err)
	}
}

func TestConsistencyOnlyNamesThePermanentBackupsOlderThanWhatAPolicyKeeps(t *testing.T) {
	sum := func(bs ...Backup) ([]*repo.Summary, map[string]bool) {
		var out []*repo.Summary
		perm := map[string]bool{}
		for i := len(bs) - 1; i >= 0; i-- { // any order
			out = append(out, bs[i].Summary)
			perm[bs[i].Name] = bs[i].Permanent
		}
		return out, perm
	}
	for _, c := range []struct {
		name string
		bs   []Backup
		want []string
	}{
		{"none", nil, nil},
		{"no permanent", []Backup{backup("a", 1, 2, 3, 1, false), backup("b", 1, 5, 6, 2, false)}, nil},
		{"permanent oldest", []Backup{backup("a", 1, 2, 3, 1, true), backup("b", 1, 5, 6, 2, false), backup("c", 1, 8, 9, 3, true)}, []string{"a"}},
		{"two permanent oldest", []Backup{backup("a", 1, 2, 3, 1, true), backup("b", 1, 5, 6, 2, true), backup("c", 1, 8, 9, 3, false)}, []string{"a", "b"}},
		{"all permanent: the newest reaches on", []Backup{backup("a", 1, 2, 3, 1, true), backup("b", 1, 5, 6, 2, true)}, []string{"a"}},
		{"one permanent", []Backup{backup("a", 1, 2, 3, 1, true)}, nil},
		// A permanent incremental backup keeps the backups its chain builds on, and
		// retention the WAL each needs to become consistent, no more.
		{"a permanent incremental and its chain", []Backup{backup("f1", 1, 2, 3, 1, false), incr(backup("i1", 1, 5, 6, 2, false), "f1"),
			incr(backup("i2", 1, 8, 9, 3, true), "i1"), backup("f2", 1, 11, 12, 4, false)}, []string{"f1", "i1", "i2"}},
		{"a chain after the permanent one's is not", []Backup{backup("f1", 1, 2, 3, 1, false), incr(backup("i1", 1, 5, 6, 2, true), "f1"),
			incr(backup("i2", 1, 8, 9, 3, false), "f1"), backup("f2", 1, 11, 12, 4, false)}, []string{"f1", "i1"}},
		{"the newest backup's chain reaches on", []Backup{backup("f1", 1, 2, 3, 1, false), incr(backup("i1", 1, 5, 6, 2, true), "f1"),
			backup("f2", 1, 8, 9, 3, true), incr(backup("i2", 1, 11, 12, 4, true), "f2")}, []string{"f1", "i1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ConsistencyOnly(sum(c.bs...))
			var names []string
			for n := range got {
				names = append(names, n)
			}
			sort.Strings(names)
			if strings.Join(names, ",") != strings.Join(c.want, ",") {
				t.Fatalf("ConsistencyOnly = %v, want %v", names, c.want)
			}
		})
	}
}

// incr is backup b as an incremental backup on parent.
func incr(b Backup, parent string) Backup {
	b.Parent = parent
	return b
}

// A chain is one unit: --retain-full counts full backups, a kept incremental backup
// keeps every backup it builds on (and the WAL from its full one on), a permanent
// incremental one keeps its chain's backups, and a broken chain keeps nothing older.
func TestPlanKeepsWholeChains(t *testing.T) {
	now := t0.Add(30 * 24 * time.Hour)
	f1 := backup("f1", 1, 2, 3, 1, false)
	i1 := incr(backup("i1", 1, 5, 6, 2, false), "f1")
	i2 := incr(backup("i2", 1, 8, 9, 3, false), "i1")
	f2 := backup("f2", 1, 11, 12, 4, false)
	i3 := incr(backup("i3", 1, 14, 15, 5, false), "f2")
	wal := segs(1, 2, 16)
	for _, tc := range []struct {
		name       string
		backups    []Backup
		policy     Policy
		keep, gone []string
		walFrom    uint64 // the oldest segment kept
	}{
		{"retain-full 1 keeps the newest full backup and its incremental", []Backup{f1, i1, i2, f2, i3}, Policy{RetainFull: 1},
			[]string{"f2", "i3"}, []string{"f1", "i1", "i2"}, 11},
		{"retain-full 2 keeps both chains", []Backup{f1, i1, i2, f2, i3}, Policy{RetainFull: 2},
			[]string{"f1", "i1", "i2", "f2", "i3"}, []string{}, 2},
		{"keeping the newest incremental keeps its full backup", []Backup{f1, i1, i2}, Policy{BeforeBackup: "i2"},
			[]string{"f1", "i1", "i2"}, []string{}, 2},
		{"retain-days keeping a mid-chain backup keeps its chain", []Backup{f1, i1, i2, f2, i3}, Policy{RetainDays: 27},
			[]string{"f1", "i1", "i2", "f2", "i3"}, []string{}, 2},
		{"a permanent incremental keeps its chain's backups", []Backup{f1, i1, {Summary: i2.Summary, Permanent: true}, f2, i3}, Policy{RetainFull: 1},
			[]string{"f1", "i1", "i2", "f2", "i3"}, []string{}, 11},
		{"a permanent incremental's parent that sorts after it (a clock stepped back) is kept",
			[]Backup{{Summary: incr(backup("p1", 1, 2, 3, 1, false), "pf").Summary, Permanent: true}, backup("pf", 1, 0, 1, 2, false), f2, i3},
			Policy{RetainFull: 1}, []string{"p1", "pf", "f2", "i3"}, []string{}, 11},
		{"a broken chain keeps nothing older", []Backup{f1, incr(backup("i9", 1, 8, 9, 3, false), "gone"), f2}, Policy{BeforeBackup: "i9"},
			[]string{"i9", "f2"}, []string{"f1"}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Make(Input{Backups: tc.backups, WAL: wal, Policy: tc.policy, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			keep, gone := names(p.Keep), names(p.Delete)
			sort.Strings(keep)
			sort.Strings(gone)
			sort.Strings(tc.keep)
			sort.Strings(tc.gone)
			if !reflect.DeepEqual(keep, tc.keep) || !reflect.DeepEqual(gone, tc.gone) {
				t.Fatalf("keep %v delete %v, want keep %v delete %v", keep, gone, tc.keep, tc.gone)
			}
			for _, o := range p.WAL {
				if o.SegmentNumber(seg) >= tc.walFrom {
					t.Fatalf("deletes %s, at or after segment %d which a kept backup needs", o.Name, tc.walFrom)
				}
			}
			for _, o := range p.WAL {
				// i2 is permanent, and f1 and i1 its chain's bases: each keeps its start
				// to stop segments.
				if n := o.SegmentNumber(seg); tc.policy.RetainFull == 1 && len(tc.keep) == 5 && (n == 8 || n == 9 || n == 2 || n == 3 || n == 5 || n == 6) {
					t.Fatalf("deletes %s, which the permanent backup i2 or a backup of its chain needs to become consistent", o.Name)
				}
			}
			if tc.walFrom > 2 && len(p.WAL) == 0 {
				t.Fatalf("deletes no WAL before segment %d", tc.walFrom)
			}
		})
	}
}
