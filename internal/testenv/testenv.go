// Package testenv decides what a test does when it should not run here: under
// `go test -short` (make unit) the tests that start PostgreSQL or an object-store
// server skip.
package testenv

import "testing"

// SkipIfShort skips t under `go test -short` (make unit); what says which slow
// thing the test needs, e.g. "starts PostgreSQL".
func SkipIfShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping in -short mode: %s", what)
	}
}
