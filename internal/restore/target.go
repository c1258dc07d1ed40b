// Package restore brings a base backup back into an empty directory and writes the
// recovery settings that make PostgreSQL replay archived WAL to the chosen target.
package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
	"github.com/pgb-project/pgb/internal/window"
)

// TargetKind says where recovery stops.
type TargetKind int

// Recovery targets.
const (
	ToEnd       TargetKind = iota // replay the whole archive
	ToTime                        // recovery_target_time
	ToName                        // recovery_target_name
	ToLSN                         // recovery_target_lsn
	ToXID                         // recovery_target_xid
	ToImmediate                   // recovery_target = 'immediate'
)

// Target is a recovery target with its options.
type Target struct {
	Kind      TargetKind
	Time      time.Time
	Name      string
	LSN       wal.LSN
	XID       uint64
	Exclusive bool   // stop just before the target instead of just after
	Action    string // pause, promote or shutdown
	Timeline  string // latest, current or a number
	// BeyondArchive lets a time or LSN target lie after the last archived commit,
	// for WAL that will be archived before replay gets there: recovery does not wait
	// (wal-fetch answers a segment not archived yet as the end of the archive).
	BeyondArchive bool

	// filesOnly: no recovery follows (backup-fetch); what WAL is archived does not
	// matter, so no window is computed.
	filesOnly bool
}

func (t Target) String() string {
	switch t.Kind {
	case ToTime:
		return "time " + t.Time.UTC().Format(time.RFC3339Nano)
	case ToName:
		return "restore point " + strconv.Quote(t.Name)
	case ToLSN:
		return "LSN " + t.LSN.String()
	case ToXID:
		if t.XID >= 1<<32 {
			return fmt.Sprintf("transaction %d (xid %d of epoch %d)", t.XID, uint32(t.XID), t.XID>>32)
		}
		return "transaction " + strconv.FormatUint(t.XID, 10)
	case ToImmediate:
		return "the end of the backup (immediate)"
	}
	return "the end of the archive"
}

// ParseTime reads a target time: RFC 3339 or PostgreSQL's format, with a time zone.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	layouts := []string{
		time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999Z07",
		"2006-01-02 15:04:05.999999999Z0700",
		"2006-01-02 15:04:05.999999999 Z07:00",
		"2006-01-02 15:04:05.999999999 Z07",
		"2006-01-02 15:04:05.999999999 Z0700",
		"2006-01-02T15:04:05.999999999Z07",
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02 15:04:05.999999999 UTC",
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	for _, l := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if _, err := time.Parse(l, s); err == nil {
			return time.Time{}, fmt.Errorf("target time %q has no time zone: add one, e.g. %q or %q", s, s+"+00", s+"Z")
		}
	}
	return time.Time{}, fmt.Errorf("target time %q: want RFC 3339 (2026-11-23T20:39:44Z) or PostgreSQL's format (2026-11-23 20:39:44.123+00)", s)
}

// pgTime formats a time the way recovery_target_time takes it.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999") + "+00" }

// ErrNoUsableBackup means no backup can reach the target.
var ErrNoUsableBackup = errors.New("no backup can reach the target")

// ErrBeyondArchive means the target lies past the newest archived WAL: PostgreSQL
// would replay everything and then stop with "recovery ended before configured
// recovery target was reached".
var ErrBeyondArchive = errors.New("the target is beyond the archived WAL")

// Choose picks the newest backup that can reach the target: one whose end (its
// consistency point) comes before the target. name, if set, must be such a backup.
// It refuses a target past the newest archived WAL. A target transaction id in the
// 32-bit form is resolved to the full one (see FullXID).
func Choose(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, t *Target, name string) (*repo.Summary, error) {
	m, _, err := choose(ctx, rp, backups, t, name, nil)
	return m, err
}

// Reach is what Check found: the windows, and the verdict on the target.
type Reach struct {
	Windows *window.Windows
	Verdict window.Verdict
	Backup  *repo.Summary // the backup Choose picks, nil when the target cannot be reached
}

// Check is Choose without the error for a target it cannot reach: it says whether the
// target can be reached, from which backup, over which WAL (pgb status --at). An error
// is returned only when the repository cannot be read or the target makes no sense
// (an unknown restore point or timeline).
func Check(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, t *Target) (*Reach, error) {
	return check(ctx, rp, backups, t, nil)
}

