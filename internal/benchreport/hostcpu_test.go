package benchreport

import (
	"bytes"
	"strings"
	"testing"
)

// With look-ahead and prefetch (pgb's defaults) and
// pgBackRest's async mode, the work is done by detached processes that
// /usr/bin/time does not wait for: cpu_s counts only the per-segment calls, and
// only host_cpu_s (which the harness records for exactly this reason, and its own
// report.sh prints) shows the archiver's compression. The report must not present
// the calls' CPU as the tool's CPU: here pgb's detached archiver spent about 8 s
// (host 9.0 s against 7.0 s for pgBackRest's synchronous pushes), and a report of the
// calls alone would say pgb used 4.83× less CPU than pgBackRest.
func TestWALRowsCountTheDetachedWorkersCPU(t *testing.T) {
	csv := strings.Join(header, ",") + "\n" +
		"wal-push,pgbackrest,lz4,1,5.80,5.80,18000,1073741824,400000000,1,7.00\n" +
		"wal-push,pgb,lz4,1,4.00,1.20,40000,1073741824,380000000,1,9.00\n"
	rows, err := Parse(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Write(&out, Summarise(rows)); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	if strings.Contains(report, "CPU 4.83×") {
		t.Errorf("the report credits pgb with 4.83× less CPU than pgBackRest from the foreground calls alone, "+
			"while the host's busy CPU (9.00 s vs 7.00 s) says the opposite:\n%s", report)
	}
	if !strings.Contains(report, "host CPU 0.78×") {
		t.Errorf("the WAL ratio to pgBackRest is not on host CPU (7.00/9.00 = 0.78×):\n%s", report)
	}
	if !strings.Contains(report, "9.00") {
		t.Errorf("the report drops host_cpu_s, the only figure that counts pgb's detached archiver:\n%s", report)
	}
}
