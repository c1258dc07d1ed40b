package drill

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/wal"
)

// stoppedAtTarget says whether a recovery found paused stopped at target t, not for
// a reason of its own (a setting lower than the source's pauses it too, PostgreSQL
// 14+). PostgreSQL's "recovery stopping ..." log line says the target was met
// (log is the server's log, lc_messages=C); else, for an LSN or a restore point
// (pointLSN, the LSN its record ends at), having replayed up to it does.
func stoppedAtTarget(t restore.Target, pointLSN, replayed wal.LSN, log string) bool {
	if strings.Contains(log, "LOG:  recovery stopping ") {
		return true
	}
	switch t.Kind {
	case restore.ToLSN:
		return !t.Exclusive && replayed >= t.LSN
	case restore.ToName:
		return pointLSN != 0 && replayed >= pointLSN
	}
	return false
}

// checkStopped fails a paused recovery that stoppedAtTarget refuses, with the log's tail.
func (d *drill) checkStopped(ctx context.Context, t restore.Target, replayed wal.LSN) error {
	var point wal.LSN
	if t.Kind == restore.ToName {
		if p, err := d.rp.ReadRestorePoint(ctx, t.Name); err == nil {
			point = p.LSN
		}
	}
	if stoppedAtTarget(t, point, replayed, d.serverLog()) {
		return nil
	}
	return fmt.Errorf("%w: recovery paused before reaching the target %s, at %s (PostgreSQL logged no \"recovery stopping\"): %s",
		ErrFailed, t, replayed, d.logTail())
}

// serverLog is the drilled server's log, its first 16 MiB.
func (d *drill) serverLog() string {
	f, err := os.Open(filepath.Join(d.scratch, "postgres.log"))
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read-only
	b, _ := io.ReadAll(io.LimitReader(f, 16<<20))
	return string(b)
}
