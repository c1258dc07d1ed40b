package repo

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

// Segments sealed one after another in the same borrowed buffers each store exactly
// their own bytes: a small object written after a larger one carries nothing of it.
func TestPushingSegmentsThroughSharedBuffersNeverMixesTheirBytes(t *testing.T) {
	ctx := context.Background()
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	bufs := &WALBuffers{}
	const size = 1 << 20
	noise := make([]byte, size) // incompressible: a large sealed object
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	zeros := bytes.Repeat([]byte{7}, size) // compresses to almost nothing
	contents := [][]byte{noise, zeros, noise, zeros}
	for i, want := range contents {
		f, err := wal.Parse([]string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003", "000000010000000000000004"}[i])
		if err != nil {
			t.Fatal(err)
		}
		// A new Repo per segment, as the archiver makes them, sharing the buffers.
		put, err := New(st, Options{Codec: codec, Buffers: bufs}).PutWAL(ctx, f, bytes.NewReader(want), size)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := New(mem.New(), Options{Codec: codec}).PutWAL(ctx, f, bytes.NewReader(want), size)
		if err != nil {
			t.Fatal(err)
		}
		if put.Stored != fresh.Stored {
			t.Fatalf("%s: stored %d bytes through shared buffers, %d through fresh ones", f.Name, put.Stored, fresh.Stored)
		}
		o, err := New(st, Options{}).OpenWAL(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o)
		_ = o.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read back %d bytes that differ from the %d pushed", f.Name, len(got), len(want))
		}
	}
	if n := len(bufs.idle); n == 0 || n > DefaultWALMemory/chunkSize+1 {
		t.Fatalf("%d idle chunks after pushing one segment at a time, want at most one segment's memory and its copy buffer", n)
	}
}
