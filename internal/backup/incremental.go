package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

// Incremental modes (Options.Incremental).
const (
	IncrementalOff  = "off"  // every backup is a full one
	IncrementalOn   = "on"   // based on the newest backup when one can be
	IncrementalAuto = "auto" // as on, but a full one once a chain holds FullEvery backups
)

// DefaultFullEvery is how many backups a chain holds (its full one included) before
// IncrementalAuto takes a full backup again: with one backup a day, a full one a week.
const DefaultFullEvery = 7

// mtimeSlack is how long before the base's start a file's modification time must be
// for size and time to judge it unchanged: the kernel stamps writes with a clock that
// lags the one the base's start was read from by up to a few milliseconds.
const mtimeSlack = time.Second

// wholeShare: a relation file whose changed blocks are more than half of it is stored
// whole, which restores with no chain to follow.
const wholeShare = 2

// base is the backup an incremental backup builds on, and what its manifest says of
// each file.
type base struct {
	sum     *repo.Summary
	chain   int // backups in its chain, itself and its full backup included
	files   map[string]baseFile
	corrupt map[string][]uint32 // the damaged pages it lists, by file
}

type baseFile struct {
	size  int64
	mtime time.Time
	crc   string // of the file's content, unless delta
	delta bool   // the base (or the backup its content comes from) holds pages of it only
}

// chooseBase finds the backup an incremental backup of cluster sysID (PostgreSQL major
// version major, data checksums on or off) builds on: the newest one, whose whole chain is in the repository and
// readable. nil, with the reason logged, means a full backup.
func (p *Pusher) chooseBase(ctx context.Context, sysID repo.SystemID, major int, checksums bool) (*base, error) {
	mode := p.Opt.Incremental
	if mode == "" || mode == IncrementalOff {
		return nil, nil
	}
	full := func(why string, args ...any) (*base, error) {
		p.Log.Info("taking a full backup: "+why, args...)
		return nil, nil
	}
	backups, _, err := p.Repo.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	if len(backups) == 0 {
		return full("the repository holds no backup to base an incremental one on")
	}
	parent := backups[len(backups)-1]
	switch {
	case parent.SystemID != sysID || parent.PGVersion != major:
		return full("the newest backup is of another cluster or PostgreSQL version", "backup", parent.Name)
	case parent.DataChecksums != checksums:
		// pg_checksums rewrote every page without changing its LSN.
		return full("data checksums were turned on or off since the newest backup", "backup", parent.Name)
	case parent.Format < repo.ManifestFormat:
		return full("the newest backup was written by an older pgb (manifest format 1)", "backup", parent.Name)
	}
	chain, err := repo.Chain(backups, parent.Name)
	if err != nil {
		p.Log.Warn("the newest backup cannot be the base of an incremental one", "backup", parent.Name, "error", err)
		return full("the newest backup's chain is incomplete")
	}
	every := p.Opt.FullEvery
	if every <= 0 {
		every = DefaultFullEvery
	}
	switch {
	case mode == IncrementalAuto && len(chain) >= every:
		return full("the newest chain holds as many backups as --full-every allows", "backups", len(chain), "full_every", every)
	case len(chain) >= repo.MaxChain:
		return full("the newest chain is as long as pgb allows", "backups", len(chain))
	}
	m, err := p.Repo.Manifest(ctx, parent)
	switch {
	case errors.Is(err, repo.ErrNoKey) || errors.Is(err, repo.ErrWrongKey):
		// An encrypted repository written with recipients only: the parent's file
		// list cannot be read here.
		p.Log.Warn("an incremental backup needs to read the newest backup's manifest, and this host holds no identity that decrypts it (encryption-identity-file)", "backup", parent.Name)
		return full("the newest backup's manifest cannot be decrypted")
	case errors.Is(err, repo.ErrDamagedBackup) || errors.Is(err, repo.ErrNewerFormat):
		p.Log.Warn("the newest backup's manifest is unusable", "backup", parent.Name, "error", err)
		return full("the newest backup cannot be read")
	case err != nil:
		return nil, err
	}
	defer func() { _ = m.Close() }() // read whole: no list
	b := &base{sum: parent, chain: len(chain), files: make(map[string]baseFile, m.FileCount), corrupt: map[string][]uint32{}}
	for _, c := range m.Corrupt {
		b.corrupt[c.Path] = append(b.corrupt[c.Path], c.Blocks...)
	}
	for _, f := range m.Files {
		bf := baseFile{size: f.Size, mtime: f.MTime, crc: f.CRC, delta: f.Delta()}
		if f.Unchanged() {
			bf.delta = true // its content's checksum is not known here: never compared
		}
		b.files[f.Path] = bf
	}
	return b, nil
}

