package drill

import (
	"bytes"
	"strings"
	"testing"
)

// A drill that failed before recovery was confirmed claims no RTO.
func TestFailedDrillReportClaimsNoRecoveryTime(t *testing.T) {
	r := &Report{OK: false, Error: "drill failed: the server stopped during recovery", Target: "the end of the archive",
		RTO: RTO{RestoreSeconds: 4.2}}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "queryable") || !strings.Contains(b.String(), "restore 4.2 s; not recovered") {
		t.Errorf("report of a drill that never recovered:\n%s", b.String())
	}
}
