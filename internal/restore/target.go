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
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: the repository %s has no backups (take one with pgb backup-push)", ErrNoUsableBackup, rp)
	}
	arch, err := scanArchive(ctx, rp, segSize(backups))
	if err != nil {
		return nil, err
	}
	tls, err := readTimelines(ctx, rp, arch, backups)
	if err != nil {
		return nil, err
	}
	tli, err := tls.target(t.Timeline)
	if err != nil {
		return nil, err
	}
	if t.Timeline == "" || t.Timeline == "latest" {
		if why := tls.forks(tli, segSize(backups)); len(why) > 0 {
			return nil, fmt.Errorf("%w: %s; %s; nothing was written: choose the history to restore with --target-timeline N",
				ErrAmbiguousTimeline, strings.Join(why, "; "), tls.describe())
		}
	}
	if tli != 0 {
		// Pin what was checked: PostgreSQL's own "latest" could see another timeline.
		t.Timeline = strconv.FormatUint(uint64(tli), 10)
	}
	win := window(backups, arch)
	var pointLSN wal.LSN
	if t.Kind == ToName {
		point, err := rp.ReadRestorePoint(ctx, t.Name)
		if err != nil {
			if errors.Is(err, repo.ErrNoRestorePoint) {
				return nil, fmt.Errorf("%w; %s", err, win)
			}
			return nil, err
		}
		pointLSN = point.LSN
		if tli != 0 && point.Timeline != 0 && !tls.holds(tli, point.Timeline, point.LSN) {
			return nil, fmt.Errorf("%w: restore point %q (timeline %d, LSN %s) is not on the history of %s, which recovery would follow and never meet it; restore it with --target-timeline %d",
				ErrTimeline, point.Name, point.Timeline, point.LSN, tls.path(tli), point.Timeline)
		}
	}
	if t.Kind == ToXID {
		// The newest backup's horizon is the reference for a 32-bit xid.
		t.XID = FullXID(t.XID, backups[len(backups)-1].NextXID)
	}
	if err := arch.reaches(t, segSize(backups)); err != nil {
		return nil, fmt.Errorf("%w; %s", err, win)
	}
	reaches := func(m *repo.Summary) bool {
		switch t.Kind {
		case ToTime:
			return m.StopTime.Before(t.Time)
		case ToName:
			return m.StopLSN <= pointLSN
		case ToLSN:
			return m.StopLSN <= t.LSN
		case ToXID:
			return m.NextXID <= t.XID
		}
		return true
	}
	offHistory := func(m *repo.Summary) error {
		return fmt.Errorf("%w: backup %s (timeline %d, LSN %s to %s) does not lie on the history of %s before it branched off, so PostgreSQL could not follow it; %s; choose the timeline with --target-timeline N",
			ErrNoUsableBackup, m.Name, m.Timeline, m.StartLSN, m.StopLSN, tls.path(tli), tls.describe())
	}
	if name != "" {
		for _, m := range backups {
			if m.Name == name {
				if !reaches(m) {
					return nil, fmt.Errorf("%w: backup %s ends at %s (LSN %s), after the target %s; pick an older backup or drop --backup; %s",
						ErrNoUsableBackup, m.Name, m.StopTime.Format(time.RFC3339), m.StopLSN, t, win)
				}
				if !tls.onHistory(m, tli) {
					return nil, offHistory(m)
				}
				return m, nil
			}
		}
		return nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", repo.ErrNoBackup, name)
	}
	var skipped *repo.Summary
	for i := len(backups) - 1; i >= 0; i-- {
		m := backups[i]
		if !reaches(m) {
			continue
		}
		if tls.onHistory(m, tli) {
			return m, nil
		}
		if skipped == nil {
			skipped = m
		}
	}
	if skipped != nil {
		return nil, offHistory(skipped)
	}
	return nil, fmt.Errorf("%w: the target %s is before the end of the oldest backup; %s", ErrNoUsableBackup, t, win)
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
		a.segs[o.Timeline] = append(a.segs[o.Timeline], segRef{name: o.Name, segNo: o.SegmentNumber(segSize), storedAt: o.Stored})
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
	return a, nil
}

// end is the LSN where the newest archived segment ends.
func (a *archive) end(segSize uint64) wal.LSN {
	f, err := wal.Parse(a.newest)
	if err != nil {
		return 0
	}
	return wal.LSN((f.SegmentNumber(segSize) + 1) * segSize)
}

// storedTimePrecision is how coarse a store may keep an object's time: S3's
// Last-Modified has whole seconds, so a segment "stored at 22:05:31" may hold commits
// of 22:05:31.9.
const storedTimePrecision = time.Second

// reaches refuses a time or LSN target that lies past the archived WAL. (A time
// between the last archived commit and the time its segment was stored passes; the
// exact check needs a WAL reader.)
func (a *archive) reaches(t *Target, segSize uint64) error {
	if a.newest == "" {
		return nil
	}
	switch {
	case t.Kind == ToTime && t.Time.After(a.storedAt.Add(storedTimePrecision)):
		return fmt.Errorf("%w: the target %s is after the newest archived WAL (segment %s, stored at %s): PostgreSQL would replay it all and stop without reaching the target",
			ErrBeyondArchive, t, a.stored, a.storedAt.UTC().Format(time.RFC3339))
	case t.Kind == ToLSN && t.LSN > a.end(segSize):
		return fmt.Errorf("%w: the target %s is past the end of the newest archived WAL (segment %s ends at LSN %s): PostgreSQL would replay it all and stop without reaching the target",
			ErrBeyondArchive, t, a.newest, a.end(segSize))
	}
	return nil
}

// window describes the recoverable window: from the end of the oldest backup to the
// newest archived WAL.
func window(backups []*repo.Summary, a *archive) string {
	if len(backups) == 0 {
		return "there are no backups"
	}
	first := backups[0]
	s := fmt.Sprintf("the recoverable window starts at %s (LSN %s, end of backup %s)",
		first.StopTime.Format(time.RFC3339), first.StopLSN, first.Name)
	if a.newest != "" {
		s += fmt.Sprintf(" and runs to the end of archived WAL segment %s (LSN %s; the last segment was stored at %s)",
			a.newest, a.end(segSize(backups)), a.storedAt.UTC().Format(time.RFC3339))
	}
	return s
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

// ChooseManifest is Choose followed by reading the chosen backup's manifest. Listing
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
		m, err := rp.Manifest(ctx, s)
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
