package restore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/repo"
)

func layerOf(name, parent string, files ...repo.File) *repo.Manifest {
	return &repo.Manifest{Summary: repo.Summary{Name: name, Parent: parent}, Files: files}
}

func whole(p string, size int64) repo.File { return repo.File{Path: p, Size: size, Part: 1} }
func same(p string, size int64) repo.File  { return repo.File{Path: p, Size: size} }
func pages(t *testing.T, p string, size int64, blocks ...uint32) repo.File {
	t.Helper()
	enc, err := pagemap.Of(blocks...).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	l := pagemap.Layer{Size: size, Map: pagemap.Of(blocks...)}
	return repo.File{Path: p, Size: size, Part: 1, MapLen: int64(len(enc)), Stored: int64(len(enc)) + l.Stored()}
}

// The parts a chain restore needs start newest backup first, each backup's costliest
// first: every page of a file a newer backup patches is written before the copy it
// patches fills the blocks around it, and the disk gets each page once.
func TestChainJobsPatchBeforeTheyFill(t *testing.T) {
	const b = pagemap.BlockSize
	in := func(f repo.File, part int) repo.File { f.Part = part; return f }
	full := layerOf("f", "", in(whole("a", 4*b), 2), in(whole("b", 2*b), 1), in(whole("gone", b), 3))
	full.Parts = []repo.Part{{N: 1, Files: 1, Size: 2 * b}, {N: 2, Files: 1, Size: 4 * b}, {N: 3, Files: 1, Size: b}}
	i1 := layerOf("i1", "f", in(pages(t, "a", 4*b, 0, 1), 1), same("b", 2*b), in(whole("c", 9*b), 2))
	i1.Parts = []repo.Part{{N: 1, Files: 1, Size: 2 * b}, {N: 2, Files: 1, Size: 9 * b}}
	i2 := layerOf("i2", "i1", in(pages(t, "a", 4*b, 3), 1), same("b", 2*b), same("c", 9*b))
	i2.Parts = []repo.Part{{N: 1, Files: 1, Size: b}}
	chain := []*repo.Manifest{full, i1, i2}
	plan, err := chainPlan(chain)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := chainJobs(chain, plan)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, fmt.Sprintf("%s/%d", chain[j.k].Name, j.pt.N))
	}
	// Part 3 of the full backup holds only a file the newest backup does not list.
	if want := []string{"i2/1", "i1/2", "i1/1", "f/2", "f/1"}; !slices.Equal(got, want) {
		t.Errorf("parts in the order %v, want %v", got, want)
	}
}

