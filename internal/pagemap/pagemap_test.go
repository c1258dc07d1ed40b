package pagemap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func blocksOf(m Map) []uint32 {
	var out []uint32
	m.Blocks(func(b uint32) bool { out = append(out, b); return true })
	return out
}

func TestMapHoldsSortedRunsAndEncodesEachSetOneWay(t *testing.T) {
	m := Of(9, 3, 4, 5, 100, 4, 0, 101)
	want := []uint32{0, 3, 4, 5, 9, 100, 101}
	if got := blocksOf(m); !equalU32(got, want) || m.Len() != len(want) {
		t.Fatalf("blocks %v (len %d), want %v", got, m.Len(), want)
	}
	if len(m.runs) != 4 {
		t.Fatalf("runs %v, want 4 (adjacent blocks merged)", m.runs)
	}
	for b := uint32(0); b < 110; b++ {
		in := false
		for _, w := range want {
			in = in || w == b
		}
		if m.Has(b) != in {
			t.Fatalf("Has(%d) = %v", b, !in)
		}
	}
	enc, _ := m.MarshalBinary()
	got, err := Decode(enc, 102)
	if err != nil || !got.Equal(m) {
		t.Fatalf("round trip: %v, %v", blocksOf(got), err)
	}
	if _, err := Decode(enc, 101); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("block 101 in a file of 101 blocks: %v, want ErrCorrupt", err)
	}
	empty, _ := Map{}.MarshalBinary()
	if got, err := Decode(empty, 0); err != nil || got.Len() != 0 {
		t.Fatalf("empty map: %v, %v", got, err)
	}
}

func TestAddingABlockBelowTheLastPanics(t *testing.T) {
	var m Map
	m.Add(5)
	m.Add(5) // already in: fine
	defer func() {
		if recover() == nil {
			t.Fatal("Add(4) after Add(5) did not panic")
		}
	}()
	m.Add(4)
}

