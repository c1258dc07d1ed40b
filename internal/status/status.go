// Package status reports what a repository can recover to (pgb status): the
// recoverable windows first, then the timelines, gaps, backups and restore points, and
// how old the newest archived WAL is. With a target it says whether restore can reach
// it — by running restore's own check (restore.Check), so the two never disagree.
package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/walsum"
	"github.com/pgb-project/pgb/internal/window"
)

// Report is pgb status's answer; its JSON form is documented in docs/status.md and
// kept stable.
type Report struct {
	Repository       string           `json:"repository"`
	Time             time.Time        `json:"time"`
	SystemIdentifier string           `json:"system_identifier,omitempty"`
	PGVersion        int              `json:"pg_version,omitempty"`
	SegmentSize      uint64           `json:"wal_segment_size"`
	Timeline         uint32           `json:"timeline"`
	TimelinePath     []uint32         `json:"timeline_path"`
	Windows          []*window.Window `json:"windows"`
	Gaps             []window.Gap     `json:"gaps"`
	Damaged          []window.Damaged `json:"damaged_segments,omitempty"`
	NewestWAL        *NewestWAL       `json:"newest_wal,omitempty"`
	Timelines        []Timeline       `json:"timelines"`
	Backups          []Backup         `json:"backups"`
	RestorePoints    []RestorePoint   `json:"restore_points"`
	Summaries        Summaries        `json:"summaries"`
	Target           *TargetReport    `json:"target,omitempty"`
	// Drills: the last successful drill, a failed one after it, and the warning
	// when there is none or it is too old (docs/status.md, "Drills").
	Drills *Drills `json:"drills,omitempty"`
	// Verifies: the last pgb verify and the last that passed (docs/status.md).
	Verifies *Verifies `json:"verifies,omitempty"`
	// Warnings are what status warns about (the exit status stays 0).
	Warnings []string `json:"warnings"`

	// FilledGaps are recorded drops whose every segment is archived all the same.
	FilledGaps []window.Gap `json:"filled_gaps,omitempty"`
	// Archiver is the archiver on this host, when status runs with a data directory.
	Archiver *Archiver `json:"archiver,omitempty"`
	// Encryption: which keys read the objects, when any is encrypted.
	Encryption *EncryptionReport `json:"encryption,omitempty"`
}

// NewestWAL is the newest archived segment on the followed timeline's history.
type NewestWAL struct {
	Segment    string    `json:"segment"`
	Stored     time.Time `json:"stored"`
	AgeSeconds float64   `json:"age_seconds"` // the RPO if the primary were lost now
}

// Timeline is one timeline the repository holds.
type Timeline struct {
	Timeline     uint32  `json:"timeline"`
	FirstSegment string  `json:"first_segment,omitempty"`
	LastSegment  string  `json:"last_segment,omitempty"`
	Segments     int     `json:"segments"`
	Parent       uint32  `json:"parent,omitempty"`
	BranchLSN    wal.LSN `json:"branch_lsn,omitempty"`
	OnPath       bool    `json:"followed"`
}

// Backup is one backup as status sees it.
type Backup struct {
	Name      string    `json:"name"`
	Timeline  uint32    `json:"timeline"`
	StartLSN  wal.LSN   `json:"start_lsn"`
	StopLSN   wal.LSN   `json:"stop_lsn"`
	StartTime time.Time `json:"start_time"`
	StopTime  time.Time `json:"stop_time"`
	Permanent bool      `json:"permanent"`
	Usable    bool      `json:"usable"`
	Why       string    `json:"why_unusable,omitempty"`
	// RecipientSet is the recipient set its parts and manifest are encrypted to
	// (EncryptionReport); "": not encrypted.
	RecipientSet string `json:"recipient_set,omitempty"`
	// CorruptPages counts the pages that failed their data checksum when backup-push
	// read them: the backup holds them damaged.
	CorruptPages int `json:"corrupt_pages,omitempty"`
	// Parent names the backup an incremental backup builds on ("": a full backup);
	// StoredSize is the backup's own parts.
	Parent     string `json:"parent,omitempty"`
	StoredSize int64  `json:"stored_size"`
}

