package workpool

import (
	"context"
	"testing"
)

func TestFeedSendsAllThenCloses(t *testing.T) {
	ch := make(chan int)
	go Feed(context.Background(), ch, []int{1, 2, 3})
	var got []int
	for v := range ch {
		got = append(got, v)
	}
	if len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("got %v", got)
	}
}

func TestFeedStopsAndClosesWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan int)
	done := make(chan struct{})
	go func() { Feed(ctx, ch, []int{1, 2, 3}); close(done) }()
	<-ch
	cancel()
	<-done // Feed returned although nobody reads
	for range ch {
	} // and ch is closed
}
