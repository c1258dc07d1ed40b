package drill

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/wal"
)

var lsnRE = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)

// ParseTarget reads --target: "" or "latest" is the end of the archive; X/Y an LSN;
// a timestamp (restore.ParseTime) a time; anything else a restore point's name. The
// drill pauses at a target to check it (recovery_target_action = pause).
func ParseTarget(s string) (restore.Target, error) {
	t := restore.Target{Kind: restore.ToEnd, Action: "pause", Timeline: "latest"}
	switch {
	case s == "" || s == "latest":
	case lsnRE.MatchString(s):
		l, err := wal.ParseLSN(s)
		if err != nil {
			return t, err
		}
		t.Kind, t.LSN = restore.ToLSN, l
	default:
		if tm, err := restore.ParseTime(s); err == nil {
			t.Kind, t.Time = restore.ToTime, tm
		} else {
			t.Kind, t.Name = restore.ToName, s
		}
	}
	return t, nil
}

// TargetFlags are the drill's target flags, as given.
type TargetFlags struct {
	Target    string // --target: latest, a timestamp, an LSN or a restore point's name
	XID       string // --target-xid
	Exclusive bool   // --target-exclusive
	Timeline  string // --target-timeline: latest, current or a number; "" latest
}

// ParseTargetFlags reads the drill's target flags as pgb restore reads its own: at
// most one of --target (other than latest) and --target-xid; --target-exclusive with
// a time, an LSN or a transaction id only; --target-timeline latest, current or N.
func ParseTargetFlags(f TargetFlags) (restore.Target, error) {
	t, err := ParseTarget(f.Target)
	if err != nil {
		return t, fmt.Errorf("--target %q: %w", f.Target, err)
	}
	if f.XID != "" {
		if t.Kind != restore.ToEnd {
			return t, errors.New("give --target or --target-xid, not both")
		}
		x, err := strconv.ParseUint(f.XID, 10, 64)
		if err != nil || uint32(x) < 3 {
			return t, fmt.Errorf("--target-xid %q is not a transaction id", f.XID)
		}
		t.Kind, t.XID = restore.ToXID, x
	}
	if f.Exclusive {
		switch t.Kind {
		case restore.ToTime, restore.ToLSN, restore.ToXID:
			t.Exclusive = true
		default:
			return t, errors.New("--target-exclusive applies to a time, an LSN (--target) or --target-xid only")
		}
	}
	switch tl := f.Timeline; tl {
	case "", "latest":
	case "current":
		t.Timeline = tl
	default:
		if _, err := strconv.ParseUint(tl, 10, 32); err != nil {
			return t, fmt.Errorf("--target-timeline %q: want latest, current or a timeline number", tl)
		}
		t.Timeline = tl
	}
	return t, nil
}
