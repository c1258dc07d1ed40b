// Package retention decides what a retention policy deletes from a repository (Plan,
// pure) and deletes it in an order that is safe to interrupt (Run).
//
// What is kept: the backups the policy keeps (never fewer than the newest one), every
// backup marked permanent, and every WAL file a kept backup needs. A kept backup needs
// all WAL from its start segment on, on every timeline (the end of its own timeline
// and the descendants its history reaches); Plan keeps, more simply, every WAL file
// whose segment is not older than the lowest start segment of the backups the policy
// keeps. A permanent backup older than that keeps the WAL it needs to become
// consistent: its start segment to its stop segment, on its timeline; so do the
// backups its chain builds on, which it keeps too. Timeline
// history files are always kept. Restore points before the lowest end of the kept
// backups can no longer be reached and are deleted with their WAL.
package retention

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// Policy says which backups to keep. Each set field keeps a run of the newest backups;
// with several set, a backup is kept when any of them keeps it.
type Policy struct {
	// RetainFull keeps the newest RetainFull full backups and every backup after them
	// (0: not set).
	RetainFull int
	// RetainDays keeps what recovery to any point of the last RetainDays days needs:
	// the newest backup that ended before now minus RetainDays days and every backup
	// after it (0: not set).
	RetainDays int
	// BeforeTime deletes the backups that ended before it (zero: not set).
	BeforeTime time.Time
	// BeforeBackup deletes the backups older than the named one (empty: not set).
	BeforeBackup string
}

// ErrNoPolicy means no policy was given: nothing would be deleted, and saying so is
// better than doing nothing silently.
var ErrNoPolicy = errors.New("no retention policy given")

// Set reports whether the policy says anything.
func (p Policy) Set() bool {
	return p.RetainFull > 0 || p.RetainDays > 0 || !p.BeforeTime.IsZero() || p.BeforeBackup != ""
}

// Backup is a backup as planning sees it.
type Backup struct {
	*repo.Summary
	Permanent bool
}

// Input is the repository as it stands.
type Input struct {
	Backups []Backup // any order
	WAL     []repo.WALObject
	// Streamed are the segments pgb wal-stream holds chunks of.
	Streamed      []repo.StreamedSegment
	RestorePoints []repo.RestorePoint
	Policy        Policy
	Now           time.Time
}

// Window is what remains recoverable after the plan: from the end of the oldest kept
// backup on.
type Window struct {
	FromBackup string
	FromTime   time.Time
	FromLSN    wal.LSN
	Timeline   uint32
}

// Plan is what a policy deletes.
type Plan struct {
	Keep   []Backup         // oldest first
	Delete []Backup         // oldest first
	WAL    []repo.WALObject // oldest first
	// Streamed are segments whose streamed chunks go with the WAL: older than every
	// kept backup needs (their chunks' bytes are not counted in Bytes).
	Streamed      []repo.StreamedSegment
	RestorePoints []repo.RestorePoint
	Bytes         int64  // stored bytes freed
	Window        Window // the zero Window when the repository has no backup
}

// Make plans what in decides to delete. It never deletes the newest backup, a
// permanent backup, a timeline history file or WAL a kept backup needs.
func Make(in Input) (Plan, error) {
	if !in.Policy.Set() {
		return Plan{}, ErrNoPolicy
	}
	bs := append([]Backup(nil), in.Backups...)
	sort.SliceStable(bs, func(i, j int) bool {
		if !bs[i].StopTime.Equal(bs[j].StopTime) {
			return bs[i].StopTime.Before(bs[j].StopTime)
		}
		return bs[i].StopLSN < bs[j].StopLSN
	})
	var p Plan
	if len(bs) == 0 {
		return p, nil // no backup: no WAL is known to be unneeded
	}
	first, err := firstKept(bs, in.Policy, in.Now)
	if err != nil {
		return Plan{}, err
	}
	// A chain is one unit: an incremental backup kept keeps every backup it builds on,
	// and with them the WAL from its full backup on, so that what status shows as
	// recoverable stays so. A permanent one keeps its chain's backups (not their WAL).
	index := make(map[string]int, len(bs))
	for i, b := range bs {
		index[b.Name] = i
	}
	ancestors := func(i int, fn func(int)) {
		for n := 0; bs[i].Parent != "" && n < repo.MaxChain; n++ {
			j, ok := index[bs[i].Parent]
			if !ok {
				return // a broken chain: nothing is needed by it
			}
			fn(j)
			i = j
		}
	}
	for i := len(bs) - 1; i >= first; i-- {
		ancestors(i, func(j int) { first = min(first, j) })
	}
	// A permanent backup older than what the policy keeps, and the backups of its chain
	// (bases it is restored from), keep the WAL each needs to become consistent.
	chainOfPermanent, consistent := map[int]bool{}, map[int]bool{}
	for i, b := range bs[:first] {
		if b.Permanent {
			consistent[i] = true
			ancestors(i, func(j int) { chainOfPermanent[j], consistent[j] = true, true })
		}
	}
	for i, b := range bs {
		if i >= first || b.Permanent || chainOfPermanent[i] {
			p.Keep = append(p.Keep, b)
			continue
		}
		p.Delete = append(p.Delete, b)
		p.Bytes += b.StoredSize
	}
	oldest := bs[first]
	p.Window = Window{FromBackup: oldest.Name, FromTime: oldest.StopTime, FromLSN: oldest.StopLSN, Timeline: oldest.Timeline}
	segSize := oldest.WALSegSize
	if segSize == 0 {
		return Plan{}, fmt.Errorf("backup %s has no WAL segment size", oldest.Name)
	}
	// A later backup can start at a lower LSN (on a timeline that branched off before
	// the oldest kept one started): the WAL kept starts at the lowest start of all kept.
	cutoff, reach := oldest.StartLSN.SegmentNumber(segSize), oldest.StopLSN
	for _, b := range bs[first:] {
		cutoff, reach = min(cutoff, b.StartLSN.SegmentNumber(segSize)), min(reach, b.StopLSN)
	}
	for _, o := range in.WAL {
		if o.Kind == wal.History || o.SegmentNumber(segSize) >= cutoff || needed(o, bs[:first], consistent, segSize) {
			continue
		}
		p.WAL = append(p.WAL, o)
		p.Bytes += o.Size
	}
	for _, st := range in.Streamed {
		o := repo.WALObject{File: st.File}
		if st.SegmentNumber(segSize) >= cutoff || needed(o, bs[:first], consistent, segSize) {
			continue
		}
		p.Streamed = append(p.Streamed, st)
	}
	sort.SliceStable(p.WAL, func(i, j int) bool {
		a, b := p.WAL[i].SegmentNumber(segSize), p.WAL[j].SegmentNumber(segSize)
		if a != b {
			return a < b
		}
		return p.WAL[i].Name < p.WAL[j].Name
	})
	for _, rp := range in.RestorePoints {
		if rp.LSN < reach {
			p.RestorePoints = append(p.RestorePoints, rp)
		}
	}
	return p, nil
}

