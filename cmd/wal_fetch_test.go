package cmd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/pgb-project/pgb/internal/repo"
)

// A key that cannot decrypt the WAL stops recovery (exit 255) on a standby too: a
// standby retrying it would only fall further behind, never catch up. A store that is
// down is retried there (exit 1).
func TestWalFetchStopsRecoveryOnAKeyErrorEvenOnAStandby(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("standby.signal", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("wal/x: %w", repo.ErrNoKey), exitRecoveryMustStop},
		{fmt.Errorf("wal/x: %w", repo.ErrWrongKey), exitRecoveryMustStop},
		{fmt.Errorf("wal/x: %w", repo.ErrForeignCluster), exitRecoveryMustStop},
		{errors.New("connection refused"), exitError},
	} {
		var ce codedError
		if err := fetchExit(e, "000000010000000000000001", tc.err); !errors.As(err, &ce) || ce.code != tc.code {
			t.Errorf("%v: %v, want exit %d", tc.err, err, tc.code)
		}
	}
}
