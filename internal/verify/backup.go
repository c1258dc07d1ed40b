package verify

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/progress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/workpool"
)

// backup checks one backup: its manifest against its summary, every part against
// the manifest, and that its start..stop WAL is archived (the WAL check does the
// latter when it runs).
func (v *verifier) backup(ctx context.Context, s *repo.Summary) error {
	if p := walRangeProblem(s); p != "" {
		v.problem(repo.SummaryKey(s.Name), s.Name, "%s", p)
	}
	m, err := v.r.Manifest(ctx, s)
	if err != nil {
		if damage(err) {
			v.problem(repo.ManifestKey(s.Name), s.Name, "%s", err.Error())
			return nil
		}
		return err
	}
	if s.Incremental() {
		// Its files must come out of its chain as restore resolves them.
		err := restore.CheckChain(ctx, v.r, v.all, s.Name)
		switch {
		case err == nil || errors.Is(err, repo.ErrBrokenChain): // a broken chain is reported with the listing
		case damage(err) || errors.Is(err, restore.ErrDamaged):
			v.problem(repo.ManifestKey(s.Name), s.Name, "%s", err.Error())
		default:
			return err
		}
	}
	// Pages damaged in the database when the backup read them: the repository is
	// sound, but a restore brings them back as they were.
	listed := 0
	for _, c := range m.Corrupt {
		listed += len(c.Blocks)
		v.problem(s.Name+"/"+c.Path, s.Name, "%d page(s) failed their data checksum when backup-push read them (blocks %s): the database's copy was damaged, and the backup holds it as read",
			len(c.Blocks), blockList(c.Blocks))
	}
	if more := m.CorruptPages - listed; more > 0 {
		v.problem(repo.ManifestKey(s.Name), s.Name, "%d more page(s) failed their data checksum when backup-push read them (not listed: the manifest keeps at most %d)", more, repo.MaxCorruptListed)
	}
	byPath := make(map[string]int, len(m.Files))
	parts := make(map[int]repo.Part, len(m.Parts))
	for _, p := range m.Parts {
		parts[p.N] = p
	}
	for i, f := range m.Files {
		if _, dup := byPath[f.Path]; dup {
			v.problem(s.Name+"/"+f.Path, s.Name, "listed twice in the manifest")
			continue
		}
		byPath[f.Path] = i
		if f.Unchanged() && m.Incremental() {
			continue // its content is the parent's: verified with the parent
		}
		if _, ok := parts[f.Part]; !ok {
			v.problem(s.Name+"/"+f.Path, s.Name, "the manifest puts it in part %d, which the manifest does not list", f.Part)
		}
	}
	seen := make([]atomic.Bool, len(m.Files))
	readable := make([]atomic.Bool, len(m.Parts)) // the part decoded to its end
	idx := make([]int, len(m.Parts))
	for i := range idx {
		idx[i] = i
	}
	stop := v.progress(s.Name, m)
	err = workpool.Run(ctx, v.opt.Concurrency, idx, func(ctx context.Context, ch <-chan int) error {
		buf := make([]byte, 256<<10)
		for i := range ch {
			ok, err := v.part(ctx, m, m.Parts[i], byPath, seen, buf)
			if err != nil {
				return err
			}
			readable[i].Store(ok)
		}
		return nil
	})
	stop()
	if err != nil {
		return err
	}
	good := map[int]bool{}
	for i, p := range m.Parts {
		good[p.N] = readable[i].Load()
	}
	for i, f := range m.Files {
		// A file of a part that did not decode is covered by that part's problem.
		inPart := !f.Unchanged() || !m.Incremental()
		if !seen[i].Load() && good[f.Part] && inPart {
			v.problem(s.Name+"/"+f.Path, s.Name, "in the manifest (part %d) but in no part", f.Part)
		}
	}
	if !v.opt.WAL {
		return v.backupWAL(ctx, s)
	}
	return nil
}

// progress reports backup m's read to Options.Progress (internal/progress: about once
// a second and once at the end) until the returned stop.
func (v *verifier) progress(name string, m *repo.Manifest) (stop func()) {
	if v.opt.Progress == nil {
		return func() {}
	}
	var total int64
	for _, p := range m.Parts {
		total += p.Size
	}
	v.backupRead.Store(0)
	return progress.Start(func(done, total int64) { v.opt.Progress(name, min(done, total), total) }, &v.backupRead, total, time.Second)
}

