package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/workpool"
)

// A delta restore (Options.Delta) restores into a directory that holds an older copy of
// the same cluster: a file whose size and content checksum are the backup's is kept,
// every other file is written from the backup as a restore into an empty directory
// writes it, and whatever the backup does not hold is removed (files, directories,
// links; never followed). Every link is removed, the backup's among them, and the
// backup's are made again at the end, as a restore into an empty directory makes them. The server must be stopped, and the copy's pg_control must
// name the backup's cluster. pg_control is removed first and written last, so that an
// interrupted delta restore, like any other, leaves a directory PostgreSQL will not
// start; it is marked incomplete (IncompleteMarker), and the same command finishes it.

// ErrServerRunning means a PostgreSQL server runs on the directory a delta restore
// would write into.
var ErrServerRunning = errors.New("a PostgreSQL server is running on it")

// ErrOtherCluster means the directory a delta restore would write into holds another
// cluster than the backup's.
var ErrOtherCluster = errors.New("it holds another cluster")

// ErrDoubtful means a delta restore found something it will only go on with under
// --force: a stale postmaster.pid, or no readable pg_control.
var ErrDoubtful = errors.New("restore --delta needs --force to go on")

// CheckDeltaTarget checks dir for a delta restore of a backup of cluster sysID: it
// exists, no server runs on it, and its pg_control names that cluster. force accepts a
// stale postmaster.pid and a missing or unreadable pg_control (an interrupted restore's
// marker accepts the latter without it).
func CheckDeltaTarget(dir string, sysID uint64, force bool) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--delta restores into an existing copy of the cluster: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--delta: %s is not a directory", dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid")); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if pid > 0 && alive(pid) {
			return fmt.Errorf("%s: %w (postmaster.pid names process %d): stop it first (pg_ctl -D %s stop); nothing was written", dir, ErrServerRunning, pid, dir)
		}
		if !force {
			return fmt.Errorf("%s holds a postmaster.pid of no running process (%d): the server was not shut down cleanly; %w (nothing was written)", dir, pid, ErrDoubtful)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--delta: %w", err)
	}
	ctl, err := pg.ReadControl(dir)
	switch {
	case err == nil && ctl.SystemID != sysID:
		return fmt.Errorf("%s: %w (system identifier %d; the backup's is %d): restore into an empty directory instead; nothing was written", dir, ErrOtherCluster, ctl.SystemID, sysID)
	case err != nil && !hasMarker(dir) && !force:
		return fmt.Errorf("%s: no readable global/pg_control (%w): whose copy it is cannot be told; %w (nothing was written)", dir, err, ErrDoubtful)
	}
	return nil
}

// runDelta is Run for Options.Delta.
func (r *Restorer) runDelta(ctx context.Context, m *repo.Manifest, spc map[uint32]string) error {
	if m.List == nil {
		return fmt.Errorf("backup %s has manifest format %d (an older pgb's), which restore --delta does not read: restore into an empty directory (nothing was written)", m.Name, m.Format)
	}
	if err := CheckDeltaTarget(r.Opt.DataDir, uint64(m.SystemID), r.Opt.Force); err != nil {
		return err
	}
	// An interrupted restore may have set a file's time and size without its bytes
	// reaching the disk (a crash before its sync), and a server that crashed (its
	// postmaster.pid left behind, accepted with --force) may have had bytes reach the
	// disk without the times its writes set: then no time is trusted.
	interrupted := hasMarker(r.Opt.DataDir)
	for _, loc := range spc {
		interrupted = interrupted || hasMarker(loc)
	}
	_, err := os.Lstat(filepath.Join(r.Opt.DataDir, "postmaster.pid"))
	crashed := err == nil
	r.trust = r.Opt.TrustTime && !interrupted && !crashed
	if r.Opt.TrustTime && !r.trust {
		r.Log.Warn("an interrupted restore, or a server that crashed, left this directory: --trust-time is ignored, every file is read", "dir", r.Opt.DataDir)
	}
	// A tablespace's location may hold the older copy's files (found and judged like the
	// data directory's), or not exist yet.
	for oid, loc := range spc {
		if r.inPlace[oid] {
			continue
		}
		if err := checkDeltaTablespace(loc); err != nil {
			return err
		}
	}
	for _, loc := range values(spc) {
		if err := r.mkdir(loc); err != nil {
			return err
		}
	}
	if err := r.writeMarkers(m.Name, spc); err != nil {
		return err
	}
	if err := r.restoreChain(ctx, m, spc); err != nil {
		return err
	}
	return r.finish(m, spc)
}

