package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/progress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/workpool"
)

// A restore of an incremental backup goes through its chain, newest backup first: each
// backup's parts are read once, in parallel, and each file is written from the newest
// backup that holds it whole, or, when backups after that one store pages of it, block
// by block from the newest backup storing each block (see claim). Every byte
// written is checked against the checksum of what its backup stored, every page map
// against the file's sizes along the chain, and every file of the backup must come out
// of it: anything else is ErrDamaged, naming the object.

// filePlan is how one file of the backup being restored comes out of the chain.
type filePlan struct {
	from    int     // the chain index of the backup holding it whole; -1 while unknown
	deltas  uint64  // the chain indexes of backups whose pages patch it
	last    int     // the newest chain index writing it
	expect  int64   // the size the next older backup must list, when unchanged there
	prev    []int64 // by chain index k with pages: the file's size in backup k-1
	pending int     // the chain index of pages waiting for the next older size; -1: none
	visited int     // the chain index whose list named it last
	mode    uint32
	mtime   time.Time
	size    int64
	crc     string   // of the whole copy in backup from: its content when deltas is 0
	keep    bool     // a delta restore found it already there, as the backup has it
	covered []uint64 // with deltas, while it is written: the blocks written (claim)
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
			p.last = max(p.last, k)
		default:
			p.from, p.crc = k, f.CRC
			p.last = max(p.last, k)
		}
		return nil
	}
	if err := chain[n].EachFile(func(f *repo.File) error {
		if plan[f.Path] != nil {
			return fmt.Errorf("%w: the manifest of backup %s lists %s twice", ErrDamaged, chain[n].Name, f.Path)
		}
		p := &filePlan{from: -1, visited: -1, last: -1, pending: -1, mode: f.Mode, mtime: f.MTime, size: f.Size}
		plan[f.Path] = p
		return visit(n, f, p)
	}); err != nil {
		return nil, err
	}
	for k := n - 1; k >= 0; k-- {
		if err := chain[k].EachFile(func(f *repo.File) error {
			p := plan[f.Path]
			if p == nil || p.from >= 0 {
				return nil // not in the backup restored, or found whole in a newer one
			}
			return visit(k, f, p)
		}); err != nil {
			return nil, err
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
		if err := r.prepareDelta(ctx, m, plan, spc); err != nil {
			return err
		}
		if err := r.makeDirsInside(m, spc); err != nil {
			return err
		}
	}
	var done atomic.Int64
	stop := progress.Start(r.Opt.Progress, &done, m.Size, time.Second)
	defer stop()
	slots := newReadAheadSlots()
	var written atomic.Int64
	// Newest first: each block is written once, by the newest backup storing it.
	for k := len(chain) - 1; k >= 0; k-- {
		c := chain[k]
		var parts []repo.Part
		for _, pt := range c.Parts {
			if need, err := partNeeded(c, k, pt, plan); err != nil {
				return err
			} else if need {
				parts = append(parts, pt)
			}
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].Size > parts[j].Size })
		t0 := time.Now()
		err := workpool.Run(ctx, r.Opt.Concurrency, parts, func(ctx context.Context, ch <-chan repo.Part) error {
			buf := make([]byte, 256<<10)
			for pt := range ch {
				if err := r.restoreLayerPart(ctx, c, k, pt, plan, spc, &done, &written, buf, slots); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.Log.Debug("chain: backup restored", "backup", c.Name, "index", k, "parts", len(parts), "took", time.Since(t0).Round(time.Millisecond))
	}
	for name, p := range plan {
		if p.keep {
			if err := r.finishKept(name, p, spc); err != nil {
				return err
			}
			written.Add(1)
		}
	}
	if int(written.Load()) != len(plan) {
		return fmt.Errorf("%w: %d of the %d files of backup %s came out of its chain", ErrDamaged, written.Load(), len(plan), m.Name)
	}
	return nil
}

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

// A file that backups of the chain patch is written newest backup first, each block
// once: the newest backup storing a block writes it, and older ones skip the blocks
// written already (claimed), down to the backup holding the file whole, which fills in
// the rest. The block a backup stores must have the length the file's last block has
// in the backup restored (pagemap.Layer.Check makes it so: a block cut by a truncation
// is stored anew), which is how pagemap.Reconstruct resolves a file too.

// claim says whether block b, of n bytes in the backup holding it, is still to be
// written (and marks it written): it is not beyond the file's size in the backup
// restored, and no newer backup wrote it.
func (p *filePlan) claim(b uint32, n int) (bool, error) {
	if int64(b) >= pagemap.Blocks(p.size) || p.covered[b/64]&(1<<(b%64)) != 0 {
		return false, nil
	}
	if want := min(pagemap.BlockSize, p.size-int64(b)*pagemap.BlockSize); int64(n) != want {
		return false, fmt.Errorf("%w: block %d has %d bytes in the backup storing it last, and must have %d", ErrDamaged, b, n, want)
	}
	p.covered[b/64] |= 1 << (b % 64)
	return true, nil
}

// putBlocks writes, of the blocks from first on that data holds (as a copy of
// srcSize bytes holds them), those the file still needs (claim), in as few writes as
// runs of them.
func (p *filePlan) putBlocks(out *os.File, first uint32, data []byte, srcSize int64, done *atomic.Int64) error {
	runFrom, runTo := 0, 0 // the bytes of data of the run being gathered
	flush := func() error {
		if runTo > runFrom {
			off := int64(first)*pagemap.BlockSize + int64(runFrom)
			if _, err := out.WriteAt(data[runFrom:runTo], off); err != nil {
				return err
			}
			done.Add(int64(runTo - runFrom))
		}
		return nil
	}
	for at := 0; at < len(data); {
		b := first + uint32(at/pagemap.BlockSize)
		n := int(min(pagemap.BlockSize, srcSize-int64(b)*pagemap.BlockSize, int64(len(data)-at)))
		ok, err := p.claim(b, n)
		if err != nil {
			return err
		}
		if !ok || at != runTo {
			if err := flush(); err != nil {
				return err
			}
			runFrom, runTo = at, at
		}
		if ok {
			runTo = at + n
		}
		at += n
	}
	return flush()
}

// patchFile writes the blocks of f, a Delta entry of chain index k, that no newer
// backup wrote, and checks its map against the file's size in the backup before and
// its map and pages against f.CRC. The newest backup patching the file creates it, at
// the size it has in the backup restored.
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
	out, err := r.openLayered(f.Path, p, k == p.last, spc)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }() // for the error paths: success closes it below and checks
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
		return p.putBlocks(out, first, data, f.Size, done)
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
	return out.Close()
}

