package repo

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestWaitForWALGivesUpWhenTheProbeSaysItCannotArrive(t *testing.T) {
	f, err := wal.Parse("000000010000000000000003")
	if err != nil {
		t.Fatal(err)
	}
	failing := errors.New("archive_command failed for 000000010000000000000003")
	calls := 0
	probe := func(context.Context) error {
		if calls++; calls == 3 {
			return failing
		}
		return nil
	}
	// The timeout is far beyond the test's: only the probe can end the wait.
	if err := New(mem.New(), Options{}).WaitForWALUntil(context.Background(), f, 24*time.Hour, probe); !errors.Is(err, failing) {
		t.Fatalf("err = %v, want the probe's", err)
	}
}
