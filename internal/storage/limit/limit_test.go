package limit_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/limit"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// blockingReader signals its first Read and then blocks until released.
type blockingReader struct {
	started, release chan struct{}
	once             bool
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.once {
		b.once = true
		close(b.started)
	}
	<-b.release
	return 0, io.EOF
}

// A Put over the limit waits for a slot, and gives up with its context's error when
// the context ends first; a freed slot lets the next Put through.
func TestPutWaitsForASlotUntilItsContextEnds(t *testing.T) {
	st := limit.Puts(mem.New(), 1).(*limit.Store)
	held := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- st.Put(t.Context(), "a", held, storage.PutOptions{Size: -1}) }()
	<-held.started // "a" holds the only slot

	ctx, cancel := context.WithCancel(t.Context())
	waited := make(chan error, 1)
	go func() { waited <- st.Put(ctx, "b", strings.NewReader("b"), storage.PutOptions{Size: 1}) }()
	for st.Waiting() != 1 { // until "b" waits for the slot
		runtime.Gosched()
	}
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Errorf("Put waiting for a slot, cancelled: %v, want context.Canceled", err)
	}
	if st.Waiting() != 0 {
		t.Errorf("%d Puts still waiting", st.Waiting())
	}
	close(held.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), "c", strings.NewReader("c"), storage.PutOptions{Size: 1}); err != nil {
		t.Errorf("Put after the slot was freed: %v", err)
	}
	if _, err := st.Stat(t.Context(), "b"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("the cancelled Put stored something: %v", err)
	}
}

func TestNoLimitIsTheInnerStore(t *testing.T) {
	inner := mem.New()
	if st := limit.Puts(inner, 0); st != storage.Store(inner) {
		t.Errorf("limit 0 wrapped the store: %T", st)
	}
}
