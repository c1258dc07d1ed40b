package status

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Verify records passed over are said, not hidden behind "none recorded"; untrusted
// text of a record is printed safely.
func TestVerifyTextSaysWhatWasPassedOver(t *testing.T) {
	var lines []string
	p := func(f string, a ...any) { lines = append(lines, strings.TrimSpace(fmt.Sprintf(f, a...))) }
	short := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	r := &Report{Verifies: &Verifies{Damaged: 2, Future: 1}}
	r.writeVerifies(p, short)
	out := strings.Join(lines, "\n")
	if !strings.Contains(out, "none recorded") || !strings.Contains(out, "3 verify record(s) passed over: 2 damaged, 1 dated in the future") {
		t.Errorf("output:\n%s", out)
	}
	lines = nil
	r = &Report{Verifies: &Verifies{Last: &Verify{Finished: time.Unix(0, 0), Problems: 1, Scope: "backups\x1b[31m", FirstProblems: []string{"x\x1b]0;pwned\x07"}}}}
	r.writeVerifies(p, short)
	if out := strings.Join(lines, "\n"); strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "FAILED") {
		t.Errorf("output:\n%q", out)
	}
}
