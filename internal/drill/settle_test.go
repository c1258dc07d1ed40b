package drill

import (
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/window"
)

// What one poll of the server means: go on waiting, done, or a failed drill.
func TestDrillDecidesFromEachPollWhetherRecoveryReachedTheTarget(t *testing.T) {
	tests := []struct {
		name       string
		inRecovery bool
		paused     string
		toEnd      bool
		done, fail bool
	}{
		{"replaying", true, "not paused", false, false, false},
		{"replaying to the end", true, "", true, false, false},
		{"paused at a target", true, "paused", false, true, false},
		{"promoted at the end", false, "", true, true, false},
		{"paused short of the end", true, "paused", true, true, true},
		// PostgreSQL 12 promotes at the end of the WAL when the target was not
		// reached (13 exits with a FATAL): a promoted copy never reached a target.
		{"promoted instead of pausing at a target", false, "", false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, why := settled(tt.inRecovery, tt.paused, tt.toEnd)
			if done != tt.done || (why != "") != tt.fail {
				t.Errorf("settled = %v, %q; want done %v, failed %v", done, why, tt.done, tt.fail)
			}
		})
	}
}

// To the end of the archive, recovery must have replayed the window's last record
// whole: stopping just before it ends where it starts.
func TestDrillToTheEndFailsWhenRecoveryStopsJustBeforeTheLastRecord(t *testing.T) {
	w := &window.Window{LastRecord: 0x3000100, EndLSN: 0x3000140}
	for _, tt := range []struct {
		name     string
		promoted bool
		replayed wal.LSN
		short    bool
	}{
		{"replayed through the last record", true, 0x3000140, false},
		{"replayed to the last record's start", true, 0x3000100, true},
		{"paused", false, 0x3000140, true},
	} {
		if got := shortOfEnd(tt.promoted, tt.replayed, w); got != tt.short {
			t.Errorf("%s: shortOfEnd = %v, want %v", tt.name, got, tt.short)
		}
	}
	if shortOfEnd(true, 0x3000100, &window.Window{LastRecord: 0x3000100}) {
		t.Errorf("a window with no end LSN is judged by its last record's start")
	}
}