// Every malformed encoding is refused, and none allocates beyond its size: a run count
// of 2^32 in a few bytes is caught before the slice is made.
func TestDecodeRefusesMalformedMaps(t *testing.T) {
	uv := func(vs ...uint64) []byte {
		b := []byte{encodingVersion}
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	for name, data := range map[string][]byte{
		"empty":              nil,
		"other version":      {2, 0},
		"no count":           {encodingVersion},
		"count lies":         uv(1 << 32),
		"count beyond bytes": uv(3, 0, 0),
		"truncated run":      uv(1, 0),
		"adjacent runs":      uv(2, 0, 0, 0, 0),
		"beyond the file":    uv(1, 200, 0),
		"run too long":       uv(1, 0, 1000),
		"trailing bytes":     append(uv(1, 0, 0), 0),
		"padded varint":      {encodingVersion, 1, 0x80, 0x00, 0},
		"overlong varint":    {encodingVersion, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
	} {
		if _, err := Decode(data, 100); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := Decode(uv(0), MaxBlocks+1); !errors.Is(err, ErrCorrupt) {
		t.Errorf("limit beyond MaxBlocks: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []Map{{}, Of(0), Of(1, 2, 3, 7, 8, 99)} {
		b, _ := m.MarshalBinary()
		f.Add(b, uint32(100))
	}
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint32(MaxBlocks))
	f.Fuzz(func(t *testing.T, data []byte, limit uint32) {
		m, err := Decode(data, limit)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if m.Len() > int(limit) {
			t.Fatalf("%d blocks in a file of %d", m.Len(), limit)
		}
		last := int64(-1)
		m.Blocks(func(b uint32) bool {
			if int64(b) <= last || b >= limit {
				t.Fatalf("block %d after %d (limit %d)", b, last, limit)
			}
			last = int64(b)
			return true
		})
		enc, _ := m.MarshalBinary()
		if !bytes.Equal(enc, data) {
			t.Fatalf("accepted an encoding that is not the set's own: %x, re-encoded %x", data, enc)
		}
	})
}

// page makes a valid heap-like page with pd_lsn lsn, its body filled with fill.
func page(lsn LSN, fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, BlockSize)
	ne := binary.NativeEndian
	ne.PutUint32(p[0:], uint32(lsn>>32))
	ne.PutUint32(p[4:], uint32(lsn))
	ne.PutUint16(p[8:], 0)           // pd_checksum
	ne.PutUint16(p[offFlags:], 0)    // pd_flags
	ne.PutUint16(p[offLower:], 40)   // pd_lower: four line pointers
	ne.PutUint16(p[offUpper:], 4096) // pd_upper
	ne.PutUint16(p[offSpecial:], BlockSize)
	ne.PutUint16(p[offSizeVers:], BlockSize|layoutVer)
	return p
}

func TestChangedStoresNewerPagesAndEverythingItCannotJudge(t *testing.T) {
	const since = LSN(0x3_0000_0100)
	set := func(p []byte, off int, v uint16) []byte {
		binary.NativeEndian.PutUint16(p[off:], v)
		return p
	}
	for _, c := range []struct {
		name string
		page []byte
		want bool
	}{
		{"older page", page(since-1, 1), false},
		{"page at the base's start", page(since, 1), true},
		{"newer page", page(since+8192, 1), true},
		{"LSN in the high word", page(0x4_0000_0000, 1), true},
		{"new page, all zeros", make([]byte, BlockSize), true},
		{"new page with an old LSN", set(page(1, 0), offUpper, 0), true},
		{"initialised, never WAL-logged (LSN 0)", page(0, 0), true},
		{"partial block", page(1, 1)[:4096], true},
		{"unknown flag bits", set(page(1, 1), offFlags, 0x10), true},
		{"lower above upper", set(page(1, 1), offLower, 5000), true},
		{"lower inside the header", set(page(1, 1), offLower, 8), true},
		{"special beyond the page", set(page(1, 1), offSpecial, BlockSize+8), true},
		{"unaligned special", set(page(1, 1), offSpecial, BlockSize-4), true},
		{"other page size", set(page(1, 1), offSizeVers, 4096|layoutVer), true},
		{"other layout version", set(page(1, 1), offSizeVers, BlockSize|3), true},
		{"index page with special space", set(page(1, 1), offSpecial, BlockSize-16), false},
	} {
		if got := Changed(c.page, since); got != c.want {
			t.Errorf("%s: Changed = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestOnlyMainForksOfPermanentRelationsAreEligible(t *testing.T) {
	for path, want := range map[string]bool{
		"base/16384/16385":   true,
		"base/16384/16385.3": true,
		"global/1262":        true,
		"pg_tblspc/16400/PG_15_202209061/16384/16401":   true,
		"pg_tblspc/16400/PG_15_202209061/16384/16401.1": true,
		"base/16384/16385_vm":                           false,
		"base/16384/16385_fsm":                          false,
		"base/16384/16385_init":                         false,
		"base/16384/t3_16385":                           false,
		"global/pg_control":                             false,
		"base/16384/PG_VERSION":                         false,
		"base/16384/pg_filenode.map":                    false,
		"pg_wal/000000010000000000000001":               false,
		"pg_xact/0000":                                  false,
		"base/16384/16385.":                             false,
		"/base/16384/16385":                             false,
		"base/16384/../16385":                           false,
	} {
		if got := Eligible(path); got != want {
			t.Errorf("Eligible(%q) = %v, want %v", path, got, want)
		}
	}
}

// Scan stores the changed pages, every block the previous copy did not hold whole,
// and a partial last block; the map it makes passes Check.
func TestScanStoresChangedPagesAndWhatThePreviousCopyLacked(t *testing.T) {
	const since = LSN(1000)
	var file []byte
	for _, lsn := range []LSN{10, 2000, 20, 30, 999, 1000, 5} {
		file = append(file, page(lsn, byte(lsn))...)
	}
	file = append(file, page(1, 1)[:100]...) // block 7, partial
	for _, c := range []struct {
		prev int64
		want []uint32
	}{
		{-1, []uint32{0, 1, 2, 3, 4, 5, 6, 7}},      // new file
		{0, []uint32{0, 1, 2, 3, 4, 5, 6, 7}},       // was empty
		{7 * BlockSize, []uint32{1, 5, 7}},          // had the 7 whole blocks
		{5*BlockSize + 10, []uint32{1, 5, 6, 7}},    // block 5 was partial
		{20 * BlockSize, []uint32{1, 5, 7}},         // was longer: truncated since
		{3 * BlockSize, []uint32{1, 3, 4, 5, 6, 7}}, // blocks 3.. are new
	} {
		prev := c.prev
		if prev < 0 {
			prev = -1
		}
		m, err := Scan(bytes.NewReader(file), int64(len(file)), prev, since)
		if err != nil || !equalU32(blocksOf(m), c.want) {
			t.Errorf("prev %d: %v, %v; want %v", c.prev, blocksOf(m), err, c.want)
			continue
		}
		if err := (Layer{Size: int64(len(file)), Map: m}).Check(prev); err != nil {
			t.Errorf("prev %d: the scanned map fails Check: %v", c.prev, err)
		}
	}
	if _, err := Scan(bytes.NewReader(file[:BlockSize]), int64(len(file)), 0, since); err == nil {
		t.Error("a file shorter than its size was scanned")
	}
}

// version is one state of a file in a chain of backups: its bytes, and the blocks an
// increment taking it stores.
type version struct {
	data []byte
	m    Map
}

// chain makes a random history of a file over n increments: truncations, extensions
// (partial last blocks included) and changed blocks, with each increment's map built
// as Scan builds it (changed blocks, blocks the previous copy lacked whole, a partial
// last block).
func chain(r *rand.Rand, n int) []version {
	size := r.IntN(40 * BlockSize)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	out := []version{{data: data}}
	for k := 0; k < n; k++ {
		prev := out[len(out)-1].data
		var next []byte
		switch r.IntN(4) {
		case 0: // truncated
			next = bytes.Clone(prev[:r.IntN(len(prev)+1)])
		case 1: // extended
			next = append(bytes.Clone(prev), make([]byte, r.IntN(10*BlockSize))...)
		case 2: // truncated to a block boundary, then extended again
			cut := (r.IntN(len(prev)/BlockSize + 1)) * BlockSize
			next = append(bytes.Clone(prev[:cut]), make([]byte, r.IntN(10*BlockSize))...)
		default:
			next = bytes.Clone(prev)
		}
		firstNew := uint32(len(prev) / BlockSize)
		changed := map[uint32]bool{}
		nb := uint32(Blocks(int64(len(next))))
		for b := uint32(0); b < nb; b++ {
			// A block truncated away and extended again as zeros differs from the
			// previous copy although nothing wrote it: Changed stores it as a new page.
			lo, hi := int(b)*BlockSize, min(len(next), int(b+1)*BlockSize)
			if b < firstNew && !bytes.Equal(next[lo:hi], prev[lo:hi]) {
				changed[b] = true
			}
			if b >= firstNew || r.IntN(5) == 0 || (b == nb-1 && len(next)%BlockSize != 0) {
				changed[b] = true
				end := min(len(next), int(b+1)*BlockSize)
				for i := int(b) * BlockSize; i < end; i++ {
					next[i] = byte(r.Uint32())
				}
			}
		}
		var m Map
		for b := uint32(0); b < nb; b++ {
			if changed[b] {
				m.Add(b)
			}
		}
		out = append(out, version{data: next, m: m})
	}
	return out
}

// pages are the bytes an increment stores: its map's blocks of its version.
func pages(v version) []byte {
	var out []byte
	v.m.Blocks(func(b uint32) bool {
		end := min(len(v.data), int(b+1)*BlockSize)
		out = append(out, v.data[int(b)*BlockSize:end]...)
		return true
	})
	return out
}

func layersOf(vs []version) []Layer {
	var ls []Layer
	for _, v := range vs[1:] {
		ls = append(ls, Layer{Size: int64(len(v.data)), Map: v.m, Pages: bytes.NewReader(pages(v))})
	}
	return ls
}

// A file rebuilt from its full copy and up to 6 increments is byte for byte the file
// at the newest increment, through truncations, extensions, partial blocks and
// blocks stored by an increment and truncated away by a later one; readers that
// yield one byte at a time change nothing.
func TestReconstructMakesTheNewestVersionFromAnyChain(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		vs := chain(r, 1+r.IntN(6))
		ls := layersOf(vs)
		if seed%3 == 0 {
			for i := range ls {
				ls[i].Pages = iotest.OneByteReader(ls[i].Pages)
			}
		}
		for i, l := range ls {
			if got := l.Stored(); got != int64(len(pages(vs[i+1]))) {
				t.Fatalf("seed %d: Stored %d, want %d", seed, got, len(pages(vs[i+1])))
			}
		}
		var out bytes.Buffer
		n, err := Reconstruct(&out, bytes.NewReader(vs[0].data), int64(len(vs[0].data)), ls)
		want := vs[len(vs)-1].data
		if err != nil || n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("seed %d (%d increments): %d bytes, %v; want %d bytes, equal %v", seed, len(ls), n, err, len(want), bytes.Equal(out.Bytes(), want))
		}
	}
}

// Damage anywhere is ErrCorrupt, never a short or wrong file reported as whole: an
// increment or the full copy shorter or longer than its map and size say, or an
// increment that does not store a block the previous copy lacked.
func TestReconstructRefusesDamagedChains(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var vs []version
	for vs == nil || len(vs[1].data) <= len(vs[0].data)+BlockSize || vs[1].m.Len() < 3 || len(vs[0].data) < BlockSize {
		vs = chain(r, 1)
	}
	base, pg := vs[0].data, pages(vs[1])
	size := int64(len(vs[1].data))
	run := func(base []byte, l Layer) error {
		_, err := Reconstruct(io.Discard, bytes.NewReader(base), int64(len(vs[0].data)), []Layer{l})
		return err
	}
	if err := run(base, Layer{Size: size, Map: vs[1].m, Pages: bytes.NewReader(pg)}); err != nil {
		t.Fatalf("the undamaged chain: %v", err)
	}
	for name, c := range map[string]struct {
		base []byte
		l    Layer
	}{
		"increment short":   {base, Layer{Size: size, Map: vs[1].m, Pages: bytes.NewReader(pg[:len(pg)-1])}},
		"increment long":    {base, Layer{Size: size, Map: vs[1].m, Pages: bytes.NewReader(append(bytes.Clone(pg), 0))}},
		"full copy short":   {base[:len(base)-1], Layer{Size: size, Map: vs[1].m, Pages: bytes.NewReader(pg)}},
		"full copy long":    {append(bytes.Clone(base), 0), Layer{Size: size, Map: vs[1].m, Pages: bytes.NewReader(pg)}},
		"new block missing": {base, Layer{Size: size + BlockSize, Map: vs[1].m, Pages: bytes.NewReader(pg)}},
		"block beyond size": {base, Layer{Size: BlockSize, Map: Of(0, 1), Pages: bytes.NewReader(make([]byte, 2*BlockSize))}},
	} {
		if err := run(c.base, c.l); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	failing := errors.New("injected read failure")
	err := run(base, Layer{Size: size, Map: vs[1].m, Pages: iotest.ErrReader(failing)})
	if !errors.Is(err, failing) || errors.Is(err, ErrCorrupt) {
		t.Errorf("a failing reader: %v, want its own error, not ErrCorrupt", err)
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