// blockList is blocks as "1, 5, 9", the first 20 of them.
func blockList(blocks []uint32) string {
	var b strings.Builder
	for i, n := range blocks {
		if i == 20 {
			fmt.Fprintf(&b, ", … %d more", len(blocks)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, n)
	}
	return b.String()
}

// part reads one part to its end and checks each file in it. ok is false when the
// part could not be read to its end (reported).
func (v *verifier) part(ctx context.Context, m *repo.Manifest, p repo.Part, byPath map[string]int,
	seen []atomic.Bool, buf []byte) (ok bool, err error) {
	key := repo.PartKey(m.Name, p.N)
	o, err := v.r.OpenPart(ctx, m.Name, p)
	if err != nil {
		if damage(err) {
			v.problem(key, m.Name, "%s", describe(err))
			return false, nil
		}
		return false, err
	}
	defer func() { _ = o.Close() }() // read-only: reading to the end is what verifies
	v.nprt.Add(1)
	tr := tar.NewReader(o)
	files, data := 0, int64(0)
	for {
		if err := ctx.Err(); err != nil {
			return false, context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// tar stops at its end-of-archive blocks; the envelope checks the part's
			// size and checksum only at the end of the object.
			if _, err := io.CopyBuffer(io.Discard, onlyReader{o}, buf); err != nil {
				return v.partError(ctx, key, m.Name, err)
			}
			break
		}
		if err != nil {
			return v.partError(ctx, key, m.Name, err)
		}
		files++
		if hdr.Typeflag == tar.TypeReg {
			data += hdr.Size
		}
		i, listed := byPath[hdr.Name]
		if !listed {
			v.problem(key, m.Name, "holds %q, which the manifest does not list", hdr.Name)
			continue
		}
		f := &m.Files[i]
		switch {
		case f.Part != p.N:
			v.problem(m.Name+"/"+f.Path, m.Name, "found in part %d, the manifest says part %d", p.N, f.Part)
			continue
		case hdr.Typeflag != tar.TypeReg:
			v.problem(m.Name+"/"+f.Path, m.Name, "part %d holds it as tar type %q, not a regular file", p.N, hdr.Typeflag)
			continue
		case seen[i].Swap(true):
			v.problem(m.Name+"/"+f.Path, m.Name, "part %d holds it twice", p.N)
			continue
		}
		crc, n, err := sum(tr, buf)
		v.nbyt.Add(n)
		v.backupRead.Add(n)
		if err != nil {
			return v.partError(ctx, key, m.Name, err)
		}
		v.nfil.Add(1)
		if n != f.TarSize() {
			v.problem(m.Name+"/"+f.Path, m.Name, "part %d holds %d bytes, the manifest says %d", p.N, n, f.TarSize())
		} else if crc != f.CRC {
			v.problem(m.Name+"/"+f.Path, m.Name, "checksum mismatch in part %d (crc32c %s, manifest says %s)", p.N, crc, f.CRC)
		}
	}
	if files != p.Files {
		v.problem(key, m.Name, "holds %d files, the manifest says %d", files, p.Files)
	} else if data != p.Size {
		v.problem(key, m.Name, "holds %d bytes of file data, the manifest says %d", data, p.Size)
	}
	return true, nil
}

// partError reports a part that broke off, or returns err when it is not damage.
func (v *verifier) partError(ctx context.Context, key, backup string, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	if damage(err) || errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		v.problem(key, backup, "%s", describe(err))
		return false, nil
	}
	return false, fmt.Errorf("%s: %w", key, err)
}

// sum reads r to its end: its CRC-32C as the manifest writes it, and its length.
func sum(r io.Reader, buf []byte) (string, int64, error) {
	h := crc32c.New()
	n, err := io.CopyBuffer(h, onlyReader{r}, buf)
	return crc32c.Hex(h.Sum32()), n, err
}

type onlyReader struct{ io.Reader }

// describe turns a read error into what is wrong, for a problem line.
func describe(err error) string {
	if errors.Is(err, storage.ErrNotExist) {
		return "missing from the repository (" + err.Error() + ")"
	}
	return err.Error()
}
