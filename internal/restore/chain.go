package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/progress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/workpool"
)

// A restore of an incremental backup goes through its chain: each backup's parts are
// read once, those of every backup of the chain in one pool of workers, and each file is
// written from the newest backup that holds it whole, or, when backups after that one
// store pages of it, block by block from the newest backup storing each block, whatever
// order the backups come in (see layered). Every byte
// written is checked against the checksum of what its backup stored, every page map
// against the file's sizes along the chain, and every file of the backup must come out
// of it: anything else is ErrDamaged, naming the object.

// filePlan is how one file of the backup being restored comes out of the chain.
type filePlan struct {
	from      int     // the chain index of the backup holding it whole; -1 while unknown
	deltas    uint64  // the chain indexes of backups whose pages patch it
	expect    int64   // the size the next older backup must list, when unchanged there
	prev      []int64 // by chain index k with pages: the file's size in backup k-1
	pending   int     // the chain index of pages waiting for the next older size; -1: none
	visited   int     // the chain index whose list named it last
	mode      uint32
	mtime     time.Time
	size      int64
	crc       string   // of the whole copy in backup from: its content when deltas is 0
	keep      bool     // a delta restore found it already there, as the backup has it
	settled   bool     // and with the owner and time restore gives it
	unchecked bool     // and kept by its time alone (Options.TrustTime's first rule), unread
	lay       *layered // with deltas, while it is written
}

// chainPlan resolves every file of the chain's last backup (chain[len-1], m) to the
// backups holding it, reading the older manifests' lists (each opened, checked, and
// closed by the caller).
func chainPlan(chain []*repo.Manifest) (map[string]*filePlan, error) {
	n := len(chain) - 1
	plan := map[string]*filePlan{}
	visit := func(k int, f *repo.File, p *filePlan) error {
		if p.visited == k {
			return fmt.Errorf("%w: the manifest of backup %s lists %s twice", ErrDamaged, chain[k].Name, f.Path)
		}
		p.visited = k
		if k < n {
			if p.pending >= 0 {
				p.prev[p.pending] = f.Size
			} else if f.Size != p.expect {
				return fmt.Errorf("%w: %s: a newer backup says it is unchanged since backup %s, which lists it with another size", ErrDamaged, f.Path, chain[k].Name)
			}
		}
		p.pending = -1
		switch {
		case f.Unchanged():
			if k == 0 {
				return fmt.Errorf("%w: %s: the full backup %s lists it as unchanged", ErrDamaged, f.Path, chain[k].Name)
			}
			p.expect = f.Size
		case f.Delta():
			if k == 0 {
				return fmt.Errorf("%w: %s: the full backup %s holds pages of it only", ErrDamaged, f.Path, chain[k].Name)
			}
			if p.prev == nil {
				p.prev = make([]int64, n+1)
			}
			p.pending = k
			p.deltas |= 1 << k
		default:
			p.from, p.crc = k, f.CRC
		}
		return nil
	}
	if err := chain[n].EachFile(func(f *repo.File) error {
		if plan[f.Path] != nil {
			return fmt.Errorf("%w: the manifest of backup %s lists %s twice", ErrDamaged, chain[n].Name, f.Path)
		}
		p := &filePlan{from: -1, visited: -1, pending: -1, mode: f.Mode, mtime: f.MTime, size: f.Size}
		plan[f.Path] = p
		return visit(n, f, p)
	}); err != nil {
		return nil, err
	}
	for k := n - 1; k >= 0; k-- {
		if err := chain[k].EachFile(func(f *repo.File) error {
			p := plan[f.Path]
			switch {
			case p == nil:
				return nil // not in the backup restored
			case p.visited == k:
				return fmt.Errorf("%w: the manifest of backup %s lists %s twice", ErrDamaged, chain[k].Name, f.Path)
			case p.from >= 0:
				p.visited = k // found whole in a newer one (or this one, and listed twice)
				return nil
			}
			return visit(k, f, p)
		}); err != nil {
			return nil, err
		}
		// A backup storing pages of a file, or saying it is unchanged, builds on its
		// parent's copy: the parent must list it.
		for name, p := range plan {
			if p.from < 0 && p.visited == k+1 {
				return nil, fmt.Errorf("%w: %s: backup %s builds on backup %s's copy of it, which that backup does not list", ErrDamaged, name, chain[k+1].Name, chain[k].Name)
			}
		}
	}
	for name, p := range plan {
		if p.from < 0 {
			return nil, fmt.Errorf("%w: %s: no backup of the chain from %s to %s holds it whole", ErrDamaged, name, chain[0].Name, chain[n].Name)
		}
	}
	return plan, nil
}

