package restore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// putWAL stores an archived WAL file as wal-push does: in an envelope, under WALKey.
func putWAL(t *testing.T, st storage.Store, name string, body []byte) {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := compress.New("zstd", 0)
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, codec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), repo.WALKey(f), &buf, storage.PutOptions{Size: int64(buf.Len())}); err != nil {
		t.Fatal(err)
	}
}

type tlBackup struct {
	name        string
	tli         uint32
	start, stop wal.LSN
}

func putBackups(t *testing.T, st storage.Store, bs []tlBackup) []*repo.Summary {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i, b := range bs {
		at := t0.Add(time.Duration(i) * time.Hour)
		m := &repo.Manifest{Summary: repo.Summary{Name: b.name, Timeline: b.tli, StartLSN: b.start, StopLSN: b.stop, NextXID: uint64(1000 * (i + 1)),
			StartTime: at.Add(-time.Minute), StopTime: at, WALSegSize: 16 << 20}}
		if err := repo.New(st, repo.Options{}).PutBackup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	backups, _, err := repo.New(st, repo.Options{}).ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return backups
}

// The report: a restore to a point was promoted and archived timeline 2 (branched
// from 1 at 0/5000000) while timeline 1 went on and got a backup after the fork.
func TestChooseFollowsTheTargetTimelinesHistory(t *testing.T) {
	st := mem.New()
	putSegments(t, st, segRange(1, 2, 4)...)
	putWAL(t, st, "00000002.history", []byte("1\t0/5000000\tbefore 2026-11-23 12:00:00+00\n"))
	putSegments(t, st, segRange(2, 5, 7)...)
	putSegments(t, st, segRange(1, 5, 9)...)
	for _, rp := range []repo.RestorePoint{
		{Name: "tl1-before-fork", LSN: 0x4000000, Timeline: 1},
		{Name: "tl1-after-fork", LSN: 0x8800000, Timeline: 1},
		{Name: "tl2", LSN: 0x6800000, Timeline: 2},
	} {
		if err := repo.New(st, repo.Options{}).PutRestorePoint(context.Background(), rp); err != nil {
			t.Fatal(err)
		}
	}
	backups := putBackups(t, st, []tlBackup{
		{"tl1-before-fork", 1, 0x2000028, 0x2000100},
		{"tl1-at-fork", 1, 0x4FFFF00, 0x5000000},
		{"tl2", 2, 0x6000028, 0x6000100},
		{"tl1-after-fork", 1, 0x8000028, 0x8000100},
	})
	for _, tc := range []struct {
		name     string
		target   Target
		backup   string
		want     string
		timeline string // written to recovery_target_timeline
		msg      []string
	}{
		{name: "timeline 2 to the end", target: Target{Kind: ToEnd, Timeline: "2"}, want: "tl2", timeline: "2"},
		{name: "timeline 2 before its own backup", target: Target{Kind: ToLSN, LSN: 0x5800000, Timeline: "2"}, want: "tl1-at-fork", timeline: "2"},
		{name: "timeline 2 before the fork", target: Target{Kind: ToLSN, LSN: 0x4000000, Timeline: "2"}, want: "tl1-before-fork", timeline: "2"},
		{name: "timeline 1 to the end", target: Target{Kind: ToEnd, Timeline: "1"}, want: "tl1-after-fork", timeline: "1"},
		{name: "current", target: Target{Kind: ToEnd, Timeline: "current"}, want: "tl1-after-fork", timeline: "current"},
		{name: "timeline 1 at an LSN only timeline 1 has", target: Target{Kind: ToLSN, LSN: 0x8800000, Timeline: "1"}, want: "tl1-after-fork", timeline: "1"},
		{name: "timeline 2 with a backup after the fork", target: Target{Kind: ToEnd, Timeline: "2"}, backup: "tl1-after-fork",
			msg: []string{"backup tl1-after-fork", "timeline 2 (from 1 at LSN 0/5000000)", "--target-timeline"}},
		{name: "timeline 1 with the backup of timeline 2", target: Target{Kind: ToEnd, Timeline: "1"}, backup: "tl2",
			msg: []string{"backup tl2", "timeline 1", "timeline 2 (branched from 1 at LSN 0/5000000)"}},
		{name: "point before the fork, timeline 2", target: Target{Kind: ToName, Name: "tl1-before-fork", Timeline: "2"}, want: "tl1-before-fork", timeline: "2"},
		{name: "point of timeline 2", target: Target{Kind: ToName, Name: "tl2", Timeline: "2"}, want: "tl2", timeline: "2"},
		{name: "point after the fork, timeline 1", target: Target{Kind: ToName, Name: "tl1-after-fork", Timeline: "1"}, want: "tl1-after-fork", timeline: "1"},
		{name: "point after the fork on timeline 1, timeline 2", target: Target{Kind: ToName, Name: "tl1-after-fork", Timeline: "2"},
			msg: []string{`restore point "tl1-after-fork" (timeline 1, LSN 0/8800000) is not on the history of timeline 2`, "--target-timeline 1"}},
		{name: "point of timeline 2, timeline 1", target: Target{Kind: ToName, Name: "tl2", Timeline: "1"}, msg: []string{"--target-timeline 2"}},
		{name: "unknown timeline", target: Target{Kind: ToEnd, Timeline: "3"}, msg: []string{"timeline 3 is not in the repository", "timeline 1", "timeline 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			m, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, tc.backup)
			if tc.want == "" {
				if err == nil || !errors.Is(err, ErrNoUsableBackup) && !errors.Is(err, ErrTimeline) {
					t.Fatalf("Choose = %v, %v; want a refusal", m, err)
				}
				for _, s := range tc.msg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("message %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Name != tc.want || target.Timeline != tc.timeline {
				t.Errorf("Choose picked %s on timeline %s, want %s on %s", m.Name, target.Timeline, tc.want, tc.timeline)
			}
		})
	}
}

// Only backups taken on timeline 1 after timeline 2 branched: none can reach timeline 2.
func TestChooseRefusesWhenNoBackupLiesOnTheTimeline(t *testing.T) {
	st := mem.New()
	putWAL(t, st, "000000010000000000000008", []byte("wal"))
	putWAL(t, st, "00000002.history", []byte("1\t0/5000000\tno recovery target specified\n"))
	putWAL(t, st, "000000020000000000000005", []byte("wal"))
	backups := putBackups(t, st, []tlBackup{{"late", 1, 0x7000028, 0x7000100}})
	target := Target{Kind: ToEnd, Timeline: "2"}
	_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
	if !errors.Is(err, ErrNoUsableBackup) {
		t.Fatalf("Choose = %v, want ErrNoUsableBackup", err)
	}
	for _, s := range []string{"backup late", "timeline 2 (from 1 at LSN 0/5000000)", "timeline 1 archived up to 000000010000000000000008"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not contain %q", err, s)
		}
	}
}

func TestChooseRefusesADamagedHistory(t *testing.T) {
	for name, body := range map[string][]byte{
		"garbage":   []byte("this is not a history\n"),
		"too large": bytes.Repeat([]byte("#"), wal.MaxHistorySize+1),
	} {
		st := mem.New()
		putWAL(t, st, "000000010000000000000003", []byte("wal"))
		putWAL(t, st, "00000002.history", body)
		backups := putBackups(t, st, []tlBackup{{"b", 1, 0x2000028, 0x2000100}})
		_, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &Target{Kind: ToEnd, Timeline: "1"}, "")
		if !errors.Is(err, wal.ErrBadHistory) || !strings.Contains(err.Error(), "wal/00000002.history") {
			t.Errorf("%s: Choose = %v, want ErrBadHistory naming the object", name, err)
		}
	}
}