// increment is what an incremental backup judges each file by.
type increment struct {
	base          *base
	since         wal.LSN   // the base's start: pages with an LSN before it are the base's
	notAfter      time.Time // files modified before this were not written since the base started
	checksumDelta bool      // read every file, trusting no size and time

	mu  sync.Mutex
	dbs map[string]bool // database directory → created since the base (its files stored whole)
}

func newIncrement(b *base, checksumDelta bool) *increment {
	return &increment{base: b, since: b.sum.StartLSN, notAfter: b.sum.StartTime.Add(-mtimeSlack),
		checksumDelta: checksumDelta, dbs: map[string]bool{}}
}

// kind is how an incremental backup stores a file.
type kind int

const (
	storeWhole     kind = iota // as a full backup does
	storeUnchanged             // not at all: the base's copy
	storePages                 // the blocks in the map
)

// judgement is what judge decided for one file, with the file open for storePages
// (the caller closes it).
type judgement struct {
	kind  kind
	file  repo.File // storeUnchanged: the entry
	pages pagemap.Map
	f     *os.File
	size  int64
}

// judge decides how to store the file e (e.abs set). A file that vanished is
// storeUnchanged with an empty path.
//
// A file is unchanged without being read when its size and modification time are the
// base's and that time is before the base started (less mtimeSlack): it has not been
// written since before the base read it. --checksum-delta trusts no time: every file
// is read. A main-fork relation file (pagemap.Eligible) is read page by page: the
// pages changed since the base's start (pagemap.Changed), and those beyond the base's
// end of the file, are stored; none, and the same size, is unchanged. Its database
// must not have been created since the base (see recreated). Any other file is stored
// whole unless --checksum-delta finds its content the base's.
func (in *increment) judge(e entry, open openFunc, buf []byte, ck *pageChecker, done *atomic.Int64) (judgement, error) {
	bf, inBase := in.base.files[e.path]
	if !inBase || e.path == controlFile {
		// pg_control is always stored: the parent's would end the recovery of a
		// backup taken on a standby at the parent's minimum recovery point.
		return judgement{kind: storeWhole}, nil
	}
	eligible := pagemap.Eligible(e.path) && !in.recreated(e)
	f, err := open(e.abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return judgement{kind: storeUnchanged}, nil
		}
		return judgement{kind: storeWhole}, nil // copyFile reports it as for a full backup
	}
	keep := false
	defer func() {
		if !keep {
			_ = f.Close() // read only
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return judgement{}, fmt.Errorf("stat %s: %w", e.abs, err)
	}
	size := fi.Size()
	unchanged := judgement{kind: storeUnchanged, file: repo.File{Path: e.path, Size: size, Mode: uint32(e.mode),
		MTime: fi.ModTime().UTC(), CRC: bf.crc}}
	if !in.checksumDelta && size == bf.size && fi.ModTime().Equal(bf.mtime) && fi.ModTime().Before(in.notAfter) &&
		(eligible || !pagemap.Eligible(e.path)) {
		done.Add(size)
		ck.carry(e.path, in.base.corrupt[e.path]) // unread: the base's copy, damaged pages and all
		return unchanged, nil
	}
	if !eligible {
		if in.checksumDelta && !bf.delta && size == bf.size {
			crc, n, err := fileCRC(f, size, buf)
			if err != nil {
				return judgement{}, fmt.Errorf("read %s: %w", e.abs, err)
			}
			if n == size && crc == bf.crc {
				done.Add(size)
				ck.carry(e.path, in.base.corrupt[e.path]) // not page-checked here: the base's bytes
				return unchanged, nil
			}
		}
		return judgement{kind: storeWhole}, nil
	}
	pages, err := in.scan(f, e.path, size, bf.size, buf, ck, done)
	if err != nil {
		return judgement{}, fmt.Errorf("read %s: %w", e.abs, err)
	}
	switch {
	case pages.Len() == 0 && size == bf.size:
		return unchanged, nil
	case int64(pages.Len())*wholeShare > pagemap.Blocks(size):
		return judgement{kind: storeWhole}, nil
	}
	keep = true
	return judgement{kind: storePages, pages: pages, f: f, size: size}, nil
}

