package drill

import (
	"strings"
	"testing"
	"time"
)

var promT0 = time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)

func passedReport() *Report {
	gap := 0.25
	return &Report{OK: true, Started: promT0.Add(-time.Minute), Finished: promT0, Target: "end of the archive",
		Backup:  BackupUsed{Name: "20261202T010000Z"},
		Reached: Reached{ReplayLSN: 0x5000000, Promoted: true},
		RTO:     RTO{RestoreSeconds: 4.5, ReplaySeconds: 10, TotalSeconds: 14.5, BytesRestored: 1 << 30, BytesReplayed: 1 << 26},
		RPO:     RPO{GapSeconds: &gap, NewestWAL: "000000010000000000000005", NewestWALAgeSeconds: 12}}
}

func TestPromOfAPassedDrill(t *testing.T) {
	var b strings.Builder
	if err := WriteProm(&b, passedReport(), Prom{Repo: `s3://bucket/pg "main"`}); err != nil {
		t.Fatal(err)
	}
	want := `# HELP pgb_drill_success 1 if the last pgb drill reached its target and every check passed, else 0.
# TYPE pgb_drill_success gauge
pgb_drill_success{repo="s3://bucket/pg \"main\""} 1
# HELP pgb_drill_timestamp_seconds When the last pgb drill finished.
# TYPE pgb_drill_timestamp_seconds gauge
pgb_drill_timestamp_seconds{repo="s3://bucket/pg \"main\""} 1796180400
# HELP pgb_drill_last_success_timestamp_seconds When the newest successful pgb drill of the repository finished (0: none recorded).
# TYPE pgb_drill_last_success_timestamp_seconds gauge
pgb_drill_last_success_timestamp_seconds{repo="s3://bucket/pg \"main\""} 1796180400
# HELP pgb_drill_rto_seconds Time from the start of the restore to a queryable database at the target.
# TYPE pgb_drill_rto_seconds gauge
pgb_drill_rto_seconds{repo="s3://bucket/pg \"main\""} 14.5
# HELP pgb_drill_restore_seconds Time the restore of the backup's files took.
# TYPE pgb_drill_restore_seconds gauge
pgb_drill_restore_seconds{repo="s3://bucket/pg \"main\""} 4.5
# HELP pgb_drill_replay_seconds Time from the server's start to a queryable database at the target (WAL replay).
# TYPE pgb_drill_replay_seconds gauge
pgb_drill_replay_seconds{repo="s3://bucket/pg \"main\""} 10
# HELP pgb_drill_rpo_seconds Last archived commit (or the time target) minus the last commit recovered.
# TYPE pgb_drill_rpo_seconds gauge
pgb_drill_rpo_seconds{repo="s3://bucket/pg \"main\""} 0.25
# HELP pgb_drill_newest_wal_age_seconds Age of the newest archived WAL segment when the drill ran.
# TYPE pgb_drill_newest_wal_age_seconds gauge
pgb_drill_newest_wal_age_seconds{repo="s3://bucket/pg \"main\""} 12
# HELP pgb_drill_restored_bytes Bytes of the backup restored.
# TYPE pgb_drill_restored_bytes gauge
pgb_drill_restored_bytes{repo="s3://bucket/pg \"main\""} 1073741824
# HELP pgb_drill_replayed_bytes Bytes of WAL replayed, from the backup's start to the point reached.
# TYPE pgb_drill_replayed_bytes gauge
pgb_drill_replayed_bytes{repo="s3://bucket/pg \"main\""} 67108864
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// A failed drill says success 0, keeps the repository's last success, and leaves out
// what it did not measure (never a 0 that looks like a fast recovery).
func TestPromOfAFailedDrill(t *testing.T) {
	for _, tc := range []struct {
		name string
		last *time.Time
	}{
		{"a success before", &[]time.Time{promT0.Add(-24 * time.Hour)}[0]},
		{"never a success", nil},
	} {
		rep := &Report{Started: promT0.Add(-time.Second), Finished: promT0, Error: "drill failed: no backup"}
		var b strings.Builder
		if err := WriteProm(&b, rep, Prom{Repo: "file:///r", LastSuccess: tc.last}); err != nil {
			t.Fatal(err)
		}
		got := b.String()
		if !strings.Contains(got, "\npgb_drill_success{repo=\"file:///r\"} 0\n") {
			t.Errorf("%s: no success 0:\n%s", tc.name, got)
		}
		last := "pgb_drill_last_success_timestamp_seconds{repo=\"file:///r\"} "
		if tc.last != nil && !strings.Contains(got, last+"1796094000\n") || tc.last == nil && !strings.Contains(got, last+"0\n") {
			t.Errorf("%s: last success:\n%s", tc.name, got)
		}
		for _, m := range []string{"rto", "restore_seconds", "replay_seconds", "rpo", "restored_bytes", "replayed_bytes", "newest_wal"} {
			if strings.Contains(got, "pgb_drill_"+m) {
				t.Errorf("%s: %s written for a drill that measured nothing:\n%s", tc.name, m, got)
			}
		}
	}
}
