package drill

import (
	"testing"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/wal"
)

func TestStoppedAtTargetRefusesAPauseOfPostgreSQLsOwn(t *testing.T) {
	const stopping = "LOG:  recovery stopping at restore point \"p\", time 2026-12-02 06:00:00+00\nLOG:  pausing at the end of recovery\n"
	const params = "WARNING:  hot standby is not possible because of insufficient parameter settings\nLOG:  recovery has paused\n"
	name := restore.Target{Kind: restore.ToName, Name: "p"}
	lsn := restore.Target{Kind: restore.ToLSN, LSN: 0x3000100}
	tests := []struct {
		name     string
		t        restore.Target
		point    wal.LSN
		replayed wal.LSN
		log      string
		want     bool
	}{
		{"restore point: logged", name, 0x3000100, 0x3000100, stopping, true},
		{"restore point: replayed to it, no log line", name, 0x3000100, 0x3000100, "", true},
		{"restore point: paused before it for a setting", name, 0x3000100, 0x2FFFF00, params, false},
		{"restore point: LSN unknown, no log line", name, 0, 0x3000100, params, false},
		{"LSN: replayed past it", lsn, 0, 0x3000200, "", true},
		{"LSN: paused before it", lsn, 0, 0x3000000, params, false},
		{"exclusive LSN: only the log says", restore.Target{Kind: restore.ToLSN, LSN: 0x3000100, Exclusive: true}, 0, 0x3000200, params, false},
		{"time: logged", restore.Target{Kind: restore.ToTime}, 0, 0x3000000, "LOG:  recovery stopping before commit of transaction 750, time 2026-12-02\n", true},
		{"time: paused for a setting", restore.Target{Kind: restore.ToTime}, 0, 0x3000000, params, false},
		{"xid: paused for a setting", restore.Target{Kind: restore.ToXID, XID: 750}, 0, 0x3000000, params, false},
	}
	for _, tt := range tests {
		if got := stoppedAtTarget(tt.t, tt.point, tt.replayed, tt.log); got != tt.want {
			t.Errorf("%s: stoppedAtTarget = %v, want %v", tt.name, got, tt.want)
		}
	}
}
