package drill

import (
	"regexp"

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
