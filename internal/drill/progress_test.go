package drill

import (
	"testing"

	"github.com/pgb-project/pgb/internal/wal"
)

func TestProgressLineShowsTheTargetLSNWhenKnown(t *testing.T) {
	tests := []struct {
		replayed    string
		start, goal uint64
		want        string
	}{
		{"0/3000000", 0x2000000, 0x6000000, "\rdrill: replayed to 0/3000000 of 0/6000000 (25%)"},
		{"0/6000100", 0x2000000, 0x6000000, "\rdrill: replayed to 0/6000100 of 0/6000000 (100%)"},
		{"0/1000000", 0x2000000, 0x6000000, "\rdrill: replayed to 0/1000000 of 0/6000000 (0%)"},
		{"0/3000000", 0x2000000, 0, "\rdrill: replayed to 0/3000000"},
	}
	for _, tt := range tests {
		if got := progressLine(tt.replayed, lsn(tt.start), lsn(tt.goal)); got != tt.want {
			t.Errorf("progressLine(%s, %x, %x) = %q, want %q", tt.replayed, tt.start, tt.goal, got, tt.want)
		}
	}
}

func lsn(v uint64) wal.LSN { return wal.LSN(v) }