// checkDeltaTablespace makes sure a delta restore may empty loc of what the backup does
// not hold: it is absent, or a directory holding only PostgreSQL's version directories
// (PG_15_202209061) and a restore's marker — not some other directory a mistyped
// --tablespace-map names.
func checkDeltaTablespace(loc string) error {
	ents, err := os.ReadDir(loc)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tablespace location %s: %w (nothing was written)", loc, err)
	}
	for _, e := range ents {
		if e.Name() != IncompleteMarker && (!e.IsDir() || !strings.HasPrefix(e.Name(), "PG_")) {
			return fmt.Errorf("tablespace location %s holds %s, which no PostgreSQL tablespace holds: restore --delta would remove it; check --tablespace-map (nothing was written)", loc, e.Name())
		}
	}
	return nil
}

// alive says whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// prepareDelta readies r.Opt.DataDir for a delta restore of m, the last backup of
// chain, whose files plan resolves: it removes pg_control (and postmaster.pid), checks
// the content of every file the backup holds whole in one backup of its chain against
// that backup's checksum (or, with Options.TrustTime, its size and time), marking those
// that match kept, and removes everything else that is not a directory of m.
func (r *Restorer) prepareDelta(ctx context.Context, chain []*repo.Manifest, plan map[string]*filePlan, spc map[uint32]string) error {
	m := chain[len(chain)-1]
	dir := r.Opt.DataDir
	for _, name := range []string{filepath.FromSlash(controlFile), "postmaster.pid"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	dirs := map[string]bool{}
	for _, d := range m.Dirs {
		for p := d.Path; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			dirs[p] = true
		}
	}
	var (
		check  []found
		remove []string // files and links (absolute), then directories deepest first
		rmdirs []string
	)
	// The record of the restore before (read and removed whether trusted or not).
	recs, err := r.loadRecord(dir, uint64(m.SystemID), func(p string) bool { pl := plan[p]; return pl != nil && pl.deltas == 0 })
	if err != nil {
		return fmt.Errorf("--delta: %w", err)
	}
	if !r.trust {
		recs = nil
	}
	// walk goes through root, whose paths in the backup start with prefix ("" for the
	// data directory, pg_tblspc/OID for a tablespace's location).
	var walk func(root, prefix, rel string) error
	walk = func(root, prefix, rel string) error {
		abs := filepath.Join(root, filepath.FromSlash(rel))
		ents, err := os.ReadDir(abs)
		if err != nil {
			return err
		}
		for _, e := range ents {
			r := e.Name()
			if rel != "" {
				r = rel + "/" + r
			}
			p := r
			if prefix != "" {
				p = prefix + "/" + r
			}
			a := filepath.Join(abs, e.Name())
			switch {
			case rel == "" && e.Name() == IncompleteMarker:
			case e.IsDir() && dirs[p]:
				if err := walk(root, prefix, r); err != nil {
					return err
				}
			case e.IsDir():
				rmdirs = append(rmdirs, a)
			case e.Type().IsRegular() && plan[p] != nil && plan[p].deltas == 0:
				check = append(check, found{abs: a, path: p, p: plan[p], notAfter: chain[plan[p].from].StartTime.Add(-timeSlack), rec: recs[p]})
			default:
				// not the backup's, a link (a tablespace's too: made again), or patched
				remove = append(remove, a)
			}
		}
		return nil
	}
	if err := walk(dir, "", ""); err != nil {
		return fmt.Errorf("--delta: read %s: %w", dir, err)
	}
	for oid, loc := range spc {
		if r.inPlace[oid] {
			continue // a directory under pg_tblspc: walked with the data directory
		}
		if err := walk(loc, fmt.Sprintf("pg_tblspc/%d", oid), ""); err != nil {
			return fmt.Errorf("--delta: read %s: %w", loc, err)
		}
	}
	t0 := time.Now()
	kept, err := r.sameFiles(ctx, check, deltaChunk)
	if err != nil {
		return fmt.Errorf("--delta: %w", err)
	}
	r.Log.Debug("delta restore: files judged", "files", len(check), "took", time.Since(t0).Round(time.Millisecond))
	differ, byTime := 0, 0
	for i, f := range check {
		if f.byTime {
			byTime++
		}
		if kept[i] {
			f.p.keep, f.p.settled, f.p.unchecked = true, f.settled, f.rule1
			if f.settled && !f.rule1 {
				// Checked (or as the record had it), and not touched again: recorded as
				// it was when read. One kept by rule 1 alone was not checked.
				r.restored.add(restoredFile{path: f.path, crc: f.p.crc, size: f.p.size, mtime: f.p.mtime, id: f.id})
			}
			continue
		}
		differ++
		if err := os.Remove(f.abs); err != nil {
			return fmt.Errorf("--delta: %w", err)
		}
	}
	for _, a := range remove {
		if err := os.Remove(a); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--delta: %w", err)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(rmdirs)))
	for _, a := range rmdirs {
		if err := os.RemoveAll(a); err != nil {
			return fmt.Errorf("--delta: %w", err)
		}
	}
	r.Kept, r.KeptByTime = len(check)-differ, byTime
	r.Log.Info("delta restore: files kept as they were", "kept", r.Kept, "kept_by_time", byTime, "rewritten", differ, "removed", len(remove), "directories_removed", len(rmdirs))
	return nil
}

// found is a file a delta restore found where the backup has one.
type found struct {
	abs      string
	path     string // in the backup
	p        *filePlan
	notAfter time.Time    // with TrustTime: a time the backup recorded must be before this,
	rec      *recordEntry // or the file be as the restore record has it
	settled  bool         // it has the backup's modification time, and restore's owner
	byTime   bool         // TrustTime kept it unread
	rule1    bool         // by its time alone (not by the record)
	id       fileID       // as found, before it was read
}

// timeSlack is how long before the start of the backup holding a file its
// modification time must be for TrustTime to keep it unread: the kernel stamps writes
// with a clock that lags the one the backup's start was read from by up to a few
// milliseconds, so a file written again just after the backup read it could keep that
// time. It is the rule backup-push judges a file unchanged by.
const timeSlack = time.Second

// oneLink says whether fi has no other name: a hard link (cp -al, rsync --link-dest)
// shares its inode with another copy, which may change it.
func oneLink(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 1
}

// deltaChunk is how much of one file a worker checksums at a time: a large relation
// segment is read by every worker, not one.
const deltaChunk = 64 << 20

// sameFiles says, for each file of check, whether it has the size and the CRC-32C its
// backup stored it with, reading the files in pieces of chunk bytes, Concurrency at once,
// and combining the pieces' checksums. With Options.TrustTime (r.trust), a file with the
// size and the modification time the backup recorded, and no other link, is not read
// when that time is before found.notAfter, or when the restore record has it with the
// backup's checksum and it is still, inode and change time, as recorded.
func (r *Restorer) sameFiles(ctx context.Context, check []found, chunk int64) ([]bool, error) {
	type piece struct {
		file   int
		n      int // the piece's index in its file
		off, l int64
	}
	var (
		pieces []piece
		sums   = make([][]uint32, len(check))
		bad    = make([]atomic.Bool, len(check))
	)
	for i, f := range check {
		fi, err := os.Lstat(f.abs)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() || fi.Size() != f.p.size {
			bad[i].Store(true)
			continue
		}
		sameTime := fi.ModTime().Equal(f.p.mtime)
		check[i].settled = sameTime && r.owns(fi)
		check[i].id, _ = idOf(fi)
		if r.trust && sameTime && oneLink(fi) {
			byRecord := f.rec != nil && f.rec.CRC == f.p.crc && f.rec.same(fi)
			if byRecord || f.p.mtime.Before(f.notAfter) {
				check[i].byTime, check[i].rule1 = true, !byRecord
				continue
			}
		}
		n := 0
		for off := int64(0); off < f.p.size || n == 0; off += chunk {
			pieces = append(pieces, piece{file: i, n: n, off: off, l: min(chunk, f.p.size-off)})
			n++
		}
		sums[i] = make([]uint32, n)
	}
	err := workpool.Run(ctx, r.Opt.Concurrency, pieces, func(ctx context.Context, ch <-chan piece) error {
		buf := make([]byte, 256<<10)
		for pc := range ch {
			if bad[pc.file].Load() {
				continue
			}
			sum, ok, err := pieceCRC(check[pc.file].abs, pc.off, pc.l, buf)
			if err != nil {
				return err
			}
			if !ok {
				bad[pc.file].Store(true)
			}
			sums[pc.file][pc.n] = sum
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(check))
	for i, f := range check {
		if f.byTime {
			out[i] = true
			continue
		}
		if bad[i].Load() {
			continue
		}
		// Changed while it was read: judged by bytes that may not be its own.
		if fi, err := os.Lstat(f.abs); err != nil || !fi.Mode().IsRegular() || fi.Size() != f.p.size {
			continue
		} else if id, _ := idOf(fi); id != f.id {
			continue
		}
		crc, left := sums[i][0], f.p.size-chunk
		for _, s := range sums[i][1:] {
			l := min(chunk, left)
			crc = crc32c.Combine(crc, s, l)
			left -= l
		}
		out[i] = crc32c.Hex(crc) == f.p.crc
	}
	return out, nil
}

// pieceCRC is the CRC-32C of l bytes of the file name from off; ok is false when the
// file holds fewer.
func pieceCRC(name string, off, l int64, buf []byte) (uint32, bool, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = f.Close() }() // read only
	h := crc32c.New()
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, off, l), buf)
	if err != nil {
		return 0, false, err
	}
	return h.Sum32(), n == l, nil
}