// fillFile writes, from f, the whole copy of a file that newer backups patched, the
// blocks they did not write, checks f against its checksum, and finishes the file:
// every block of it written, its owner and modification time set.
func (r *Restorer) fillFile(src io.Reader, f *repo.File, p *filePlan, spc map[uint32]string, buf []byte, done *atomic.Int64) error {
	if !safePath(f.Path) || f.Path == controlFile {
		return fmt.Errorf("%w: unsafe path", ErrDamaged)
	}
	out, err := r.openLayered(f.Path, p, false, spc)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }() // for the error paths: success closes it below and checks
	crc := crc32c.New()
	chunk := len(buf) / pagemap.BlockSize * pagemap.BlockSize
	for n := int64(0); n < f.Size; {
		data := buf[:min(int64(chunk), f.Size-n)]
		if _, err := io.ReadFull(src, data); err != nil {
			return wrapDamaged(err)
		}
		crc.Write(data)
		if err := p.putBlocks(out, uint32(n/pagemap.BlockSize), data, f.Size, done); err != nil {
			return err
		}
		n += int64(len(data))
	}
	if got := crc32c.Hex(crc.Sum32()); got != f.CRC {
		return fmt.Errorf("%w: checksum mismatch (crc32c %s, manifest says %s)", ErrDamaged, got, f.CRC)
	}
	for b := uint32(0); int64(b) < pagemap.Blocks(p.size); b++ {
		if p.covered[b/64]&(1<<(b%64)) == 0 {
			return fmt.Errorf("%w: block %d of it is in no backup of the chain", ErrDamaged, b)
		}
	}
	p.covered = nil
	if err := r.own(out, p.mtime); err != nil {
		return err
	}
	return out.Close()
}

// openLayered opens the file at rel that backups of the chain patch: create (for the
// newest of them) makes it, at its size in the backup restored, else it must exist.
func (r *Restorer) openLayered(rel string, p *filePlan, create bool, spc map[uint32]string) (*os.File, error) {
	root, lrel, err := r.localRoot(rel, spc)
	if err != nil {
		return nil, err
	}
	if !create {
		if p.covered == nil {
			return nil, fmt.Errorf("%w: no newer backup of the chain wrote its pages first", ErrDamaged)
		}
		return openBeneath(root, lrel, unix.O_WRONLY)
	}
	out, err := createBeneath(root, lrel)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: the chain writes it twice", ErrDamaged)
	}
	if err != nil {
		return nil, err
	}
	if err := out.Truncate(p.size); err != nil {
		_ = out.Close()
		return nil, err
	}
	p.covered = make([]uint64, (pagemap.Blocks(p.size)+63)/64)
	return out, nil
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
