package workpool

import (
	"context"
	"errors"
	"sync/atomic"
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

func TestRunGivesEveryItemToTheWorkers(t *testing.T) {
	var sum atomic.Int64
	err := Run(context.Background(), 3, []int64{1, 2, 3, 4}, func(_ context.Context, ch <-chan int64) error {
		for v := range ch {
			sum.Add(v)
		}
		return nil
	})
	if err != nil || sum.Load() != 10 {
		t.Fatalf("Run = %v, sum %d, want nil and 10", err, sum.Load())
	}
}

// The first failure stops the others (their ctx ends) and is what Run returns.
func TestRunStopsAtTheFirstErrorAndReturnsIt(t *testing.T) {
	boom := errors.New("boom")
	err := Run(context.Background(), 2, []int{1, 2, 3, 4, 5, 6}, func(ctx context.Context, ch <-chan int) error {
		for v := range ch {
			if v == 2 {
				return boom
			}
			<-ctx.Done() // only the failure ends the others
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
}

func TestRunReturnsTheCallersCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Run(ctx, 2, []int{1, 2}, func(ctx context.Context, ch <-chan int) error {
		for range ch {
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled ctx = %v, want context.Canceled", err)
	}
}
