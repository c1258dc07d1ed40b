package repo

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// FuzzStreamedChunks stores hostile objects under hostile chunk names of one segment
// and reads the segment as wal-fetch would: names that are not chunks are ignored, the
// cover never has a hole or reaches past 1 GiB, and reading fails or gives a segment,
// never panics.
func FuzzStreamedChunks(f *testing.F) {
	ctx := context.Background()
	seed := New(mem.New(), Options{})
	var sealed bytes.Buffer
	ew, _ := seed.seal(&sealed, seed.codec, "wal/x")
	head := make([]byte, 64)
	copy(head, []byte{0x10, 0xD1, 0x02, 0x00, 1, 0, 0, 0})
	head[34] = 0x00
	head[35] = 0x01 // a 16 MiB segment
	_, _ = ew.Write(head)
	_ = ew.Close()
	f.Add("00000000-00000040", sealed.Bytes())
	f.Add("00000000-00000040\n00000020-00000080\n00000100-00000200", sealed.Bytes())
	f.Add("0000000G-00000040\n00000040-00000000\n-\n40000000-40000001", []byte("PGB"))
	f.Fuzz(func(t *testing.T, names string, data []byte) {
		st := mem.New()
		r := New(st, Options{})
		fl, _ := wal.Parse("000000010000000000000000")
		for i, n := range strings.Split(names, "\n") {
			if i == 8 || strings.ContainsAny(n, "/.") || n == "" {
				break
			}
			_ = st.Put(ctx, chunkPrefix(fl)+n, bytes.NewReader(data), storage.PutOptions{})
		}
		cs, err := r.ListWALChunks(ctx, fl)
		if err != nil {
			t.Fatal(err)
		}
		c := CoverFromStart(cs)
		pos := int64(0)
		for _, p := range c.Parts {
			if p.Start > pos || p.End <= pos || p.Skip != pos-p.Start || p.End > maxChunkEnd {
				t.Fatalf("cover part %+v at %d", p, pos)
			}
			pos = p.End
		}
		if pos != c.End {
			t.Fatalf("cover ends at %d, parts at %d", c.End, pos)
		}
		s, err := r.OpenStreamedWAL(ctx, fl)
		if err != nil {
			return
		}
		defer func() { _ = s.Close() }()
		n, _ := io.Copy(io.Discard, io.LimitReader(s, 2<<20))
		if n > s.SegSize {
			t.Fatalf("read %d bytes of a %d-byte segment", n, s.SegSize)
		}
	})
}
