//go:build !pgbtest

package cmd

import (
	"context"
	"io"
)

// deleteTestHook does nothing: the test hooks exist only in a pgb built with -tags
// pgbtest (see testhook_pgbtest.go).
func (e *env) deleteTestHook() error { return nil }

// drillTestHook does nothing outside a pgbtest build.
func drillTestHook() func(ctx context.Context) error { return nil }

// drillBeforeStartHook does nothing outside a pgbtest build.
func drillBeforeStartHook(io.Writer) func(ctx context.Context) error { return nil }

// archiverTestHook does nothing outside a pgbtest build.
func (e *env) archiverTestHook() error { return nil }
