package restore

import (
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// gatedReader hands out 4 KiB per Read, each once the test lets it through the gate: a
// slow or stalled repository stream whose pace the test sets.
type gatedReader struct {
	gate chan struct{}
	read atomic.Int64 // bytes returned
}

func (g *gatedReader) Read(p []byte) (int, error) {
	<-g.gate
	n := min(len(p), 4096)
	g.read.Add(int64(n))
	return n, nil
}

// Close waits for at most the read of the source in progress, so that a restore worker
// that failed (a file that does not check, a full disk) or was cancelled closes its
// part at once — not after the rest of a 1 MiB chunk (256 more reads of a slow or
// stalled stream). Counted in bytes read after Close, not in time.
func TestReadAheadCloseWaitsAtMostTheReadInProgress(t *testing.T) {
	src := &gatedReader{gate: make(chan struct{})}
	ra := newReadAhead(src)
	for range readAheadChunk / 4096 { // the first chunk, whole
		src.gate <- struct{}{}
	}
	if _, err := io.ReadFull(ra, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	for range 10 { // into the second chunk
		src.gate <- struct{}{}
	}
	closed := make(chan struct{})
	go func() {
		_ = ra.Close()
		close(closed)
	}()
	<-ra.stop // Close has begun: from here on, only the read in progress may complete
	before := src.read.Load()
	guard := time.After(30 * time.Second) // a failure guard, not a measure
	reads := 0
	for {
		select {
		case src.gate <- struct{}{}:
			reads++
			continue
		case <-closed:
		case <-guard:
			t.Fatalf("Close has not returned after %d more reads of the source", reads)
		}
		break
	}
	if after := src.read.Load() - before; after > 4096 {
		t.Errorf("Close let the read-ahead read %d more bytes of the source (%d reads): it waits for the rest of a chunk, not the read in progress", after, reads)
	}
}

// One restore reads at most readAheadStreams parts ahead at once, whatever its number
// of workers: memory does not grow with the host's cores. A part beyond them is read
// as it is, and a closed read-ahead gives its slot back.
func TestReadAheadIsBoundedPerRestore(t *testing.T) {
	slots := newReadAheadSlots()
	var open []io.ReadCloser
	ahead := 0
	for range readAheadStreams + 3 {
		rc := slots.open(eofReader{})
		if _, ok := rc.(*readAhead); ok {
			ahead++
		}
		open = append(open, rc)
	}
	if ahead != readAheadStreams {
		t.Errorf("%d parts read ahead at once, want %d", ahead, readAheadStreams)
	}
	for _, rc := range open {
		if _, err := io.ReadAll(rc); err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
	}
	if _, ok := slots.open(eofReader{}).(*readAhead); !ok || len(slots) != 1 {
		t.Errorf("after every read-ahead was closed, a new part is not read ahead (%d slots taken)", len(slots))
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
