package drill

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Prom is what a --prom file says besides the report: the repository it drilled
// (the one label) and the newest successful drill the repository records, for a
// drill that failed.
type Prom struct {
	Repo        string
	LastSuccess *time.Time // nil: none recorded
}

// WriteProm writes rep in the Prometheus text exposition format, for node_exporter's
// textfile collector (docs/drill.md lists the metrics). A figure the drill did not
// measure (it failed before) is left out rather than written as 0, except
// pgb_drill_last_success_timestamp_seconds, which is 0 when no drill ever passed.
func WriteProm(w io.Writer, rep *Report, p Prom) error {
	var b strings.Builder
	label := `{repo="` + promEscape(p.Repo) + `"}`
	metric := func(name, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s%s %s\n", name, help, name, name, label, strconv.FormatFloat(v, 'f', -1, 64))
	}
	ok := 0.0
	if rep.OK {
		ok = 1
	}
	ts := func(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }
	metric("pgb_drill_success", "1 if the last pgb drill reached its target and every check passed, else 0.", ok)
	metric("pgb_drill_timestamp_seconds", "When the last pgb drill finished.", ts(rep.Finished))
	last := 0.0
	switch {
	case rep.OK:
		last = ts(rep.Finished)
	case p.LastSuccess != nil:
		last = ts(*p.LastSuccess)
	}
	metric("pgb_drill_last_success_timestamp_seconds", "When the newest successful pgb drill of the repository finished (0: none recorded).", last)
	if rep.Reached.ReplayLSN != 0 {
		metric("pgb_drill_rto_seconds", "Time from the start of the restore to a queryable database at the target.", rep.RTO.TotalSeconds)
	}
	if rep.RTO.BytesRestored > 0 {
		metric("pgb_drill_restore_seconds", "Time the restore of the backup's files took.", rep.RTO.RestoreSeconds)
	}
	if rep.Reached.ReplayLSN != 0 {
		metric("pgb_drill_replay_seconds", "Time from the server's start to a queryable database at the target (WAL replay).", rep.RTO.ReplaySeconds)
	}
	if g := rep.RPO.GapSeconds; g != nil {
		metric("pgb_drill_rpo_seconds", "Last archived commit (or the time target) minus the last commit recovered.", *g)
	}
	if rep.RPO.NewestWAL != "" {
		metric("pgb_drill_newest_wal_age_seconds", "Age of the newest archived WAL segment when the drill ran.", rep.RPO.NewestWALAgeSeconds)
	}
	if rep.RTO.BytesRestored > 0 {
		metric("pgb_drill_restored_bytes", "Bytes of the backup restored.", float64(rep.RTO.BytesRestored))
	}
	if rep.Reached.ReplayLSN != 0 {
		metric("pgb_drill_replayed_bytes", "Bytes of WAL replayed, from the backup's start to the point reached.", float64(rep.RTO.BytesReplayed))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// promEscape escapes a label value: backslash, double quote and newline.
func promEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
