package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pgb-project/pgb/internal/bytesize"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/spool"
	"github.com/pgb-project/pgb/internal/wal"
)

// wal-push-queue-max: a user may choose to drop WAL rather than let pg_wal fill up
// while the repository is unreachable. A segment is dropped only when its push failed
// and the archiver backlog (the WAL files in pg_wal with a .ready status) exceeds the
// limit. Each drop is logged as an error and recorded durably in the data directory
// (pg_wal/pgb/dropped/<segment>.json) before wal-push exits 0; the next wal-push that
// succeeds publishes the records to the repository as gap records (repo.GapRecord),
// which status and restore read: the recoverable window never spans a dropped
// segment.

// DroppedDir is the spool directory (pg_wal/pgb/<DroppedDir>) of the local drop records.
const DroppedDir = "dropped"

// Backlog is the archiver's backlog in a data directory: the WAL files PostgreSQL has
// marked ready to archive (pg_wal/archive_status/<name>.ready) and that are still in
// pg_wal.
type Backlog struct {
	Files int   `json:"ready_files"`
	Bytes int64 `json:"ready_bytes"`
	// Oldest is the oldest WAL segment waiting ("" when none is a segment).
	Oldest string `json:"oldest_ready,omitempty"`
}

// ReadBacklog counts the archiver backlog of dataDir: one listing of
// pg_wal/archive_status and one stat per .ready file. A file whose status says ready
// but that is gone (archived and recycled meanwhile) is not counted; nor is any name
// that is not a WAL file's.
func ReadBacklog(dataDir string) (Backlog, error) {
	walDir := filepath.Join(dataDir, "pg_wal")
	entries, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		return Backlog{}, fmt.Errorf("count the archiver backlog: %w", err)
	}
	var b Backlog
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok {
			continue
		}
		f, err := wal.Parse(name)
		if err != nil {
			continue
		}
		fi, err := os.Lstat(filepath.Join(walDir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return Backlog{}, fmt.Errorf("count the archiver backlog: %w", err)
		}
		b.Files++
		b.Bytes += fi.Size()
		if f.Kind == wal.Segment && (b.Oldest == "" || walOrder(name) < walOrder(b.Oldest)) {
			b.Oldest = name
		}
	}
	return b, nil
}

// walOrder sorts segment names in WAL order across timelines: position first.
func walOrder(seg string) string { return seg[8:24] + seg[:8] }

// QueueMax applies wal-push-queue-max to a failed push.
type QueueMax struct {
	// Limit is wal-push-queue-max in bytes; 0 means never drop.
	Limit int64
	// DataDir is the data directory whose pg_wal holds the backlog; "" when unknown.
	DataDir string
	Host    string
	Version string
	Log     *slog.Logger
	Now     func() time.Time
}

// DropRecord is the local record of one dropped segment, written before wal-push
// exits 0 for it.
type DropRecord struct {
	Format       int       `json:"format"`
	Segment      string    `json:"segment"`
	SegmentSize  uint64    `json:"segment_size"`
	Dropped      time.Time `json:"dropped"`
	BacklogFiles int       `json:"backlog_files"`
	BacklogBytes int64     `json:"backlog_bytes"`
	LimitBytes   int64     `json:"limit_bytes"`
	Error        string    `json:"error"`
	Host         string    `json:"host,omitempty"`
	Version      string    `json:"pgb_version,omitempty"`

	// Damaged says why the record's file did not read (its name is still the fact).
	Damaged string `json:"-"`
}

// dropRecordLimit bounds what a local drop record may hold.
const dropRecordLimit = 64 << 10

// ApplyAfterFailure decides what a push of the file at path that failed with pushErr
// becomes. It returns nil when the segment is dropped: the archiver backlog exceeds
// the limit, the drop is recorded durably and logged as an error, and wal-push may exit
// 0 so that PostgreSQL recycles the segment. Otherwise it returns pushErr, wrapped with
// why nothing was dropped when the limit is set.
func (q *QueueMax) ApplyAfterFailure(path string, pushErr error) error {
	if q.Limit <= 0 || pushErr == nil {
		return pushErr
	}
	f, err := wal.Parse(filepath.Base(path))
	if err != nil {
		return pushErr
	}
	if f.Kind != wal.Segment {
		return fmt.Errorf("%w (wal-push-queue-max drops only WAL segments, never a %s)", pushErr, f.Kind)
	}
	if q.DataDir == "" {
		return fmt.Errorf("%w (wal-push-queue-max cannot apply: no data directory to count the archiver backlog in; run wal-push from the data directory, as archive_command does, or set --pgdata)", pushErr)
	}
	bl, err := ReadBacklog(q.DataDir)
	if err != nil {
		return fmt.Errorf("%w (wal-push-queue-max cannot apply: %w)", pushErr, err)
	}
	if bl.Bytes <= q.Limit {
		return fmt.Errorf("%w (archiver backlog %s in %d files, within wal-push-queue-max %s: nothing dropped, PostgreSQL retries)",
			pushErr, bytesize.Text(bl.Bytes), bl.Files, bytesize.Text(q.Limit))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w (wal-push-queue-max: the segment was not dropped: %w)", pushErr, err)
	}
	rec := DropRecord{
		Format: 1, Segment: f.Name, SegmentSize: uint64(fi.Size()), Dropped: q.now().UTC(),
		BacklogFiles: bl.Files, BacklogBytes: bl.Bytes, LimitBytes: q.Limit, Error: pushErr.Error(),
		Host: q.Host, Version: q.Version,
	}
	if err := writeDropRecord(q.DataDir, rec); err != nil {
		return fmt.Errorf("%w (wal-push-queue-max: the segment was not dropped, because its drop could not be recorded: %w)", pushErr, err)
	}
	q.Log.Error("WAL DROPPED by wal-push-queue-max: the push failed and the archiver backlog exceeds the limit; point-in-time recovery across this segment is no longer possible",
		"segment", f.Name, "backlog", bytesize.Text(bl.Bytes), "backlog_files", bl.Files, "limit", bytesize.Text(q.Limit), "error", pushErr.Error())
	return nil
}