// stampedStore reports the ModTime the test gives each key, so that the order in
// which objects were stored is part of the fixture.
type stampedStore struct {
	storage.Store
	at map[string]time.Time
}

func (s stampedStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if at, ok := s.at[o.Key]; ok {
			o.ModTime = at
		}
		return fn(o)
	})
}

// history is a repository filled in the order given, a minute per object.
func history(t *testing.T, objects ...[2]string) stampedStore {
	t.Helper()
	st := stampedStore{Store: mem.New(), at: map[string]time.Time{}}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i, o := range objects {
		putWAL(t, st.Store, o[0], []byte(o[1]))
		f, _ := wal.Parse(o[0])
		st.at[repo.WALKey(f)] = t0.Add(time.Duration(i) * time.Minute)
		if f.Kind == wal.Segment {
			putSummary(t, st.Store, o[0]) // the body is a stand-in: its summary is cached
		}
	}
	return st
}

func seg(name string) [2]string { return [2]string{name, "wal"} }

func TestChooseRefusesAnAmbiguousLatestTimeline(t *testing.T) {
	b1 := []tlBackup{{"b1", 1, 0x2000028, 0x2000100}}
	for _, tc := range []struct {
		name      string
		repo      [][2]string
		timeline  string
		ambiguous bool
		msg       []string
		want      string // timeline followed otherwise
	}{
		{name: "a promoted point-in-time restore, the old primary gone", timeline: "latest", want: "2", repo: [][2]string{
			seg("000000010000000000000002"), seg("000000010000000000000003"), seg("000000010000000000000004"), seg("000000010000000000000005"),
			{"00000002.history", "1\t0/3800000\tbefore 2026-11-23 11:00:00+00\n"},
			seg("000000020000000000000003"), seg("000000020000000000000004")}},
		{name: "a promoted copy while the primary went on archiving", timeline: "latest", ambiguous: true, repo: [][2]string{
			seg("000000010000000000000002"), seg("000000010000000000000003"),
			{"00000002.history", "1\t0/3F00000\tno recovery target specified\n"},
			seg("000000020000000000000003"), seg("000000020000000000000004"),
			seg("000000010000000000000004"), seg("000000010000000000000005")},
			msg: []string{"timeline 1 kept being archived after timeline 2 branched from it at LSN 0/3F00000", "000000010000000000000004",
				"timeline 1 archived up to 000000010000000000000005", "timeline 2 (branched from 1 at LSN 0/3F00000) archived up to 000000020000000000000004",
				"--target-timeline N", "nothing was written"}},
		{name: "the same, the default", timeline: "", ambiguous: true, repo: [][2]string{
			seg("000000010000000000000002"), {"00000002.history", "1\t0/2F00000\tx\n"}, seg("000000010000000000000003")}},
		{name: "the same, timeline 1 chosen", timeline: "1", want: "1", repo: [][2]string{
			seg("000000010000000000000002"), {"00000002.history", "1\t0/2F00000\tx\n"}, seg("000000010000000000000003")}},
		{name: "the same, timeline 2 chosen", timeline: "2", want: "2", repo: [][2]string{
			seg("000000010000000000000002"), {"00000002.history", "1\t0/2F00000\tx\n"}, seg("000000010000000000000003"),
			seg("000000020000000000000002")}},
		{name: "two timelines branched from one parent", timeline: "latest", ambiguous: true, repo: [][2]string{
			seg("000000010000000000000002"), seg("000000010000000000000003"), seg("000000010000000000000004"),
			{"00000002.history", "1\t0/3000000\tx\n"}, seg("000000020000000000000003"),
			{"00000003.history", "1\t0/4000000\ty\n"}, seg("000000030000000000000004")},
			msg: []string{"timeline 2 is not on the history of timeline 3", "timeline 2 (branched from 1 at LSN 0/3000000)", "timeline 3 (branched from 1 at LSN 0/4000000)"}},
		{name: "a chain of promoted restores", timeline: "latest", want: "3", repo: [][2]string{
			seg("000000010000000000000002"), seg("000000010000000000000003"),
			{"00000002.history", "1\t0/2800000\tx\n"}, seg("000000020000000000000002"), seg("000000020000000000000003"),
			{"00000003.history", "1\t0/2800000\tx\n2\t0/3800000\ty\n"}, seg("000000030000000000000003")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := history(t, tc.repo...)
			backups := putBackups(t, st.Store, b1)
			target := Target{Kind: ToEnd, Timeline: tc.timeline}
			m, err := Choose(context.Background(), repo.New(st, repo.Options{}), backups, &target, "")
			if tc.ambiguous {
				if !errors.Is(err, ErrAmbiguousTimeline) {
					t.Fatalf("Choose = %v, %v; want ErrAmbiguousTimeline", m, err)
				}
				for _, s := range tc.msg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("message %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if target.Timeline != tc.want {
				t.Errorf("follows timeline %s, want %s", target.Timeline, tc.want)
			}
		})
	}
}