// chainPlan finds, for each file of the newest backup, the backup holding it whole and
// those patching it, and refuses a chain whose entries do not follow each other.
func TestChainPlan(t *testing.T) {
	const b = pagemap.BlockSize
	full := layerOf("f", "", whole("a", 4*b), whole("b", 2*b), whole("gone", b))
	i1 := layerOf("i1", "f", same("a", 4*b), pages(t, "b", 3*b, 0, 2), whole("c", b))
	i2 := layerOf("i2", "i1", pages(t, "a", 3*b, 1), same("b", 3*b), same("c", b))
	plan, err := chainPlan([]*repo.Manifest{full, i1, i2})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		from   int
		deltas uint64
	}{"a": {0, 1 << 2}, "b": {0, 1 << 1}, "c": {1, 0}}
	if len(plan) != len(want) {
		t.Fatalf("plan of %d files, want %d", len(plan), len(want))
	}
	for p, w := range want {
		if got := plan[p]; got == nil || got.from != w.from || got.deltas != w.deltas {
			t.Errorf("%s: %+v, want %+v", p, got, w)
		}
	}
	// A file's pages are checked, when read, against its size in the backup before.
	if plan["a"].prev[2] != 4*b || plan["b"].prev[1] != 2*b {
		t.Errorf("sizes before the pages: a %v, b %v", plan["a"].prev, plan["b"].prev)
	}
	for _, tc := range []struct {
		name  string
		chain []*repo.Manifest
	}{
		{"unchanged with another size", []*repo.Manifest{full, layerOf("i1", "f", same("a", 3*b), whole("b", b), whole("gone", b))}},
		{"held whole nowhere", []*repo.Manifest{full, layerOf("i1", "f", same("new", b), whole("b", b), whole("gone", b))}},
		{"the full backup lists it unchanged", []*repo.Manifest{layerOf("f", "", same("a", b)), layerOf("i1", "f", same("a", b))}},
		{"listed twice", []*repo.Manifest{full, layerOf("i1", "f", whole("a", b), whole("a", b))}},
		{"held whole twice in an older backup", []*repo.Manifest{layerOf("f", "", whole("a", 2*b), whole("a", 2*b)), layerOf("i1", "f", pages(t, "a", 2*b, 1))}},
		{"pages on a copy the parent does not list", []*repo.Manifest{full, layerOf("i1", "f", whole("b", b)), layerOf("i2", "i1", pages(t, "a", 4*b, 1), same("b", b))}},
		{"unchanged since a parent that does not list it", []*repo.Manifest{full, layerOf("i1", "f", whole("b", b)), layerOf("i2", "i1", same("a", 4*b), same("b", b))}},
	} {
		if _, err := chainPlan(tc.chain); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: chainPlan = %v, want ErrDamaged", tc.name, err)
		}
	}
}

