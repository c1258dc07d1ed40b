package restore

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// The read-ahead hands on every byte of its source in order, then the source's own
// error: a damaged part's error is never lost nor taken for its end.
func TestReadAheadPassesBytesThenTheSourcesError(t *testing.T) {
	data := randomBytes(7, 3*readAheadChunk+12345)
	broken := errors.New("the part's trailer does not match")
	for _, tc := range []struct {
		name string
		src  io.Reader
		want error
	}{
		{"whole", bytes.NewReader(data), nil},
		{"one byte per read", iotest.OneByteReader(bytes.NewReader(data[:70_000])), nil},
		{"fails at the end", io.MultiReader(bytes.NewReader(data), iotest.ErrReader(broken)), broken},
		{"fails at once", iotest.ErrReader(broken), broken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := newReadAhead(tc.src)
			defer ra.Close()
			got, err := io.ReadAll(iotest.HalfReader(ra))
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			want := data
			switch tc.name {
			case "one byte per read":
				want = data[:70_000]
			case "fails at once":
				want = nil
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want the source's %d", len(got), len(want))
			}
		})
	}
}

// Closing a read-ahead whose reader stopped early (a damaged file in the middle of a
// part) ends its goroutine, so that the part can be closed after it.
func TestReadAheadCloseStopsReading(t *testing.T) {
	src := &countingReader{r: bytes.NewReader(randomBytes(8, 64*readAheadChunk))}
	ra := newReadAhead(src)
	if _, err := io.ReadFull(ra, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
	n := src.n
	if n > (readAheadDepth+2)*readAheadChunk {
		t.Errorf("read %d bytes of the source for 100 read: more than the read-ahead holds", n)
	}
	if err := ra.Close(); err != nil { // a second Close is harmless
		t.Fatal(err)
	}
	if src.n != n {
		t.Errorf("the source was read after Close returned")
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
