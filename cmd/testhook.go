//go:build !pgbtest

package cmd

// deleteTestHook does nothing: the test hooks exist only in a pgb built with -tags
// pgbtest (see testhook_pgbtest.go).
func (e *env) deleteTestHook() error { return nil }