// RestorePoint is a restore point made with pgb restore-point.
type RestorePoint struct {
	Name      string    `json:"name"`
	LSN       wal.LSN   `json:"lsn"`
	Timeline  uint32    `json:"timeline"`
	Time      time.Time `json:"time"`
	Reachable bool      `json:"reachable"`
}

// Summaries says how many WAL summaries status read, and how many it had to compute.
type Summaries struct {
	Read     int `json:"read"`
	Computed int `json:"computed"`
}

// TargetReport is the answer to --at/--name/--lsn/--xid.
type TargetReport struct {
	Target string `json:"target"`
	window.Verdict
	Error string `json:"error,omitempty"`
	// RTOEstimate is how long recovery to the target would take, when reachable.
	RTOEstimate *Estimate `json:"rto_estimate,omitempty"`
}

// Archiver is what the data directory says about archiving: the backlog PostgreSQL
// has not archived yet, and the segments wal-push-queue-max dropped that the
// repository does not record yet.
type Archiver struct {
	DataDir string `json:"data_directory"`
	archive.Backlog
	// PendingDrops are dropped segments recorded only in the data directory (the next
	// wal-push that succeeds records them in the repository).
	PendingDrops []string `json:"pending_drops"`
}

// Options say what to report.
type Options struct {
	Now    time.Time
	Target *restore.Target // nil: no target to check
	Log    *slog.Logger
	// Drills: read the drill records (the last successful drill, the warning, the
	// RTO estimate of a target). pgb status does; a drill's own look at the window
	// does not.
	Drills bool
	// DrillMaxAge: a last successful drill older than this is a warning (0:
	// DefaultDrillMaxAge).
	DrillMaxAge time.Duration
	// DataDir, when set, is the data directory of the cluster on this host: status
	// then reports its archiver backlog and pending drops (Report.Archiver).
	DataDir string
}