// ConsistencyOnly names the backups of which a retention run may have kept only the
// WAL they need to become consistent (start to stop segment): the permanent backups,
// and the backups their chains build on, older than the oldest backup that is neither
// and than the newest backup's chain. Recovery from such a
// backup reaches its end and no further once a policy has run, so verify and status
// judge it by that. backups may be in any order; permanent holds the marked names.
func ConsistencyOnly(backups []*repo.Summary, permanent map[string]bool) map[string]bool {
	if len(backups) == 0 {
		return nil
	}
	bs := append([]*repo.Summary(nil), backups...)
	sort.SliceStable(bs, func(i, j int) bool {
		if !bs[i].StopTime.Equal(bs[j].StopTime) {
			return bs[i].StopTime.Before(bs[j].StopTime)
		}
		return bs[i].StopLSN < bs[j].StopLSN
	})
	byName := make(map[string]*repo.Summary, len(bs))
	for _, b := range bs {
		byName[b.Name] = b
	}
	kept := map[string]bool{} // permanent, or a base of a permanent backup's chain
	for _, b := range bs {
		if !permanent[b.Name] {
			continue
		}
		kept[b.Name] = true
		for p, n := byName[b.Parent], 0; p != nil && n < repo.MaxChain; p, n = byName[p.Parent], n+1 {
			kept[p.Name] = true
		}
	}
	// The newest backup is kept by every policy, with its chain and the WAL from the
	// chain's full backup on.
	index := make(map[string]int, len(bs))
	for i, b := range bs {
		index[b.Name] = i
	}
	edge := len(bs) - 1
	for p, n := byName[bs[edge].Parent], 0; p != nil && n < repo.MaxChain; p, n = byName[p.Parent], n+1 {
		edge = min(edge, index[p.Name])
	}
	for i, b := range bs[:edge] {
		if !kept[b.Name] {
			edge = i
			break
		}
	}
	out := map[string]bool{}
	for _, b := range bs[:edge] {
		out[b.Name] = true // all permanent: edge is the first that is not, or the newest
	}
	return out
}

// needed reports whether a backup among older that consistent names (by index) needs o
// to become consistent.
func needed(o repo.WALObject, older []Backup, consistent map[int]bool, segSize uint64) bool {
	n := o.SegmentNumber(segSize)
	for i, b := range older {
		if consistent[i] && o.Timeline == b.Timeline &&
			n >= b.StartLSN.SegmentNumber(segSize) && n <= b.StopLSN.SegmentNumber(segSize) {
			return true
		}
	}
	return false
}

// firstKept is the index of the oldest backup the policy keeps in bs (oldest first,
// not empty): never past the newest.
func firstKept(bs []Backup, p Policy, now time.Time) (int, error) {
	first := len(bs) - 1
	keep := func(i int) { first = min(first, max(i, 0)) }
	if p.RetainFull > 0 {
		// Full backups count: the RetainFull-th newest full one and all after it.
		i, fulls := 0, 0
		for j := len(bs) - 1; j >= 0; j-- {
			if !bs[j].Incremental() {
				if fulls++; fulls == p.RetainFull {
					i = j
					break
				}
			}
		}
		keep(i)
	}
	if p.RetainDays > 0 {
		edge := now.Add(-time.Duration(p.RetainDays) * 24 * time.Hour)
		i := 0 // none ended before the edge: keep them all
		for j, b := range bs {
			if !b.StopTime.After(edge) {
				i = j
			}
		}
		keep(i)
	}
	if !p.BeforeTime.IsZero() {
		i := len(bs) - 1
		for j := len(bs) - 1; j >= 0 && !bs[j].StopTime.Before(p.BeforeTime); j-- {
			i = j
		}
		keep(i)
	}
	if p.BeforeBackup != "" {
		i := -1
		for j, b := range bs {
			if b.Name == p.BeforeBackup {
				i = j
			}
		}
		if i < 0 {
			return 0, fmt.Errorf("%w %q (pgb backup-list shows the backups)", repo.ErrNoBackup, p.BeforeBackup)
		}
		keep(i)
	}
	return first, nil
}
