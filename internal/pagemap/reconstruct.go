package pagemap

import (
	"errors"
	"fmt"
	"io"
)

// Layer is one increment of a file: its size in the backup that took it, the blocks
// it stores (Map), and their bytes in ascending block order (Pages: each block
// BlockSize bytes, except a last block of the file shorter when Size is not a
// multiple of BlockSize).
type Layer struct {
	Size  int64
	Map   Map
	Pages io.Reader
}

// Check says whether an increment can follow a copy of the file of prevSize bytes:
// its blocks lie inside Size, and it stores every block the previous copy did not hold
// whole (blocks from prevSize/BlockSize on) and its own last block when that is
// partial. Scan makes maps that pass it; a manifest whose map does not is corrupt.
func (l Layer) Check(prevSize int64) error {
	if l.Size < 0 || Blocks(l.Size) > MaxBlocks {
		return fmt.Errorf("%w: an increment of a file of %d bytes", ErrCorrupt, l.Size)
	}
	n := uint32(Blocks(l.Size))
	if k := len(l.Map.runs); k > 0 {
		if last := l.Map.runs[k-1]; uint64(last.start)+uint64(last.n) > uint64(n) {
			return fmt.Errorf("%w: block %d stored for a file of %d blocks", ErrCorrupt, uint64(last.start)+uint64(last.n)-1, n)
		}
	}
	from := uint32(0)
	if prevSize > 0 {
		from = uint32(min(prevSize/BlockSize, MaxBlocks))
	}
	for b := from; b < n; b++ {
		if !l.Map.Has(b) {
			return fmt.Errorf("%w: block %d is new since the previous backup (%d bytes) but not stored", ErrCorrupt, b, prevSize)
		}
	}
	if l.Size%BlockSize != 0 && !l.Map.Has(n-1) {
		return fmt.Errorf("%w: the partial last block %d is not stored", ErrCorrupt, n-1)
	}
	return nil
}

// blockLen is the length of block b of a file of size bytes.
func blockLen(size int64, b uint32) int {
	return int(min(BlockSize, size-int64(b)*BlockSize))
}

// Stored is how many bytes of pages l.Pages must hold.
func (l Layer) Stored() int64 {
	var n int64
	l.Map.Blocks(func(b uint32) bool {
		n += int64(blockLen(l.Size, b))
		return true
	})
	return n
}

// cursor walks one layer's blocks and pages.
type cursor struct {
	Layer
	blocks []uint32 // not yet read, ascending
	src    string   // for errors
}

// Reconstruct writes to w the file that a full copy of baseSize bytes (base) and
// increments of it (layers, oldest first) make together: each block from the newest
// layer that stores it, else from base. It checks every layer against the one before
// (Check) before writing anything, reads every reader to its end, and returns
// ErrCorrupt when one ends early or holds more than its map and size say. It returns
// the bytes written: the newest layer's Size (baseSize without layers).
//
// Memory is one block, plus 4 bytes per block a layer stores (its block list): the
// blocks are merged as they stream.
func Reconstruct(w io.Writer, base io.Reader, baseSize int64, layers []Layer) (int64, error) {
	if baseSize < 0 || Blocks(baseSize) > MaxBlocks {
		return 0, fmt.Errorf("%w: a full copy of %d bytes", ErrCorrupt, baseSize)
	}
	prev, final := baseSize, baseSize
	cs := make([]*cursor, len(layers))
	for i, l := range layers {
		if err := l.Check(prev); err != nil {
			return 0, fmt.Errorf("increment %d: %w", i+1, err)
		}
		c := &cursor{Layer: l, src: fmt.Sprintf("increment %d", i+1)}
		c.blocks = make([]uint32, 0, l.Map.Len())
		l.Map.Blocks(func(b uint32) bool { c.blocks = append(c.blocks, b); return true })
		cs[i] = c
		prev, final = l.Size, l.Size
	}
	buf := make([]byte, BlockSize)
	var written int64
	nBase := uint32(Blocks(baseSize))
	for b := uint32(0); b < uint32(Blocks(final)); b++ {
		want := blockLen(final, b)
		var page []byte
		// Every layer storing b is read, newest last, so the newest one's bytes stay.
		for _, c := range cs {
			if len(c.blocks) == 0 || c.blocks[0] != b {
				continue
			}
			c.blocks = c.blocks[1:]
			p := buf[:blockLen(c.Size, b)]
			if _, err := io.ReadFull(c.Pages, p); err != nil {
				return written, ended(c.src, b, err)
			}
			page = p
		}
		if b < nBase {
			if page == nil {
				page = buf[:blockLen(baseSize, b)]
				if _, err := io.ReadFull(base, page); err != nil {
					return written, ended("the full copy", b, err)
				}
			} else if _, err := io.CopyN(io.Discard, base, int64(blockLen(baseSize, b))); err != nil {
				return written, ended("the full copy", b, err)
			}
		}
		if len(page) != want {
			// Check rules this out: a block whose length changed is stored anew.
			return written, fmt.Errorf("%w: block %d has %d bytes, want %d", ErrCorrupt, b, len(page), want)
		}
		n, err := w.Write(page)
		written += int64(n)
		if err != nil {
			return written, err
		}
	}
	// Blocks beyond the final size (stored before a later truncation) are read past,
	// and every reader must end where its map and size say.
	for _, c := range cs {
		for _, b := range c.blocks {
			if _, err := io.CopyN(io.Discard, c.Pages, int64(blockLen(c.Size, b))); err != nil {
				return written, ended(c.src, b, err)
			}
		}
		if err := atEnd(c.Pages, c.src); err != nil {
			return written, err
		}
	}
	if rest := baseSize - int64(min(nBase, uint32(Blocks(final))))*BlockSize; rest > 0 {
		if _, err := io.CopyN(io.Discard, base, rest); err != nil {
			return written, ended("the full copy", nBase-1, err)
		}
	}
	if err := atEnd(base, "the full copy"); err != nil {
		return written, err
	}
	return written, nil
}

// ended describes a reader that failed or ended before block b.
func ended(src string, b uint32, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s ends before block %d", ErrCorrupt, src, b)
	}
	return fmt.Errorf("%s, block %d: %w", src, b, err)
}

// atEnd checks that r holds nothing more.
func atEnd(r io.Reader, src string) error {
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	switch {
	case n > 0:
		return fmt.Errorf("%w: %s holds more than its page map says", ErrCorrupt, src)
	case errors.Is(err, io.EOF):
		return nil
	default:
		return fmt.Errorf("%s: %w", src, err)
	}
}
