package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestSignalCancelsTheContextWithItsExitCode(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		ctx, stop := withSignals(context.Background())
		if err := syscall.Kill(os.Getpid(), c.sig); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done()
		var in interrupted
		if !errors.As(context.Cause(ctx), &in) || in.sig != c.sig || in.exitCode() != c.code {
			t.Errorf("%v: cause %v, want interrupted by it with exit %d", c.sig, context.Cause(ctx), c.code)
		}
		stop()
	}
}

// pgbInterrupted runs pgb with a context a signal has already cancelled.
func pgbInterrupted(t *testing.T, sig syscall.Signal, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(interrupted{sig})
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"pgb"}, args...), Build{Version: "test"}, &out, &errb)
	return outcome{code, out.String(), errb.String()}
}

func TestInterruptedCommandsExit130Or143(t *testing.T) {
	isolate(t)
	repo, pgdata := pushedRepo(t)
	seg := filepath.Join(pgdata, "pg_wal", seg1)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	cases := []struct {
		sig  syscall.Signal
		code int
		args []string
	}{
		{syscall.SIGINT, 130, []string{"wal-fetch", "--repo", repo, seg1, dest}},
		{syscall.SIGTERM, 143, []string{"wal-fetch", "--repo", repo, "0000000100000000000000FF", dest}},
		{syscall.SIGINT, 130, []string{"backup-list", "--repo", repo}},
		{syscall.SIGTERM, 143, []string{"wal-push", "--repo", t.TempDir(), "--pgdata", pgdata, seg}},
	}
	for _, c := range cases {
		r := pgbInterrupted(t, c.sig, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, "interrupted by "+signalName(c.sig)) {
			t.Errorf("pgb %v interrupted by %v: exit %d, stderr %q; want exit %d saying so", c.args, c.sig, r.code, r.stderr, c.code)
		}
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("an interrupted wal-fetch wrote DEST")
	}
}