func (q *QueueMax) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

// writeDropRecord stores rec durably as pg_wal/pgb/dropped/<segment>.json.
func writeDropRecord(dataDir string, rec DropRecord) error {
	dir, err := spool.Open(dataDir, DroppedDir)
	if err != nil {
		return err
	}
	js, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	out, err := atomicfile.Create(filepath.Join(dir, rec.Segment+".json"), 0o600)
	if err != nil {
		return err
	}
	defer out.Abort()
	if _, err := out.Write(js); err != nil {
		return err
	}
	return out.Commit()
}

// droppedPath is where the local drop records of dataDir are.
func droppedPath(dataDir string) string {
	return filepath.Join(dataDir, "pg_wal", spool.Dir, DroppedDir)
}

// HasPendingDrops reports whether dataDir holds drop records not yet published: one
// directory read, none when the directory does not exist (the common case).
func HasPendingDrops(dataDir string) bool {
	d, err := os.Open(droppedPath(dataDir))
	if err != nil {
		return false
	}
	defer func() { _ = d.Close() }() // read-only
	for {
		names, err := d.Readdirnames(64)
		for _, n := range names {
			if _, ok := dropRecordName(n); ok {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// dropRecordName is the segment a local drop record's file name names.
func dropRecordName(file string) (string, bool) {
	seg, ok := strings.CutSuffix(file, ".json")
	if !ok {
		return "", false
	}
	f, err := wal.Parse(seg)
	if err != nil || f.Kind != wal.Segment {
		return "", false
	}
	return seg, true
}

// PendingDrops reads the local drop records of dataDir, in WAL order. A record whose
// file does not read is returned with Damaged set and only its name's facts: the
// segment it names was dropped all the same. No directory: none. It only reads (pgb
// status may run as another user than PostgreSQL's), and follows no link pgb did not
// make: pg_wal/pgb and pg_wal/pgb/dropped must be real directories.
func PendingDrops(dataDir string) ([]DropRecord, error) {
	dir := droppedPath(dataDir)
	for _, d := range []string{filepath.Dir(dir), dir} {
		fi, err := os.Lstat(d)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the drop records: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("read the drop records: %s is not a directory pgb made (a symbolic link or a file)", d)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the drop records: %w", err)
	}
	var out []DropRecord
	for _, e := range entries {
		seg, ok := dropRecordName(e.Name())
		if !ok {
			continue
		}
		rec, err := readDropRecord(filepath.Join(dir, e.Name()))
		if err == nil && rec.Segment != seg {
			err = fmt.Errorf("it names segment %q", rec.Segment)
		}
		if err != nil {
			rec = DropRecord{Segment: seg, Damaged: err.Error()}
			if fi, err := e.Info(); err == nil {
				rec.Dropped = fi.ModTime().UTC()
			}
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return walOrder(out[i].Segment) < walOrder(out[j].Segment) })
	return out, nil
}

// readDropRecord reads one local record, never following a link, at most
// dropRecordLimit bytes.
func readDropRecord(path string) (DropRecord, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return DropRecord{}, err
	}
	defer func() { _ = f.Close() }() // read-only
	fi, err := f.Stat()
	if err != nil {
		return DropRecord{}, err
	}
	if !fi.Mode().IsRegular() {
		return DropRecord{}, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, dropRecordLimit+1))
	if err != nil {
		return DropRecord{}, err
	}
	if len(b) > dropRecordLimit {
		return DropRecord{}, fmt.Errorf("larger than %d bytes", dropRecordLimit)
	}
	var rec DropRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return DropRecord{}, err
	}
	if rec.Dropped.IsZero() {
		return DropRecord{}, errors.New("no drop time")
	}
	return rec, nil
}

// maxGapsPerPublish bounds the gap records one PublishDrops writes: the rest wait
// for the next push, so that a long outage's records never hold one push up for long.
const maxGapsPerPublish = 64

// fallbackSegSize is the segment size assumed for a damaged record when no other
// record says: the smallest PostgreSQL allows, under which every segment name is valid.
const fallbackSegSize = 1 << 20

// PublishDrops records the pending drops of dataDir in the repository, as gap records
// (one per run of consecutive segments), and removes each local record once the gap
// that holds it is stored. It returns how many segments it published. On error the
// records not yet published stay, for the next push to publish.
func PublishDrops(ctx context.Context, rp *repo.Repo, dataDir string, log *slog.Logger) (int, error) {
	dir, err := spool.Open(dataDir, DroppedDir) // this process removes the records: they must be its own
	if err != nil {
		return 0, err
	}
	recs, err := PendingDrops(dataDir)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	published := 0
	for i, g := range dropRanges(recs) {
		if i == maxGapsPerPublish {
			log.Warn("more dropped WAL to record than one push records: the rest follows with the next pushes", "left", len(recs)-published)
			break
		}
		key, err := rp.PutGap(ctx, g.record)
		if err != nil {
			return published, err
		}
		for _, r := range g.members {
			if err := os.Remove(filepath.Join(dir, r.Segment+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return published, fmt.Errorf("the gap is recorded in %s, but its local record could not be removed (it will be recorded again, harmlessly): %w", key, err)
			}
		}
		if err := atomicfile.SyncDir(dir); err != nil {
			return published, err
		}
		published += len(g.members)
		log.Info("recorded dropped WAL in the repository", "gap", key, "segments", g.record.Segments)
	}
	return published, nil
}

type dropRange struct {
	record  repo.GapRecord
	members []DropRecord
}

// dropRanges groups records (in WAL order) into runs of consecutive segments of one
// timeline and segment size, each a gap record.
func dropRanges(recs []DropRecord) []dropRange {
	fallback := uint64(fallbackSegSize)
	for _, r := range recs {
		if validSegSize(r.SegmentSize) {
			fallback = r.SegmentSize
			break
		}
	}
	type keyed struct {
		DropRecord
		tli   uint32
		segNo uint64
	}
	var ks []keyed
	for _, r := range recs {
		if !validSegSize(r.SegmentSize) {
			r.SegmentSize = fallback
		}
		f, _ := wal.Parse(r.Segment) // dropRecordName checked it
		if uint64(f.Seg) >= uint64(0x100000000)/r.SegmentSize {
			r.SegmentSize = fallbackSegSize
		}
		ks = append(ks, keyed{r, f.Timeline, f.SegmentNumber(r.SegmentSize)})
	}
	sort.SliceStable(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.tli != b.tli {
			return a.tli < b.tli
		}
		if a.SegmentSize != b.SegmentSize {
			return a.SegmentSize < b.SegmentSize
		}
		return a.segNo < b.segNo
	})
	var out []dropRange
	var prev *keyed
	for i := range ks {
		k := &ks[i]
		if prev != nil && k.tli == prev.tli && k.SegmentSize == prev.SegmentSize && k.segNo == prev.segNo {
			continue // the same segment twice: cannot be, but never counted twice
		}
		if k.Dropped.IsZero() {
			k.Dropped = time.Now().UTC() // a damaged record whose time is unknown: recorded now
		}
		if prev == nil || k.tli != prev.tli || k.SegmentSize != prev.SegmentSize || k.segNo != prev.segNo+1 {
			out = append(out, dropRange{record: repo.GapRecord{
				Timeline: k.tli, First: k.Segment, SegmentSize: k.SegmentSize, Reason: repo.GapReasonQueueMax,
				DroppedFrom: k.Dropped, DroppedTo: k.Dropped,
			}})
		}
		g := &out[len(out)-1]
		g.members = append(g.members, k.DropRecord)
		g.record.Last = k.Segment
		g.record.Segments++
		if k.Dropped.Before(g.record.DroppedFrom) {
			g.record.DroppedFrom = k.Dropped
		}
		if k.Dropped.After(g.record.DroppedTo) {
			g.record.DroppedTo = k.Dropped
		}
		g.record.BacklogBytes = max(g.record.BacklogBytes, k.BacklogBytes)
		if k.LimitBytes > 0 {
			g.record.LimitBytes = k.LimitBytes
		}
		g.record.Error = k.Error
		if k.Damaged != "" {
			g.record.Error = "the local record of " + k.Segment + " was damaged (" + k.Damaged + ")"
		}
		if k.Host != "" {
			g.record.Host = k.Host
		}
		if k.Version != "" {
			g.record.Version = k.Version
		}
		prev = k
	}
	return out
}

func validSegSize(s uint64) bool { return s >= 1<<20 && s <= 1<<30 && s&(s-1) == 0 }