// scan reads size bytes of f and returns the blocks to store: those Changed since the
// base's start, and every block from the base's last whole one on. Blocks the file no
// longer has when read (it shrank) are stored too, as zeros.
func (in *increment) scan(f *os.File, path string, size, baseSize int64, buf []byte, ck *pageChecker, done *atomic.Int64) (pagemap.Map, error) {
	if pagemap.Blocks(size) > pagemap.MaxBlocks {
		return pagemap.Map{}, fmt.Errorf("a relation file of %d bytes", size)
	}
	firstNew := uint32(min(baseSize/pagemap.BlockSize, pagemap.MaxBlocks))
	var m pagemap.Map
	buf = buf[:len(buf)/pagemap.BlockSize*pagemap.BlockSize]
	var off int64
	for off < size {
		want := min(int64(len(buf)), size-off)
		n, err := io.ReadFull(f, buf[:want])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return pagemap.Map{}, err
		}
		ck.chunk(f, path, off, buf[:n])
		for i := int64(0); i < want; i += pagemap.BlockSize {
			b := uint32((off + i) / pagemap.BlockSize)
			end := min(i+pagemap.BlockSize, want)
			if end > int64(n) || b >= firstNew || pagemap.Changed(buf[i:end], pagemap.LSN(in.since)) {
				m.Add(b)
			}
		}
		off += want
		done.Add(want)
		if int64(n) < want {
			for b := uint32(off / pagemap.BlockSize); int64(b) < pagemap.Blocks(size); b++ {
				m.Add(b) // shrunk: the rest is stored as zeros
			}
			done.Add(size - off)
			break
		}
	}
	return m, nil
}

// recreated says whether e's database directory was created since the base: its
// PG_VERSION is not the base's, or was written after the base started. Such a
// directory may hold files copied from a template (CREATE DATABASE … STRATEGY
// FILE_COPY, ALTER DATABASE … SET TABLESPACE) that keep the template's old page
// LSNs where the base holds another database of the same OID: every file of it is
// stored whole.
func (in *increment) recreated(e entry) bool {
	dir := path.Dir(e.path)
	in.mu.Lock()
	defer in.mu.Unlock()
	if r, ok := in.dbs[dir]; ok {
		return r
	}
	r := true
	if bf, ok := in.base.files[dir+"/PG_VERSION"]; ok {
		fi, err := os.Lstat(filepath.Join(filepath.Dir(e.abs), "PG_VERSION"))
		r = err != nil || !fi.Mode().IsRegular() || fi.Size() != bf.size || !fi.ModTime().Equal(bf.mtime) ||
			!fi.ModTime().Before(in.notAfter)
	}
	in.dbs[dir] = r
	return r
}

// fileCRC is the CRC-32C of the first size bytes of f and how many it had.
func fileCRC(f *os.File, size int64, buf []byte) (string, int64, error) {
	crc := crc32c.New()
	n, err := io.CopyBuffer(crc, io.LimitReader(f, size), buf)
	if err != nil {
		return "", n, err
	}
	return crc32c.Hex(crc.Sum32()), n, nil
}

// copyPages appends the blocks j.pages lists of the file j.f, e.path, to a tar stream:
// its entry holds the encoded map, then the blocks in block order. A block the file no longer has (it shrank) is
// stored as zeros, as copyFile does.
func copyPages(tw *tar.Writer, e entry, j judgement, buf []byte) (repo.File, int64, error) {
	fi, err := j.f.Stat()
	if err != nil {
		return repo.File{}, 0, fmt.Errorf("stat %s: %w", e.abs, err)
	}
	enc, err := j.pages.MarshalBinary()
	if err != nil {
		return repo.File{}, 0, err
	}
	layer := pagemap.Layer{Size: j.size, Map: j.pages}
	stored := int64(len(enc)) + layer.Stored()
	hdr := &tar.Header{Name: e.path, Size: stored, Mode: int64(e.mode), ModTime: fi.ModTime().Truncate(time.Second), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return repo.File{}, 0, err
	}
	crc := crc32c.New()
	crc.Write(enc)
	if _, err := tw.Write(enc); err != nil {
		return repo.File{}, 0, err
	}
	page := buf[:pagemap.BlockSize]
	var rerr error
	j.pages.Blocks(func(b uint32) bool {
		off := int64(b) * pagemap.BlockSize
		p := page[:min(pagemap.BlockSize, j.size-off)]
		n, err := j.f.ReadAt(p, off)
		if err != nil && err != io.EOF {
			rerr = fmt.Errorf("read %s: %w", e.abs, err)
			return false
		}
		clear(p[n:])
		crc.Write(p)
		if _, err := tw.Write(p); err != nil {
			rerr = err
			return false
		}
		return true
	})
	if rerr != nil {
		return repo.File{}, 0, rerr
	}
	return repo.File{Path: e.path, Size: j.size, Mode: uint32(e.mode), MTime: fi.ModTime().UTC(), CRC: crc32c.Hex(crc.Sum32()),
		MapLen: int64(len(enc)), Stored: stored}, stored, nil
}