// owns says whether fi belongs to the owner restore gives files (any, without one).
func (r *Restorer) owns(fi os.FileInfo) bool {
	if r.Opt.Owner == nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == r.Opt.Owner.UID && int(st.Gid) == r.Opt.Owner.GID
}

// finishKept gives a kept file the owner and modification time the backup says.
func (r *Restorer) finishKept(rel string, p *filePlan, spc map[uint32]string) error {
	root, relp, err := r.localRoot(rel, spc)
	if err != nil {
		return err
	}
	f, err := openBeneath(root, relp, unix.O_RDONLY) // fchown and futimens need no write access
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := r.own(f, p.mtime); err != nil {
		return err
	}
	if !p.unchecked {
		r.addRestored(f, rel, p.crc, p.size, p.mtime)
	}
	return f.Close()
}

// partNeeded says whether part pt of c, chain index k, holds anything to write.
func partNeeded(c *repo.Manifest, k int, pt repo.Part, plan map[string]*filePlan) (bool, error) {
	needed := false
	err := c.EachFileOfPart(pt.N, func(f *repo.File) error {
		p := plan[f.Path]
		if p != nil && !p.keep && (p.from == k && !f.Delta() || p.deltas&(1<<k) != 0 && f.Delta()) {
			needed = true
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return needed, err
}

var errStop = errors.New("stop")