// Gather builds the report for rp.
func Gather(ctx context.Context, rp *repo.Repo, opt Options) (*Report, error) {
	r := &Report{Repository: rp.String(), Time: opt.Now.UTC(), Gaps: []window.Gap{}, Timelines: []Timeline{}, Backups: []Backup{},
		RestorePoints: []RestorePoint{}, Warnings: []string{}}
	id, err := rp.Identity(ctx)
	switch {
	case err == nil:
		r.SystemIdentifier, r.PGVersion = fmt.Sprint(id.SystemID), id.PGVersion
	case errors.Is(err, repo.ErrNoIdentity), errors.Is(err, storage.ErrNotExist):
		// Nothing archived yet: the report says so.
	default:
		return nil, err
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	g, err := window.Gather(ctx, rp, nil, opt.Log)
	if err != nil {
		return nil, err
	}
	for _, d := range g.Damaged {
		opt.Log.Warn("damaged backup: restore skips it", "backup", d.Name, "reason", d.Err.Error())
	}
	g.Summary = memoSummaries(g.Summary) // read once, for status and restore's check
	ws, err := window.Compute(&g.Input)
	if err != nil {
		return nil, err
	}
	r.fill(g, ws, opt.Now)
	if err := r.gatherEncryption(ctx, rp, g); err != nil {
		return nil, err
	}
	if opt.DataDir != "" {
		r.Archiver = archiverOf(opt.DataDir, r.SystemIdentifier, &r.Warnings)
	}
	points, err := rp.ListRestorePoints(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range points {
		// As restore --target-name: on the followed history, then inside a window.
		reachable := p.Timeline == 0 || restore.OnHistory(g.Ancestry(ws.Timeline), p.Timeline, p.LSN)
		if reachable {
			reachable = ws.Check(window.Target{Kind: window.ToName, LSN: p.LSN}).Reachable
		}
		r.RestorePoints = append(r.RestorePoints, RestorePoint{Name: p.Name, LSN: p.LSN, Timeline: p.Timeline, Time: p.Time.UTC(), Reachable: reachable})
	}
	var successes []*repo.DrillRecord
	if opt.Drills {
		drills, ok, err := gatherDrills(ctx, rp, opt.Now, opt.DrillMaxAge)
		if err != nil {
			return nil, err
		}
		r.Drills, successes = drills, ok
		if r.Verifies, err = gatherVerifies(ctx, rp, opt.Now); err != nil {
			return nil, err
		}
		for _, w := range []string{drills.Warning, drills.FutureWarning, drills.UnreadWarning} {
			if w != "" {
				r.Warnings = append(r.Warnings, w)
			}
		}
	}
	if opt.Target != nil {
		t := *opt.Target
		tr := &TargetReport{Target: t.String()}
		reach, err := restore.CheckGathered(ctx, rp, g, &t)
		if errors.Is(err, restore.ErrNoUsableBackup) || errors.Is(err, restore.ErrTimeline) || errors.Is(err, repo.ErrNoRestorePoint) {
			// No backups at all, a restore point off the followed timeline's history or
			// unknown, a timeline not in the repository: unreachable, not a failure to
			// read.
			reach, err = &restore.Reach{Verdict: window.Verdict{Err: err, Reason: err.Error()}}, nil
		}
		if err != nil {
			return nil, err
		}
		tr.Target = t.String()
		tr.Verdict = reach.Verdict
		if reach.Verdict.Err != nil {
			tr.Error = reach.Verdict.Err.Error()
		}
		if reach.Backup != nil {
			tr.Backup = reach.Backup.Name
			if tr.Reachable && opt.Drills {
				tr.RTOEstimate = EstimateRTO(successes, reach.Backup.Size, walBetween(reach.Backup.StartLSN, replayEnd(reach.Verdict, reach.Backup, g.SegSize)))
			}
		}
		r.Target = tr
	}
	r.Summaries = Summaries{Read: ws.SummariesRead, Computed: g.Cache.Stats.Computed}
	return r, nil
}

func (r *Report) fill(g *window.Repository, ws *window.Windows, now time.Time) {
	r.SegmentSize, r.Timeline, r.TimelinePath = g.SegSize, ws.Timeline, ws.Path
	r.Windows, r.Damaged, r.FilledGaps = ws.Windows, ws.Damaged, ws.Filled
	if ws.Gaps != nil {
		r.Gaps = ws.Gaps
	}
	for _, gap := range ws.Gaps {
		if gap.Dropped {
			r.Warnings = append(r.Warnings, "WAL was dropped (wal-push-queue-max): the recoverable window is cut there, and no restore can cross it (see Gaps); a new base backup starts a new window")
			break
		}
	}
	if r.Windows == nil {
		r.Windows = []*window.Window{}
	}
	if n := ws.Newest; n != nil {
		age := now.Sub(n.Stored).Round(time.Second)
		if age < -clockSkewWarning {
			r.Warnings = append(r.Warnings, fmt.Sprintf("the newest WAL was stored %s after this host's time (%s): the clocks of this host and of the store differ; age shown as 0",
				ageText(-age.Seconds()), now.UTC().Format(time.RFC3339)))
		}
		// The store's clock ahead of this host's: the age is 0, never negative (a
		// drill records it, and an age below 0 means nothing).
		r.NewestWAL = &NewestWAL{Segment: n.Name, Stored: n.Stored.UTC(), AgeSeconds: max(age, 0).Seconds()}
	}
	on := map[uint32]bool{}
	for _, t := range ws.Path {
		on[t] = true
	}
	tlis := map[uint32]bool{}
	for t := range g.Segments {
		tlis[t] = true
	}
	for t := range g.History {
		tlis[t] = true
	}
	for _, b := range g.Backups {
		tlis[b.Timeline] = true
	}
	for t := range tlis {
		tl := Timeline{Timeline: t, OnPath: on[t], Segments: len(g.Segments[t])}
		if segs := g.Segments[t]; len(segs) > 0 {
			tl.FirstSegment, tl.LastSegment = segs[0].Name, segs[len(segs)-1].Name
		}
		if h := g.History[t]; len(h) > 1 {
			p := h[len(h)-2]
			tl.Parent, tl.BranchLSN = p.TLI, p.End
		}
		r.Timelines = append(r.Timelines, tl)
	}
	sort.Slice(r.Timelines, func(i, j int) bool { return r.Timelines[i].Timeline < r.Timelines[j].Timeline })
	for _, b := range g.Backups {
		why, bad := ws.Unusable[b.Name]
		bk := Backup{Name: b.Name, Timeline: b.Timeline, StartLSN: b.StartLSN, StopLSN: b.StopLSN,
			StartTime: b.StartTime.UTC(), StopTime: b.StopTime.UTC(), Permanent: g.Permanent[b.Name], Usable: !bad, Why: why,
			CorruptPages: max(b.CorruptPages, 0), Parent: b.Parent, StoredSize: b.StoredSize}
		if b.Encryption != nil {
			bk.RecipientSet = b.Encryption.RecipientSet
		}
		r.Backups = append(r.Backups, bk)
	}
}

// archiverOf reads the archiver's state in dataDir; what cannot be read is a
// warning, not a failure of status.
func archiverOf(dataDir, systemID string, warnings *[]string) *Archiver {
	c, err := pg.ReadControl(dataDir)
	if err != nil {
		*warnings = append(*warnings, fmt.Sprintf("the archiver of %s is not shown: %v", dataDir, err))
		return nil
	}
	if systemID != "" && fmt.Sprint(c.SystemID) != systemID {
		// Another cluster's data directory (several on this host): its backlog says
		// nothing about this repository.
		return nil
	}
	a := &Archiver{DataDir: dataDir, PendingDrops: []string{}}
	bl, err := archive.ReadBacklog(dataDir)
	if err != nil {
		*warnings = append(*warnings, fmt.Sprintf("the archiver backlog of %s could not be read: %v", dataDir, err))
	}
	a.Backlog = bl
	drops, err := archive.PendingDrops(dataDir)
	if err != nil {
		*warnings = append(*warnings, fmt.Sprintf("the drop records of %s could not be read: %v", dataDir, err))
	}
	for _, d := range drops {
		a.PendingDrops = append(a.PendingDrops, d.Segment)
	}
	if len(drops) > 0 {
		*warnings = append(*warnings, fmt.Sprintf("%d WAL segments were dropped by wal-push-queue-max and are not yet recorded in the repository (the next wal-push that succeeds records them): point-in-time recovery across them is not possible", len(drops)))
	}
	return a
}

// clockSkewWarning is how far ahead of this host's clock the store may stamp the
// newest WAL before status warns about the clocks (a second or two is ordinary).
const clockSkewWarning = time.Minute

// memoSummaries remembers what f returned for each segment, so that the windows
// status computes and restore's check share their reads.
func memoSummaries(f func(window.Segment) (*walsum.Summary, error)) func(window.Segment) (*walsum.Summary, error) {
	type result struct {
		s   *walsum.Summary
		err error
	}
	seen := map[string]result{}
	return func(s window.Segment) (*walsum.Summary, error) {
		if r, ok := seen[s.Name]; ok {
			return r.s, r.err
		}
		sum, err := f(s)
		seen[s.Name] = result{sum, err}
		return sum, err
	}
}

// WindowEnd is how far the window w of r reaches, as restore checks a target against
// it, and whether that is exact: its last commit when one was found and the scan was
// complete. Otherwise it is a lower bound ("at least", as the text says): the last
// commit was not looked up (NoCommitIn), the newest summaries could not be made
// (Unsummarised), or no commit was archived after the window's backup (its end).
func (r *Report) WindowEnd(w *window.Window) (end time.Time, exact bool) {
	return w.EndTime(), w.LastCommit != nil && w.NoCommitIn == 0 && w.Unsummarised == ""
}
