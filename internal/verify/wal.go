package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/retention"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/workpool"
)

// need is a run of segments of one timeline that recovery from a backup reads.
type need struct {
	tli      uint32
	from, to uint64 // segment numbers, inclusive
	backup   string // the backup that needs it (the first, when merged)
}

// walState is what the WAL check knows of the archive.
type walState struct {
	segSize uint64
	sysID   uint64
	hasID   bool
	hist    map[uint32][]wal.TimelineSpan // parsed .history files, by timeline
	present map[uint32][]uint64           // archived segment numbers by timeline, sorted
}

// segNo is the segment number of f (a segment, .partial or .backup file).
func (st *walState) segNo(f wal.File) uint64 { return f.SegmentNumber(st.segSize) }

// backupWAL checks, without --wal, that the backup's start..stop WAL is archived and
// sound.
func (v *verifier) backupWAL(ctx context.Context, s *repo.Summary) error {
	if walRangeProblem(s) != "" {
		return nil // reported with the backup
	}
	st := &walState{segSize: s.WALSegSize, hist: map[uint32][]wal.TimelineSpan{}}
	if err := v.identity(ctx, st); err != nil {
		return err
	}
	if s.Timeline > 1 {
		if err := v.readHistory(ctx, st, s.Timeline); err != nil {
			return err
		}
	}
	from, to := uint64(s.StartLSN)/st.segSize, uint64(s.StopLSN)/st.segSize
	perLog := uint64(1<<32) / st.segSize
	var objs []repo.WALObject
	err := v.r.ListWALRange(ctx, s.Timeline, uint32(from/perLog), uint32(to/perLog), func(o repo.WALObject) error {
		if o.Kind == wal.Segment && st.segNo(o.File) >= from && st.segNo(o.File) <= to {
			objs = append(objs, o)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.present = presence(st, objs)
	v.gaps(st, []need{{tli: s.Timeline, from: from, to: to, backup: s.Name}})
	return v.readAll(ctx, st, objs)
}

// maxBackupWAL bounds the WAL between a backup's start and stop: a summary claiming
// more is damaged, and believing it would list the archive log by log for ever.
const maxBackupWAL = 16 << 40

// walRangeProblem says what is implausible in a backup's WAL range, "" when nothing.
func walRangeProblem(s *repo.Summary) string {
	switch {
	case s.WALSegSize < 1<<20 || s.WALSegSize > 1<<30 || s.WALSegSize&(s.WALSegSize-1) != 0:
		return fmt.Sprintf("says WAL segments are %d bytes, not a power of two from 1 MiB to 1 GiB", s.WALSegSize)
	case s.StopLSN < s.StartLSN:
		return fmt.Sprintf("says the backup stops at %s, before it starts at %s", s.StopLSN, s.StartLSN)
	case uint64(s.StopLSN-s.StartLSN) > maxBackupWAL:
		return fmt.Sprintf("says the backup spans more than %d TiB of WAL (%s to %s)", maxBackupWAL>>40, s.StartLSN, s.StopLSN)
	}
	return ""
}

// wal checks the WAL archive: continuity from every checked backup's start, and every
// WAL object (only those the checked backup needs, with Options.Backup).
func (v *verifier) wal(ctx context.Context, backups []*repo.Summary) error {
	if !v.opt.WAL {
		return nil
	}
	if err := v.walObjects(ctx, backups); err != nil {
		return err
	}
	if v.opt.Backup != "" {
		return nil
	}
	return v.streamed(ctx)
}

// streamed reads every segment that only pgb wal-stream's chunks hold as wal-fetch
// serves it: each chunk to its verified end, the segment's header against its name.
func (v *verifier) streamed(ctx context.Context) error {
	whole := map[string]bool{}
	ss, err := v.r.ListWALAndStreamed(ctx, func(o repo.WALObject) error { whole[o.Name] = true; return nil })
	if err != nil {
		return err
	}
	for _, s := range ss {
		if whole[s.Name] {
			continue
		}
		v.nobj.Add(1)
		key := repo.WALKey(s.File) + ".stream/"
		sw, err := v.r.OpenStreamedWAL(ctx, s.File)
		if err == nil {
			_, err = io.Copy(io.Discard, sw)
			_ = sw.Close() // read-only: reading to the end verified it
		}
		switch {
		case errors.Is(err, repo.ErrNotStreamed):
			v.problem(key, "", "streamed chunks with none from the segment's start: wal-fetch cannot serve the segment")
		case errors.Is(err, repo.ErrCorrupt) || errors.Is(err, repo.ErrVanished):
			v.problem(key, "", "%v", err)
		case err != nil:
			return err
		}
	}
	return nil
}

// walObjects checks the archive's WAL objects (see wal).
func (v *verifier) walObjects(ctx context.Context, backups []*repo.Summary) error {
	st := &walState{hist: map[uint32][]wal.TimelineSpan{}}
	for _, s := range backups {
		if walRangeProblem(s) == "" {
			st.segSize = s.WALSegSize
			break
		}
	}
	if err := v.identity(ctx, st); err != nil {
		return err
	}
	var objs []repo.WALObject
	err := v.r.ListWAL(ctx, func(o repo.WALObject) error {
		objs = append(objs, o)
		return nil
	})
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.Kind == wal.History {
			v.nobj.Add(1)
			if err := v.readHistory(ctx, st, o.Timeline); err != nil {
				return err
			}
		}
	}
	if st.segSize == 0 {
		// No backup says the segment size: check every object on its own header.
		return v.readAll(ctx, st, objs)
	}
	st.present = presence(st, objs)
	permanent, err := v.r.PermanentBackups(ctx)
	if err != nil {
		return err
	}
	// What pgb delete keeps of an old permanent backup is the WAL to its end: that much
	// is checked of it, as for what retention keeps.
	toEnd := retention.ConsistencyOnly(v.all, permanent)
	var needs []need
	for _, s := range backups {
		switch {
		case walRangeProblem(s) != "": // reported with the backup
		case s.WALSegSize != st.segSize:
			v.problem(repo.SummaryKey(s.Name), s.Name, "says WAL segments are %d bytes, backup %s says %d: one cluster has one size",
				s.WALSegSize, backups[0].Name, st.segSize)
		case toEnd[s.Name]:
			needs = append(needs, need{tli: s.Timeline, from: uint64(s.StartLSN) / st.segSize, to: uint64(s.StopLSN) / st.segSize, backup: s.Name})
		default:
			needs = append(needs, v.chain(st, s)...)
		}
	}
	needs = merge(needs)
	v.gaps(st, needs)
	if v.opt.Backup != "" {
		objs = needed(st, objs, needs)
	}
	if !v.opt.Deep {
		return v.readAll(ctx, st, objs)
	}
	runs, covered := deepRuns(st, objs, needs)
	var rest []repo.WALObject
	for _, o := range objs {
		if !covered[o.Key] {
			rest = append(rest, o)
		}
	}
	if err := v.readAll(ctx, st, rest); err != nil {
		return err
	}
	return v.deep(ctx, st, runs)
}

// identity reads the repository's system identifier, which every segment header
// must carry.
func (v *verifier) identity(ctx context.Context, st *walState) error {
	id, err := v.r.Identity(ctx)
	switch {
	case err == nil:
		st.sysID, st.hasID = uint64(id.SystemID), true
	case ctx.Err() != nil:
		return context.Cause(ctx)
	default:
		// Unreadable for any reason: listing the WAL, which comes next, tells a
		// store that cannot be reached.
		v.problem(repo.IdentityKey, "", "%s", describe(err))
	}
	return nil
}

// readHistory reads and parses the history file of timeline tli into st.
func (v *verifier) readHistory(ctx context.Context, st *walState, tli uint32) error {
	key := repo.WALKey(wal.File{Name: fmt.Sprintf("%08X.history", tli), Kind: wal.History, Timeline: tli})
	b, err := v.r.ReadHistory(ctx, tli)
	if err != nil {
		if damage(err) || errors.Is(err, wal.ErrBadHistory) {
			v.problem(key, "", "%s", describe(err))
			return nil
		}
		return err
	}
	spans, err := wal.ParseHistory(tli, b)
	if err != nil {
		v.problem(key, "", "%s", err.Error())
		return nil
	}
	st.hist[tli] = spans
	return nil
}

// presence collects the archived segment numbers of each timeline, sorted.
func presence(st *walState, objs []repo.WALObject) map[uint32][]uint64 {
	out := map[uint32][]uint64{}
	for _, o := range objs {
		if o.Kind == wal.Segment {
			out[o.Timeline] = append(out[o.Timeline], st.segNo(o.File))
		}
	}
	for _, s := range out {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	}
	return out
}

// chain is the WAL recovery from backup s reads to reach the end of its own timeline
// and of every timeline that branched off it after the backup started, following
// each one's history: on each timeline of a path, the segments from where it begins
// (the backup's start on the first) to the one before the switch point, whose segment
// comes from the next timeline; on the last timeline, up to its last archived segment.
func (v *verifier) chain(st *walState, s *repo.Summary) []need {
	out := v.path(st, s, []wal.TimelineSpan{{TLI: s.Timeline, End: wal.EndOfTimeline}})
	for _, spans := range st.hist {
		for i, sp := range spans {
			if sp.TLI == s.Timeline && sp.End > s.StartLSN && sp.End != wal.EndOfTimeline {
				out = append(out, v.path(st, s, spans[i:])...)
				break
			}
		}
	}
	return out
}

// path is what recovery from backup s reads along one timeline path (see chain).
func (v *verifier) path(st *walState, s *repo.Summary, path []wal.TimelineSpan) []need {
	start := uint64(s.StartLSN) / st.segSize
	stop := uint64(s.StopLSN) / st.segSize
	var out []need
	for i, sp := range path {
		from := uint64(sp.Begin) / st.segSize
		if i == 0 {
			from = start
		}
		var to uint64
		if sp.End == wal.EndOfTimeline {
			seen := st.present[sp.TLI]
			if len(seen) == 0 || seen[len(seen)-1] < from {
				if sp.TLI != s.Timeline {
					continue // nothing archived on the newest timeline yet
				}
				to = stop
			} else {
				to = seen[len(seen)-1]
			}
			if sp.TLI == s.Timeline {
				to = max(to, stop)
			}
		} else {
			end := uint64(sp.End) / st.segSize
			if end == 0 {
				continue
			}
			to = end - 1
		}
		if from <= to {
			out = append(out, need{tli: sp.TLI, from: from, to: to, backup: s.Name})
		}
	}
	return out
}

// merge joins the overlapping or adjacent needs of each timeline.
func merge(ns []need) []need {
	sort.Slice(ns, func(i, j int) bool {
		if ns[i].tli != ns[j].tli {
			return ns[i].tli < ns[j].tli
		}
		return ns[i].from < ns[j].from
	})
	var out []need
	for _, n := range ns {
		if k := len(out) - 1; k >= 0 && out[k].tli == n.tli && n.from <= out[k].to+1 {
			out[k].to = max(out[k].to, n.to)
			continue
		}
		out = append(out, n)
	}
	return out
}

// gaps reports every run of needed segments the archive lacks, naming them.
func (v *verifier) gaps(st *walState, needs []need) {
	for _, n := range needs {
		seen := st.present[n.tli]
		i := sort.Search(len(seen), func(i int) bool { return seen[i] >= n.from })
		next := n.from
		for ; next <= n.to; i++ {
			if i < len(seen) && seen[i] <= n.to {
				if seen[i] > next {
					v.gap(st, n, next, seen[i]-1)
				}
				next = seen[i] + 1
				continue
			}
			v.gap(st, n, next, n.to)
			break
		}
		v.mu.Lock()
		v.rep.WALSegments += int(n.to - n.from + 1)
		v.mu.Unlock()
	}
}

func (v *verifier) gap(st *walState, n need, from, to uint64) {
	first := wal.SegmentFileName(n.tli, from, st.segSize)
	key := repo.WALKey(wal.File{Name: first, Kind: wal.Segment, Timeline: n.tli})
	if from == to {
		v.problem(key, n.backup, "missing from the archive: WAL segment %s, needed to recover from backup %s", first, n.backup)
		return
	}
	v.problem(key, n.backup, "missing from the archive: WAL segments %s to %s (%d segments), needed to recover from backup %s",
		first, wal.SegmentFileName(n.tli, to, st.segSize), to-from+1, n.backup)
}

// needed keeps the objects in the needed runs, and the history files.
func needed(st *walState, objs []repo.WALObject, needs []need) []repo.WALObject {
	var out []repo.WALObject
	for _, o := range objs {
		if o.Kind == wal.History {
			continue // read already
		}
		for _, n := range needs {
			if n.tli == o.Timeline && st.segNo(o.File) >= n.from && st.segNo(o.File) <= n.to {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// readAll reads every object (history files are read apart), concurrently.
func (v *verifier) readAll(ctx context.Context, st *walState, objs []repo.WALObject) error {
	var todo []repo.WALObject
	for _, o := range objs {
		if o.Kind != wal.History {
			todo = append(todo, o)
		}
	}
	return workpool.Run(ctx, v.opt.Concurrency, todo, func(ctx context.Context, ch <-chan repo.WALObject) error {
		buf := make([]byte, 256<<10)
		for o := range ch {
			if err := v.readWAL(ctx, st, o, buf); err != nil {
				return err
			}
		}
		return nil
	})
}

// maxBackupFile bounds a .backup history file, as wal-fetch does.
const maxBackupFile = 1 << 20

// readWAL decodes one WAL object to its end (the envelope checks size and checksum)
// and checks a segment's long page header against its name.
func (v *verifier) readWAL(ctx context.Context, st *walState, o repo.WALObject, buf []byte) error {
	_, err := v.readWALKeep(ctx, st, o, buf, nil)
	return err
}

// readWALKeep is readWAL that also writes the plain bytes read to keep, when not nil;
// ok says the object is sound (its problems are reported, not returned).
func (v *verifier) readWALKeep(ctx context.Context, st *walState, o repo.WALObject, buf []byte, keep io.Writer) (ok bool, err error) {
	obj, err := v.r.OpenWAL(ctx, o.File)
	if err != nil {
		if damage(err) {
			v.problem(o.Key, "", "%s", describe(err))
			return false, nil
		}
		return false, err
	}
	defer func() { _ = obj.Close() }() // read-only: reading to the end is what verifies
	v.nobj.Add(1)
	var r io.Reader = obj
	if keep != nil {
		r = io.TeeReader(obj, keep)
	}
	var bad string
	if o.Kind == wal.Backup {
		n, err := io.CopyBuffer(io.Discard, io.LimitReader(onlyReader{r}, maxBackupFile+1), buf)
		if err != nil {
			return false, v.walError(ctx, o, err)
		}
		if n > maxBackupFile {
			bad = fmt.Sprintf("a backup history file larger than %d bytes", maxBackupFile)
		}
	} else {
		bad, err = v.segment(st, o, r, buf)
		if err != nil {
			return false, v.walError(ctx, o, err)
		}
	}
	if bad != "" {
		v.problem(o.Key, "", "%s", bad)
		return false, nil
	}
	return true, nil
}

func (v *verifier) walError(ctx context.Context, o repo.WALObject, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if damage(err) || errors.Is(err, io.ErrUnexpectedEOF) {
		v.problem(o.Key, "", "%s", describe(err))
		return nil
	}
	return fmt.Errorf("%s: %w", o.Key, err)
}

// segment reads a segment (or .partial) to its end and says what is wrong with its
// header or size, "" when nothing.
func (v *verifier) segment(st *walState, o repo.WALObject, r io.Reader, buf []byte) (string, error) {
	head := make([]byte, wal.LongHeaderSize)
	n, err := io.ReadFull(r, head)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if _, err := io.Copy(io.Discard, r); err != nil { // the envelope may say more
			return "", err
		}
		return fmt.Sprintf("decodes to %d bytes: too short for a WAL segment", n), nil
	}
	if err != nil {
		return "", err
	}
	h, herr := wal.ParseSegmentHeader(head)
	limit := int64(1 << 30)
	if herr == nil {
		limit = int64(h.SegSize)
	}
	rest, err := io.CopyBuffer(io.Discard, io.LimitReader(onlyReader{r}, limit-int64(n)+1), buf)
	if err != nil {
		return "", err
	}
	if herr != nil {
		return herr.Error(), nil
	}
	if size := int64(n) + rest; size != int64(h.SegSize) {
		return fmt.Sprintf("decodes to %d bytes, its header says segments are %d bytes", size, h.SegSize), nil
	}
	return st.header(o, h), nil
}

// header says how the long page header h disagrees with the object's name and the
// repository, "" when it does not.
func (st *walState) header(o repo.WALObject, h wal.SegmentHeader) string {
	if st.hasID && h.SystemID != st.sysID {
		return fmt.Sprintf("header names system identifier %d, the repository's is %d", h.SystemID, st.sysID)
	}
	if st.segSize != 0 && uint64(h.SegSize) != st.segSize {
		return fmt.Sprintf("header says segments are %d bytes, the backups say %d", h.SegSize, st.segSize)
	}
	no := o.SegmentNumber(uint64(h.SegSize))
	if want := wal.LSN(no * uint64(h.SegSize)); h.PageAddr != want {
		return fmt.Sprintf("header says the segment starts at %s, its name says %s", h.PageAddr, want)
	}
	if h.Timeline != o.Timeline && !st.switchSegment(o.Timeline, h.Timeline, no, uint64(h.SegSize)) {
		return fmt.Sprintf("header names timeline %d, its name says %d", h.Timeline, o.Timeline)
	}
	return ""
}

// switchSegment reports whether segment no of timeline tli is where tli branched off
// its ancestor parent: PostgreSQL starts that segment with a copy of the parent's
// pages, whose headers name the parent.
func (st *walState) switchSegment(tli, parent uint32, no, segSize uint64) bool {
	for _, sp := range st.hist[tli] {
		if sp.TLI == parent && sp.End != wal.EndOfTimeline && uint64(sp.End)/segSize == no {
			return true
		}
	}
	return false
}
