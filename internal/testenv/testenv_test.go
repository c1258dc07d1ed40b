package testenv

import (
	"fmt"
	"strings"
	"testing"
)

type recorder struct{ skipped, failed string }

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }

// A missing prerequisite skips the test outside CI and fails it in CI.
func TestMissingPrerequisiteSkipsLocallyAndFailsInCI(t *testing.T) {
	var local recorder
	skipOrFail(&local, "", "versitygw not found")
	if local.failed != "" || !strings.Contains(local.skipped, "versitygw not found") {
		t.Errorf("outside CI: skipped %q, failed %q", local.skipped, local.failed)
	}
	var ci recorder
	skipOrFail(&ci, "true", "versitygw not found")
	if ci.skipped != "" || !strings.Contains(ci.failed, "versitygw not found") || !strings.Contains(ci.failed, "CI") {
		t.Errorf("in CI: skipped %q, failed %q", ci.skipped, ci.failed)
	}
}