// CheckGathered is Check on what window.Gather already read of rp — the listing of
// wal/, the history files, and the WAL summaries through g.Summary — so that pgb
// status --at lists and reads the archive once, not twice.
func CheckGathered(ctx context.Context, rp *repo.Repo, g *window.Repository, t *Target) (*Reach, error) {
	return check(ctx, rp, g.Backups, t, g)
}

func check(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, t *Target, g *window.Repository) (*Reach, error) {
	m, r, err := choose(ctx, rp, backups, t, "", g)
	if r == nil {
		return nil, err
	}
	if err != nil && r.Verdict.Err == nil {
		r.Verdict.Reachable, r.Verdict.Err, r.Verdict.Reason = false, err, err.Error()
	}
	r.Backup = m
	return r, nil
}

// ErrUnreachable means the archived WAL cannot bring any backup to the target: it is
// before the first usable backup, or in a gap.
var ErrUnreachable = errors.New("the target cannot be reached")

// choose is Choose and Check; g, when not nil, is what window.Gather read of the
// archive (used instead of reading it again when its segment size is restore's).
func choose(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, t *Target, name string, g *window.Repository) (*repo.Summary, *Reach, error) {
	if len(backups) == 0 {
		return nil, nil, fmt.Errorf("%w: the repository %s has no backups (take one with pgb backup-push)", ErrNoUsableBackup, rp)
	}
	if t.filesOnly {
		return chooseFiles(backups, name)
	}
	if g != nil && g.SegSize != segSize(backups) {
		g = nil
	}
	var arch *archive
	var tls *timelines
	var err error
	if g != nil {
		arch = archiveOf(g)
		tls = timelinesOf(g, arch, backups)
	} else {
		if arch, err = scanArchive(ctx, rp, segSize(backups)); err != nil {
			return nil, nil, err
		}
		if tls, err = readTimelines(ctx, rp, arch, backups); err != nil {
			return nil, nil, err
		}
	}
	tli, err := tls.target(t.Timeline)
	if err != nil {
		return nil, nil, err
	}
	if t.Timeline == "" || t.Timeline == "latest" {
		if why := tls.forks(tli, segSize(backups)); len(why) > 0 {
			return nil, nil, fmt.Errorf("%w: %s; %s; nothing was written: choose the history to restore with --target-timeline N",
				ErrAmbiguousTimeline, strings.Join(why, "; "), tls.describe())
		}
	}
	if tli != 0 {
		// Pin what was checked: PostgreSQL's own "latest" could see another timeline.
		t.Timeline = strconv.FormatUint(uint64(tli), 10)
	}
	var summary func(window.Segment) (*walsum.Summary, error)
	if g != nil {
		summary = g.Summary
	}
	ws, err := windows(ctx, rp, arch, tls, backups, tli, summary)
	if err != nil {
		return nil, nil, err
	}
	win := ws.Describe()

	var pointLSN wal.LSN
	if t.Kind == ToName {
		point, err := rp.ReadRestorePoint(ctx, t.Name)
		if err != nil {
			if errors.Is(err, repo.ErrNoRestorePoint) {
				return nil, nil, fmt.Errorf("%w; %s", err, win)
			}
			return nil, nil, err
		}
		pointLSN = point.LSN
		if tli != 0 && point.Timeline != 0 && !tls.holds(tli, point.Timeline, point.LSN) {
			return nil, nil, fmt.Errorf("%w: restore point %q (timeline %d, LSN %s) is not on the history of %s, which recovery would follow and never meet it; restore it with --target-timeline %d",
				ErrTimeline, point.Name, point.Timeline, point.LSN, tls.path(tli), point.Timeline)
		}
	}
	if t.Kind == ToXID {
		// The newest backup's horizon is the reference for a 32-bit xid.
		t.XID = FullXID(t.XID, backups[len(backups)-1].NextXID)
	}
	reach := &Reach{Windows: ws}
	if wt, ok := windowTarget(t, pointLSN); ok {
		v := ws.Check(wt)
		reach.Verdict = v
		switch {
		case v.Reachable:
		case t.BeyondArchive && errors.Is(v.Err, window.ErrAfterArchive):
			reach.Verdict.Reachable, reach.Verdict.Err = true, nil
		case errors.Is(v.Err, window.ErrAfterArchive):
			return nil, reach, fmt.Errorf("%w: %s: PostgreSQL would replay all of it and stop without reaching the target; nothing was written: restore with no target (to the end of the archive), the last archived commit is the newest state there is (--target-beyond-archive only if the WAL holding the target will be archived before replay gets there: recovery does not wait for it); %s",
				ErrBeyondArchive, v.Reason, win)
		case errors.Is(v.Err, window.ErrBeforeFirstBackup):
			return nil, reach, fmt.Errorf("%w: %w: %s; nothing was written; %s", ErrUnreachable, ErrNoUsableBackup, v.Reason, win)
		default:
			return nil, reach, fmt.Errorf("%w: %s; nothing was written; %s", ErrUnreachable, v.Reason, win)
		}
	}
	// unusable says why backup m cannot become consistent: its WAL from start to stop
	// is not all archived (or a segment of it is damaged). Off the followed history is
	// offHistory's to say. Following "current" (tli 0), m's own timeline is followed.
	ownWindows := map[uint32]*window.Windows{}
	unusable := func(m *repo.Summary) (string, bool, error) {
		w := ws
		if tli == 0 {
			if w = ownWindows[m.Timeline]; w == nil {
				if w, err = windows(ctx, rp, arch, tls, backups, m.Timeline, summary); err != nil {
					return "", false, err
				}
				ownWindows[m.Timeline] = w
			}
		} else if !tls.onHistory(m, tli) {
			return "", false, nil
		}
		why, bad := w.Unusable[m.Name]
		return why, bad, nil
	}
	var readErr error
	reaches := func(m *repo.Summary) bool {
		if _, bad, err := unusable(m); err != nil || bad && reach.Verdict.Err == nil {
			readErr = err
			return false
		}
		switch t.Kind {
		case ToTime:
			return m.StopTime.Before(t.Time)
		case ToName:
			return m.StopLSN <= pointLSN
		case ToLSN:
			return m.StopLSN <= t.LSN
		case ToXID:
			// An xid that began before every usable backup may commit after the
			// oldest ends: the window check chose it (see window.Windows.Check).
			return m.NextXID <= t.XID || m.Name == reach.Verdict.Backup
		}
		return true
	}
	// toEnd is m's verdict to the end of the archive: refused when m's window ends
	// before archived WAL it cannot reach (see endCut).
	toEnd := func(m *repo.Summary) error {
		if t.Kind != ToEnd {
			return nil
		}
		w := ws
		if tli == 0 {
			w = ownWindows[m.Timeline]
		}
		if w == nil {
			return nil
		}
		return endCut(w, arch, m, name != "")
	}
	offHistory := func(m *repo.Summary) error {
		return fmt.Errorf("%w: backup %s (timeline %d, LSN %s to %s) does not lie on the history of %s before it branched off, so PostgreSQL could not follow it; %s; choose the timeline with --target-timeline N",
			ErrNoUsableBackup, m.Name, m.Timeline, m.StartLSN, m.StopLSN, tls.path(tli), tls.describe())
	}
	if name != "" {
		for _, m := range backups {
			if m.Name == name {
				if !tls.onHistory(m, tli) {
					return nil, nil, offHistory(m)
				}
				why, bad, err := unusable(m)
				if err != nil {
					return nil, nil, err
				}
				if bad && reach.Verdict.Err == nil {
					return nil, nil, fmt.Errorf("%w: backup %s cannot start this recovery: %s; pick another or drop --backup; %s",
						ErrNoUsableBackup, m.Name, why, win)
				}
				if !reaches(m) {
					return nil, nil, fmt.Errorf("%w: backup %s ends at %s (LSN %s), after the target %s; pick an older backup or drop --backup; %s",
						ErrNoUsableBackup, m.Name, m.StopTime.Format(time.RFC3339), m.StopLSN, t, win)
				}
				if !tls.onHistory(m, tli) {
					return nil, nil, offHistory(m)
				}
				if err := toEnd(m); err != nil {
					return nil, reach, err
				}
				return m, reach, nil
			}
		}
		return nil, nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", repo.ErrNoBackup, name)
	}
	var skipped *repo.Summary
	for i := len(backups) - 1; i >= 0; i-- {
		m := backups[i]
		if !reaches(m) {
			if readErr != nil {
				return nil, nil, readErr
			}
			continue
		}
		if tls.onHistory(m, tli) {
			if err := toEnd(m); err != nil {
				return nil, reach, err
			}
			return m, reach, nil
		}
		if skipped == nil {
			skipped = m
		}
	}
	if skipped != nil {
		return nil, reach, offHistory(skipped)
	}
	if t.Kind == ToEnd || t.Kind == ToImmediate {
		return nil, reach, fmt.Errorf("%w: no backup can become consistent; nothing was written; %s", ErrNoUsableBackup, win)
	}
	return nil, reach, fmt.Errorf("%w: the target %s is before the end of the oldest backup; %s", ErrNoUsableBackup, t, win)
}

