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

// A restore of an incremental backup goes through its chain, full backup first: each
// backup's parts are read once, in parallel, and each file is written whole from the
// newest backup that holds it whole, then patched with the blocks the backups after
// it stored (in their order), and cut to the size the next one says. Every byte
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
	crc     string // of the whole copy in backup from: its content when deltas is 0
	keep    bool   // a delta restore found it already there, as the backup has it
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
	for k, c := range chain {
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
		switch {
		case p == nil || p.keep:
		case p.from == k && !f.Delta():
			w := *f
			if p.last == k {
				w.MTime = p.mtime
			}
			if err := r.writeFile(tr, &w, spc, buf, done); err != nil {
				return fmt.Errorf("%s: file %s: %w", key, f.Path, err)
			}
			written.Add(1)
		case p.deltas&(1<<k) != 0 && f.Delta():
			if err := r.patchFile(tr, f, p.prev[k], spc, buf, done, p.last == k, p.mtime); err != nil {
				return fmt.Errorf("%s: file %s: %w", key, f.Path, err)
			}
		}
		return nil
	})
}

// patchFile writes the blocks of f (a Delta entry) into the file an older backup of
// the chain wrote, cut or extended to f.Size first, and checks them against f.CRC.
// last: no newer backup patches it, so it gets its final modification time.
func (r *Restorer) patchFile(src io.Reader, f *repo.File, prevSize int64, spc map[uint32]string, buf []byte, done *atomic.Int64, last bool, mtime time.Time) error {
	if !safePath(f.Path) || f.Path == controlFile {
		return fmt.Errorf("%w: unsafe path", ErrDamaged)
	}
	crc := crc32c.New()
	l, err := f.ReadLayer(io.TeeReader(src, crc))
	if err != nil {
		return wrapDamaged(err)
	}
	if err := l.Check(prevSize); err != nil {
		return fmt.Errorf("%w: its page map does not follow the older backup's copy of %d bytes: %w", ErrDamaged, prevSize, err)
	}
	root, rel, err := r.localRoot(f.Path, spc)
	if err != nil {
		return err
	}
	out, err := openBeneath(root, rel, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }() // for the error paths: success closes it below and checks
	if err := out.Truncate(f.Size); err != nil {
		return err
	}
	page := buf[:pagemap.BlockSize]
	var werr error
	l.Map.Blocks(func(b uint32) bool {
		off := int64(b) * pagemap.BlockSize
		p := page[:min(pagemap.BlockSize, f.Size-off)]
		if _, err := io.ReadFull(l.Pages, p); err != nil {
			werr = wrapDamaged(err)
			return false
		}
		if _, err := out.WriteAt(p, off); err != nil {
			werr = err
			return false
		}
		done.Add(int64(len(p)))
		return true
	})
	if werr != nil {
		return werr
	}
	if got := crc32c.Hex(crc.Sum32()); got != f.CRC {
		return fmt.Errorf("%w: checksum mismatch of its changed pages (crc32c %s, manifest says %s)", ErrDamaged, got, f.CRC)
	}
	if last {
		if err := setMTime(out, mtime); err != nil {
			return err
		}
	}
	return out.Close()
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
		return nil, fmt.Errorf("%w: %s: no older backup of the chain wrote it before its pages: %w", ErrDamaged, name, fs.ErrNotExist)
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