// A file that incremental backups patch is written by the backups of the chain at
// once, in any order (layered); what comes out must be what
// pagemap.Reconstruct makes of the same copies oldest first, whatever the chain did to
// the file: extended, truncated (to a partial block too), extended again, rewritten
// here and there.
func TestChainFilesComeOutAsReconstructBuildsThem(t *testing.T) {
	const b = pagemap.BlockSize
	rnd := rand.New(rand.NewPCG(13, 1))
	size := func() int64 {
		s := rnd.Int64N(12) * b
		if rnd.IntN(4) == 0 {
			s = (lockBlocks - 8 + rnd.Int64N(2*lockBlocks)) * b // across locks' runs of blocks
		}
		if rnd.IntN(5) == 0 {
			s += 1 + rnd.Int64N(b-1) // a partial last block
		}
		return s
	}
	content := func(n int64) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rnd.IntN(256))
		}
		return p
	}
	trials := 300
	if testing.Short() {
		trials = 60 // make race
	}
	for trial := range trials {
		dir := t.TempDir()
		r := &Restorer{Opt: Options{DataDir: dir}}
		baseSize := size()
		base := content(baseSize)
		var (
			layers  []pagemap.Layer
			entries [][]byte
			files   []repo.File
		)
		prev := baseSize
		for range 1 + rnd.IntN(5) {
			s := size()
			n := uint32(pagemap.Blocks(s))
			var blocks []uint32
			for blk := uint32(0); blk < n; blk++ {
				if int64(blk) >= prev/b || (blk == n-1 && s%b != 0) || rnd.IntN(3) == 0 {
					blocks = append(blocks, blk)
				}
			}
			l := pagemap.Layer{Size: s, Map: pagemap.Of(blocks...)}
			pg := content(l.Stored())
			enc, err := l.Map.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			entry := slices.Concat(enc, pg)
			l.Pages = bytes.NewReader(pg)
			layers = append(layers, l)
			entries = append(entries, entry)
			files = append(files, repo.File{Path: "base/5/16384", Size: s, MapLen: int64(len(enc)), Stored: int64(len(entry)), CRC: crc32c.Hex(crc32c.Checksum(entry))})
			prev = s
		}
		var want bytes.Buffer
		if _, err := pagemap.Reconstruct(&want, bytes.NewReader(base), baseSize, layers); err != nil {
			t.Fatalf("trial %d: Reconstruct: %v", trial, err)
		}
		chain := []*repo.Manifest{layerOf("f", "", repo.File{Path: "base/5/16384", Size: baseSize, Part: 1, CRC: crc32c.Hex(crc32c.Checksum(base))})}
		for i, f := range files {
			f.Part = 1
			chain = append(chain, layerOf(fmt.Sprint("i", i+1), chain[i].Name, f))
		}
		plan, err := chainPlan(chain)
		if err != nil {
			t.Fatalf("trial %d: chainPlan: %v", trial, err)
		}
		p := plan["base/5/16384"]
		if err := os.MkdirAll(filepath.Join(dir, "base/5"), 0o700); err != nil {
			t.Fatal(err)
		}
		p.lay = newLayered(p)
		var done atomic.Int64
		// The backups come at once, in any order: restore reads their parts so.
		errs := make([]error, len(chain))
		var wg sync.WaitGroup
		for _, k := range rnd.Perm(len(chain)) {
			buf := make([]byte, (1+rnd.IntN(4))*b) // runs longer than buf are written in pieces
			wg.Go(func() {
				if k == 0 {
					errs[k] = r.fillFile(bytes.NewReader(base), &chain[0].Files[0], p, nil, buf, &done)
				} else {
					errs[k] = r.patchFile(bytes.NewReader(entries[k-1]), &chain[k].Files[0], p, k, nil, buf, &done)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "base/5/16384"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("trial %d: restored %d bytes differ from the %d Reconstruct makes (base %d bytes, layers %v)", trial, len(got), want.Len(), baseSize, files)
		}
		if done.Load() != int64(want.Len()) {
			t.Fatalf("trial %d: progress counts %d bytes for a file of %d", trial, done.Load(), want.Len())
		}
	}
}

// Each backup of the chain writes a patched file once: a second whole copy, or pages
// after the file was finished, are damage, never a panic or a rewrite.
func TestLayeredFileTakesEachBackupOnce(t *testing.T) {
	const b = pagemap.BlockSize
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "base/5"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := &Restorer{Opt: Options{DataDir: dir}}
	base := bytes.Repeat([]byte{1}, 2*b)
	l := pagemap.Layer{Size: 2 * b, Map: pagemap.Of(1)}
	enc, err := l.Map.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	entry := slices.Concat(enc, bytes.Repeat([]byte{2}, b))
	full := repo.File{Path: "base/5/16384", Size: 2 * b, CRC: crc32c.Hex(crc32c.Checksum(base))}
	incr := repo.File{Path: "base/5/16384", Size: 2 * b, MapLen: int64(len(enc)), Stored: int64(len(entry)), CRC: crc32c.Hex(crc32c.Checksum(entry))}
	p := &filePlan{size: 2 * b, from: 0, deltas: 1 << 1, prev: []int64{0, 2 * b}}
	p.lay = newLayered(p)
	var done atomic.Int64
	buf := make([]byte, 4*b)
	if err := r.fillFile(bytes.NewReader(base), &full, p, nil, buf, &done); err != nil {
		t.Fatal(err)
	}
	if err := r.fillFile(bytes.NewReader(base), &full, p, nil, buf, &done); !errors.Is(err, ErrDamaged) {
		t.Fatalf("a second whole copy from the same backup: %v, want ErrDamaged", err)
	}
	if err := r.patchFile(bytes.NewReader(entry), &incr, p, 1, nil, buf, &done); err != nil {
		t.Fatal(err)
	}
	if err := r.patchFile(bytes.NewReader(entry), &incr, p, 1, nil, buf, &done); !errors.Is(err, ErrDamaged) {
		t.Fatalf("pages after the file was finished: %v, want ErrDamaged", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "base/5/16384"))
	if err != nil || !bytes.Equal(got, slices.Concat(base[:b], bytes.Repeat([]byte{2}, b))) {
		t.Fatalf("the file after the refused writes: %v", err)
	}
}