// chooseFiles is the choice of backup-fetch: the backup named, or the newest. No
// recovery follows, so neither the archived WAL nor timelines limit it.
func chooseFiles(backups []*repo.Summary, name string) (*repo.Summary, *Reach, error) {
	if name == "" {
		return backups[len(backups)-1], nil, nil
	}
	for _, m := range backups {
		if m.Name == name {
			return m, nil, nil
		}
	}
	return nil, nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", repo.ErrNoBackup, name)
}

// segSize is the WAL segment size the backups record (16 MiB if they do not say).
func segSize(backups []*repo.Summary) uint64 {
	for _, m := range backups {
		if s := m.WALSegSize; s >= 1<<20 && s <= 1<<30 && s&(s-1) == 0 {
			return s
		}
	}
	return 16 << 20
}

// archive is what the repository's wal/ holds, as far as choosing a backup needs.
type archive struct {
	newest    string    // the segment furthest in the WAL ("" if none)
	stored    string    // the segment stored last
	storedAt  time.Time // when it was stored, as the store reports it
	segs      map[uint32][]segRef
	histories map[uint32]repo.WALObject
	dropped   []window.RecordedGap // WAL dropped on purpose (gap records)
}

// scanArchive lists the archived WAL.
func scanArchive(ctx context.Context, rp *repo.Repo, segSize uint64) (*archive, error) {
	a := &archive{segs: map[uint32][]segRef{}, histories: map[uint32]repo.WALObject{}}
	err := rp.ListWAL(ctx, func(o repo.WALObject) error {
		switch o.Kind {
		case wal.History:
			a.histories[o.Timeline] = o
			return nil
		case wal.Segment:
		default:
			return nil
		}
		// Listing is in key order: per timeline, segments come in WAL order.
		a.segs[o.Timeline] = append(a.segs[o.Timeline], segRef{name: o.Name, segNo: o.SegmentNumber(segSize), storedAt: o.Stored, size: o.Size})
		if order(o.Name) > order(a.newest) {
			a.newest = o.Name
		}
		if a.stored == "" || o.Stored.After(a.storedAt) {
			a.stored, a.storedAt = o.Name, o.Stored
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list archived WAL: %w", err)
	}
	if a.dropped, err = window.RecordedGaps(ctx, rp, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// windows computes the recoverable windows along timeline tli (0: the newest), reading
// WAL summaries through the repository's cache.
// summary, when not nil, reads the summaries instead of a new cache over rp.
func windows(ctx context.Context, rp *repo.Repo, a *archive, tls *timelines, backups []*repo.Summary, tli uint32,
	summary func(window.Segment) (*walsum.Summary, error)) (*window.Windows, error) {
	in := &window.Input{SegSize: segSize(backups), Backups: backups, Segments: map[uint32][]window.Segment{}, History: tls.history, Timeline: tli, Dropped: a.dropped}
	for t, segs := range a.segs {
		for _, sg := range segs {
			in.Segments[t] = append(in.Segments[t], window.Segment{Name: sg.name, Timeline: t, SegNo: sg.segNo, Size: sg.size, Stored: sg.storedAt})
		}
	}
	in.Summary = summary
	if in.Summary == nil {
		in.Summary = window.SummaryFrom(ctx, walsum.NewCache(rp, in.SegSize, nil))
	}
	return window.Compute(in)
}

// archiveOf is what scanArchive would find, from what window.Gather listed.
func archiveOf(g *window.Repository) *archive {
	a := &archive{segs: map[uint32][]segRef{}, histories: g.Histories, dropped: g.Dropped}
	for tli, segs := range g.Segments {
		for _, o := range segs {
			a.segs[tli] = append(a.segs[tli], segRef{name: o.Name, segNo: o.SegNo, storedAt: o.Stored, size: o.Size})
			if order(o.Name) > order(a.newest) {
				a.newest = o.Name
			}
			if a.stored == "" || o.Stored.After(a.storedAt) {
				a.stored, a.storedAt = o.Name, o.Stored
			}
		}
	}
	return a
}

// windowTarget is t as the window check takes it; false for targets it does not check
// (the end of the archive, immediate: every usable backup reaches them).
func windowTarget(t *Target, pointLSN wal.LSN) (window.Target, bool) {
	wt := window.Target{Exclusive: t.Exclusive, Text: t.String()}
	switch t.Kind {
	case ToTime:
		wt.Kind, wt.Time = window.ToTime, t.Time
	case ToName:
		wt.Kind, wt.LSN = window.ToName, pointLSN
	case ToLSN:
		wt.Kind, wt.LSN = window.ToLSN, t.LSN
	case ToXID:
		wt.Kind, wt.XID = window.ToXID, t.XID
	default:
		return wt, false
	}
	return wt, true
}

// LastArchived is the name of the newest archived WAL segment ("" if none).
func LastArchived(ctx context.Context, rp *repo.Repo) (string, error) {
	a, err := scanArchive(ctx, rp, segSize(nil)) // the name does not depend on the segment size
	if err != nil {
		return "", err
	}
	return a.newest, nil
}

// order sorts segment names by position, then timeline.
func order(name string) string {
	if len(name) < 24 {
		return ""
	}
	return name[8:24] + name[:8]
}

// FullXID resolves a transaction id to PostgreSQL's 64-bit full form (epoch << 32 |
// xid). A value of 2^32 or more already is one. A smaller value is the 32-bit form
// that PostgreSQL's logs, pg_waldump and pg_stat_activity show: it stands for the
// transaction with those low 32 bits nearest ref (within 2^31 either way, as
// PostgreSQL itself compares 32-bit xids), never one before epoch 0.
func FullXID(xid, ref uint64) uint64 {
	if xid >= 1<<32 {
		return xid
	}
	f := ref&^0xFFFFFFFF | xid
	switch {
	case f >= ref+1<<31 && f >= 1<<32:
		f -= 1 << 32
	case f+1<<31 < ref:
		f += 1 << 32
	}
	return f
}

// ChooseManifest is Choose followed by opening the chosen backup's manifest (see
// repo.OpenManifest: the caller closes it). Listing
// backups reads only their summaries, so a damaged manifest is found here: that backup
// is skipped (reported to skipped) and the choice made again among the others, as if
// the listing had found it damaged. A backup named by name that turns out damaged is
// refused.
func ChooseManifest(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, t *Target, name string,
	skipped func(repo.DamagedBackup)) (*repo.Manifest, error) {
	if t.Kind == ToXID && len(backups) > 0 {
		// Resolved once, against every backup listed: skipping a damaged one must not
		// move a 32-bit xid to another epoch.
		t.XID = FullXID(t.XID, backups[len(backups)-1].NextXID)
	}
	for {
		target := *t
		s, err := Choose(ctx, rp, backups, &target, name)
		if err != nil {
			return nil, err
		}
		m, err := rp.OpenManifest(ctx, s, "")
		if err == nil && m.Incremental() {
			// Restorable only with its whole chain, each backup of it listed (usable).
			if _, cerr := repo.Chain(backups, s.Name); cerr != nil {
				_ = m.Close() // not used
				err = fmt.Errorf("%w (%w)", cerr, repo.ErrDamagedBackup)
			}
		}
		if err == nil {
			*t = target
			return m, nil
		}
		if !errors.Is(err, repo.ErrDamagedBackup) && !errors.Is(err, repo.ErrNewerFormat) {
			return nil, err
		}
		if name != "" {
			return nil, fmt.Errorf("backup %s cannot be restored: %w; pick another (pgb backup-list shows them)", name, err)
		}
		skipped(repo.DamagedBackup{Name: s.Name, Err: err})
		backups = slices.DeleteFunc(slices.Clone(backups), func(b *repo.Summary) bool { return b == s })
	}
}