// CheckChain checks that incremental backup name can be resolved from its chain
// (backups as ListBackups returns them): every backup of it is listed and its manifest
// readable, and every file of it comes out of the chain (see chainPlan). It reads the
// manifests only; the parts are verify's.
func CheckChain(ctx context.Context, rp *repo.Repo, backups []*repo.Summary, name string) error {
	sums, err := repo.Chain(backups, name)
	if err != nil {
		return err
	}
	chain := make([]*repo.Manifest, 0, len(sums))
	defer func() {
		for _, c := range chain {
			_ = c.Close() // a temporary file list
		}
	}()
	for _, s := range sums {
		m, err := rp.OpenManifest(ctx, s, "")
		if err != nil {
			return fmt.Errorf("backup %s needs backup %s (its chain): %w", name, s.Name, err)
		}
		chain = append(chain, m)
	}
	_, err = chainPlan(chain)
	return err
}

// restoreChain is restoreParts for an incremental backup m, and for a delta restore.
func (r *Restorer) restoreChain(ctx context.Context, m *repo.Manifest, spc map[uint32]string) error {
	sums := []*repo.Summary{&m.Summary}
	if m.Incremental() {
		backups, _, err := r.Repo.ListBackups(ctx)
		if err != nil {
			return err
		}
		if sums, err = repo.Chain(backups, m.Name); err != nil {
			return err
		}
	}
	chain := make([]*repo.Manifest, len(sums))
	chain[len(sums)-1] = m
	defer func() {
		for _, c := range chain[:len(sums)-1] {
			_ = c.Close() // a temporary file list
		}
	}()
	for i, s := range sums[:len(sums)-1] {
		var err error
		if chain[i], err = r.Repo.OpenManifest(ctx, s, ""); err != nil {
			return fmt.Errorf("backup %s needs backup %s (its chain): %w", m.Name, s.Name, err)
		}
	}
	plan, err := chainPlan(chain)
	if err != nil {
		return err
	}
	if r.Opt.Delta {
		if err := r.prepareDelta(ctx, chain, plan, spc); err != nil {
			return err
		}
		if err := r.makeDirsInside(m, spc); err != nil {
			return err
		}
	}
	var done atomic.Int64
	stop := progress.Start(r.Opt.Progress, &done, m.Size, time.Second)
	defer stop()
	// The parts of every backup of the chain go to one pool of workers and are
	// restored at once: a file patched along the chain keeps each block from the newest
	// backup writing it, in whatever order they come.
	jobs, err := chainJobs(chain, plan)
	if err != nil {
		return err
	}
	for _, p := range plan {
		if p.deltas != 0 && !p.keep {
			p.lay = newLayered(p)
		}
	}
	slots := newReadAheadSlots()
	var written atomic.Int64
	t0 := time.Now()
	err = workpool.Run(ctx, r.Opt.Concurrency, jobs, func(ctx context.Context, ch <-chan chainJob) error {
		buf := make([]byte, 256<<10)
		for j := range ch {
			t1 := time.Now()
			if err := r.restoreLayerPart(ctx, chain[j.k], j.k, j.pt, plan, spc, &done, &written, buf, slots); err != nil {
				return err
			}
			r.Log.Debug("chain: part restored", "backup", chain[j.k].Name, "part", j.pt.N, "stored", j.pt.Stored, "from", t1.Sub(t0).Round(time.Millisecond), "took", time.Since(t1).Round(time.Millisecond))
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.Log.Debug("chain: backups restored", "backups", len(chain), "parts", len(jobs), "took", time.Since(t0).Round(time.Millisecond))
	for name, p := range plan {
		if p.keep {
			if !p.settled {
				if err := r.finishKept(name, p, spc); err != nil {
					return err
				}
			}
			written.Add(1)
		}
	}
	if int(written.Load()) != len(plan) {
		return fmt.Errorf("%w: %d of the %d files of backup %s came out of its chain", ErrDamaged, written.Load(), len(plan), m.Name)
	}
	return nil
}

// chainJob is part pt of the backup of chain index k, to restore.
type chainJob struct {
	k  int
	pt repo.Part
}

// chainJobs lists the parts of chain that hold something plan needs, in the order
// restoreChain starts them: newest backup first, each backup's costliest parts first.
// Any order gives the same files (each block keeps the newest backup's bytes); this one
// writes most pages to disk once: a file's changed pages are mostly in the page cache
// before the copy they patch fills the blocks around them (only the start order is
// fixed: the last increments' parts may still run beside the first of that copy's), and
// that copy has the kernel write each stretch behind it at once (startWriteback), which
// would send a page a newer backup still patches to disk twice. The full backup's
// biggest part starts only once every increment's part has, which a chain of large
// increments pays for in its tail. A chain of 6
// restored here in 1.6-1.9 s this way, in 2.6-4.3 s costliest first whichever backup
// (alternating with a full restore of the same data, which took 1.2-4.2 s).
func chainJobs(chain []*repo.Manifest, plan map[string]*filePlan) ([]chainJob, error) {
	var jobs []chainJob
	for k := len(chain) - 1; k >= 0; k-- {
		var parts []repo.Part
		for _, pt := range chain[k].Parts {
			if need, err := partNeeded(chain[k], k, pt, plan); err != nil {
				return nil, err
			} else if need {
				parts = append(parts, pt)
			}
		}
		sort.SliceStable(parts, func(i, j int) bool { return partCost(parts[i]) > partCost(parts[j]) })
		for _, pt := range parts {
			jobs = append(jobs, chainJob{k, pt})
		}
	}
	return jobs, nil
}

// partCost is what restoring part pt costs, in bytes: its size, and for each file as
// much as writing fileCost bytes (creating a file, setting its owner and time: a
// part of a thousand small files takes as long as one of 60 MiB).
func partCost(pt repo.Part) int64 { return pt.Size + int64(pt.Files)*fileCost }

const fileCost = 64 << 10

// restoreLayerPart writes what part pt of c, chain index k, holds for the files of
// plan: whole files whose newest whole copy it is, and pages of files it patches. The
// others are read past; the part's checksum covers them.
func (r *Restorer) restoreLayerPart(ctx context.Context, c *repo.Manifest, k int, pt repo.Part, plan map[string]*filePlan,
	spc map[uint32]string, done, written *atomic.Int64, buf []byte, slots readAheadSlots) error {
	return r.eachPartEntry(ctx, c, pt, slots, func(key string, tr *tar.Reader, f *repo.File) error {
		p := plan[f.Path]
		var err error
		switch {
		case p == nil || p.keep:
			return nil
		case p.from == k && !f.Delta() && p.deltas == 0:
			w := *f
			w.MTime = p.mtime
			err = r.writeFile(tr, &w, spc, buf, done)
			written.Add(1)
		case p.from == k && !f.Delta():
			err = r.fillFile(tr, f, p, spc, buf, done)
			written.Add(1)
		case p.deltas&(1<<k) != 0 && f.Delta():
			err = r.patchFile(tr, f, p, k, spc, buf, done)
		}
		if err != nil {
			return fmt.Errorf("%s: file %s: %w", key, f.Path, err)
		}
		return nil
	})
}

// layered is a file that backups of the chain patch, while they write it. They may
// write it in any order, at once: each block keeps the bytes of the newest backup that
// wrote it (its owner), so the file comes out as pagemap.Reconstruct builds it — each
// block from the newest backup storing it, else from the one holding the file whole.
// The first backup to get to the file creates it at its size in the backup restored,
// and writes are cut there; each backup opens it for its own writes and closes it
// after. The last one checks that every block was written, and by a backup storing it
// at its final length (pagemap.Layer.Check makes the newest one do so), then gives
// the file its owner and time.
//
// Memory, while the file is being written: some 160 bytes per run of lockBlocks blocks
// (1 MiB) some backup wrote (a byte per block, a lock, the map's entry), so never more
// than the bytes read allow, whatever sizes a manifest claims.
type layered struct {
	size    int64
	mtime   time.Time
	once    sync.Once
	err     error         // of creating the file
	by      atomic.Uint64 // the chain indexes of the backups that began writing it
	left    atomic.Int32  // backups still to write it
	mu      sync.Mutex    // over stripes
	stripes map[uint32]*stripe
}

// stripe is lockBlocks blocks of a layered file: who wrote each, under its lock.
type stripe struct {
	mu    sync.Mutex
	owner [lockBlocks]uint8 // 1 + the chain index of the backup whose bytes it holds (0: none), | badLength
}

const (
	lockBlocks = 128
	badLength  = 0x80 // the owner's block had another length than the file's final one
)

func newLayered(p *filePlan) *layered {
	l := &layered{size: p.size, mtime: p.mtime, stripes: map[uint32]*stripe{}}
	l.left.Store(int32(bits.OnesCount64(p.deltas) + 1))
	return l
}

// open opens the file for the writes of the backup of chain index k, created by the
// first backup to get to it. Each backup writes it once.
func (l *layered) open(r *Restorer, rel string, k int, spc map[uint32]string) (*os.File, error) {
	if old := l.by.Or(1 << k); old&(1<<k) != 0 || l.left.Load() <= 0 {
		return nil, fmt.Errorf("%w: backup %d of the chain holds it twice", ErrDamaged, k)
	}
	root, lrel, err := r.localRoot(rel, spc)
	if err != nil {
		return nil, err
	}
	l.once.Do(func() {
		f, err := createBeneath(root, lrel)
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%w: the manifest lists %s twice", ErrDamaged, rel)
		}
		if err == nil {
			err = f.Truncate(l.size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		l.err = err
	})
	if l.err != nil {
		return nil, l.err
	}
	return openBeneath(root, lrel, unix.O_WRONLY)
}

// stripe returns stripe n, made on its first write.
func (l *layered) stripe(n uint32) *stripe {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stripes[n]
	if st == nil {
		st = &stripe{}
		l.stripes[n] = st
	}
	return st
}

// write writes to out, for the backup of chain index k, the blocks from first on that
// data holds (as a copy of srcSize bytes holds them), but those a newer backup wrote.
func (l *layered) write(out *os.File, k int, first uint32, data []byte, srcSize int64, done *atomic.Int64) error {
	mine := uint8(k + 1)
	for at := 0; at < len(data); {
		if (int64(first)+int64(at/pagemap.BlockSize))*pagemap.BlockSize >= l.size {
			break // beyond the file's final size: cut
		}
		n := (first + uint32(at/pagemap.BlockSize)) / lockBlocks
		end := min(len(data), int(int64(n+1)*lockBlocks-int64(first))*pagemap.BlockSize)
		if err := l.writeStripe(out, l.stripe(n), mine, first, data, at, end, srcSize, done); err != nil {
			return err
		}
		at = end
	}
	return nil
}

// writeStripe is write for the bytes at..end of data, which lie in stripe st. Its lock
// is held through the writes, so that a newer backup's bytes, once written, stay.
func (l *layered) writeStripe(out *os.File, st *stripe, mine uint8, first uint32, data []byte, at, end int, srcSize int64, done *atomic.Int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	runFrom, runTo := at, at // the bytes of data of the run being gathered
	flush := func() error {
		if runTo > runFrom {
			if _, err := out.WriteAt(data[runFrom:runTo], int64(first)*pagemap.BlockSize+int64(runFrom)); err != nil {
				return err
			}
		}
		return nil
	}
	for ; at < end; at += pagemap.BlockSize {
		b := first + uint32(at/pagemap.BlockSize)
		off := int64(b) * pagemap.BlockSize
		n := int(min(pagemap.BlockSize, srcSize-off, int64(end-at)))
		if off >= l.size || st.owner[b%lockBlocks]&^badLength > mine {
			// Beyond the file's final size, or a newer backup's.
			if err := flush(); err != nil {
				return err
			}
			runFrom, runTo = at+pagemap.BlockSize, at+pagemap.BlockSize
			continue
		}
		w := int(min(int64(n), l.size-off)) // cut at the final size
		final := min(pagemap.BlockSize, l.size-off)
		own := mine
		if int64(n) != final {
			own |= badLength
		}
		if st.owner[b%lockBlocks] == 0 {
			done.Add(final) // progress: the file's bytes, each block counted once
		}
		st.owner[b%lockBlocks] = own
		if at != runTo {
			if err := flush(); err != nil {
				return err
			}
			runFrom = at
		}
		runTo = at + w
	}
	return flush()
}

// finish is a backup's last step on the file, out its descriptor (closed here): the
// last of them checks that every block was written, at its final length, then sets
// the file's owner and time.
func (l *layered) finish(r *Restorer, out *os.File) error {
	defer func() { _ = out.Close() }() // for the error paths: success closes it below and checks
	if l.left.Add(-1) == 0 {
		nb := pagemap.Blocks(l.size)
		for b := int64(0); b < nb; b++ {
			var o uint8
			if st := l.stripes[uint32(b/lockBlocks)]; st != nil {
				o = st.owner[b%lockBlocks]
			}
			switch {
			case o == 0:
				return fmt.Errorf("%w: block %d of it is in no backup of the chain", ErrDamaged, b)
			case o&badLength != 0:
				return fmt.Errorf("%w: block %d has another length in the backup storing it last than the file's size allows", ErrDamaged, b)
			}
		}
		l.stripes = nil
		if err := r.own(out, l.mtime); err != nil {
			return err
		}
	}
	return out.Close()
}

// patchFile writes the blocks of f, a Delta entry of chain index k, but those a newer
// backup wrote, and checks its map against the file's size in the backup before and
// its map and pages against f.CRC.
func (r *Restorer) patchFile(src io.Reader, f *repo.File, p *filePlan, k int, spc map[uint32]string, buf []byte, done *atomic.Int64) error {
	if !safePath(f.Path) || f.Path == controlFile {
		return fmt.Errorf("%w: unsafe path", ErrDamaged)
	}
	crc := crc32c.New()
	l, err := f.ReadLayer(io.TeeReader(src, crc))
	if err != nil {
		return wrapDamaged(err)
	}
	if err := l.Check(p.prev[k]); err != nil {
		return fmt.Errorf("%w: its page map does not follow the older backup's copy of %d bytes: %w", ErrDamaged, p.prev[k], err)
	}
	out, err := p.lay.open(r, f.Path, k, spc)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }() // for the error paths: finish closes it
	// Runs of consecutive blocks are read into buf together and written together.
	first, count := uint32(0), 0
	flush := func() error {
		if count == 0 {
			return nil
		}
		data := buf[:min(int64(count)*pagemap.BlockSize, f.Size-int64(first)*pagemap.BlockSize)]
		if _, err := io.ReadFull(l.Pages, data); err != nil {
			return wrapDamaged(err)
		}
		count = 0
		return p.lay.write(out, k, first, data, f.Size, done)
	}
	var werr error
	l.Map.Blocks(func(b uint32) bool {
		if count > 0 && (b != first+uint32(count) || (count+1)*pagemap.BlockSize > len(buf)) {
			if werr = flush(); werr != nil {
				return false
			}
		}
		if count == 0 {
			first = b
		}
		count++
		return true
	})
	if werr == nil {
		werr = flush()
	}
	if werr != nil {
		return werr
	}
	if got := crc32c.Hex(crc.Sum32()); got != f.CRC {
		return fmt.Errorf("%w: checksum mismatch of its changed pages (crc32c %s, manifest says %s)", ErrDamaged, got, f.CRC)
	}
	return p.lay.finish(r, out)
}

// fillFile writes, from f, the whole copy of a file that newer backups patch, the
// blocks they do not write, and checks f against its checksum.
func (r *Restorer) fillFile(src io.Reader, f *repo.File, p *filePlan, spc map[uint32]string, buf []byte, done *atomic.Int64) error {
	if !safePath(f.Path) || f.Path == controlFile {
		return fmt.Errorf("%w: unsafe path", ErrDamaged)
	}
	if f.Size > pagemap.MaxBlocks*pagemap.BlockSize {
		return fmt.Errorf("%w: a relation file of %d bytes", ErrDamaged, f.Size) // as pagemap.Reconstruct refuses it
	}
	out, err := p.lay.open(r, f.Path, p.from, spc)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }() // for the error paths: finish closes it
	crc := crc32c.New()
	chunk := len(buf) / pagemap.BlockSize * pagemap.BlockSize
	for n := int64(0); n < f.Size; {
		data := buf[:min(int64(chunk), f.Size-n)]
		if _, err := io.ReadFull(src, data); err != nil {
			return wrapDamaged(err)
		}
		crc.Write(data)
		if err := p.lay.write(out, p.from, uint32(n/pagemap.BlockSize), data, f.Size, done); err != nil {
			return err
		}
		if (n+int64(len(data)))/writebackChunk != n/writebackChunk {
			startWriteback(out, n/writebackChunk*writebackChunk) // newer backups mostly wrote theirs (chainJobs)
		}
		n += int64(len(data))
	}
	if got := crc32c.Hex(crc.Sum32()); got != f.CRC {
		return fmt.Errorf("%w: checksum mismatch (crc32c %s, manifest says %s)", ErrDamaged, got, f.CRC)
	}
	return p.lay.finish(r, out)
}

// openBeneath opens the existing regular file rel below root (mode: unix.O_WRONLY or
// O_RDONLY), following no symbolic link (see createBeneath).
func openBeneath(root, rel string, mode int) (*os.File, error) {
	name := filepath.Join(root, rel)
	d, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }() // a directory opened only to resolve beneath it
	fd, err := unix.Openat2(int(d.Fd()), rel, &unix.OpenHow{
		Flags:   uint64(mode) | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return os.OpenFile(name, mode|unix.O_NOFOLLOW, 0)
	}
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("%w: %s: not written by a newer backup of the chain: %w", ErrDamaged, name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file restore wrote", ErrDamaged, name)
	}
	return f, nil
}
