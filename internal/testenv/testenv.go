// Package testenv decides what a test does when it cannot or should not run here:
// under `go test -short` (make unit) the tests that start PostgreSQL or an
// object-store server skip, and a test whose prerequisite is missing skips
// locally but fails in CI ($CI set), where a skipped test would hide a broken setup.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// SkipOrFail stops t because a prerequisite is missing: it skips with the reason,
// or fails when $CI is set, since in CI a skipped test is a broken setup.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	skipOrFail(t, os.Getenv("CI"), fmt.Sprintf(format, args...))
}

// stopper is the part of testing.TB that skipOrFail uses.
type stopper interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

func skipOrFail(t stopper, ci, msg string) {
	t.Helper()
	if ci != "" {
		t.Fatalf("%s ($CI=%q: in CI a skipped test is a failure)", msg, ci)
		return
	}
	t.Skip("skipping: " + msg)
}

// SkipIfShort skips t under `go test -short` (make unit); what says which slow
// thing the test needs, e.g. "starts PostgreSQL".
func SkipIfShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping in -short mode: %s", what)
	}
}
