package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + signalName(i.sig) }

// exitCode is the shell's convention for death by signal: 128 + the signal number
// (SIGINT 130, SIGTERM 143), above 125 so that restore_command stops recovery.
func (i interrupted) exitCode() int { return 128 + int(i.sig) }

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// withSignals returns a context cancelled, with an interrupted cause, by the first
// SIGINT or SIGTERM. Later signals have their default effect. stop releases the
// signals.
func withSignals(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			signal.Stop(ch)
			sig, _ := s.(syscall.Signal)
			cancel(interrupted{sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// interruptedError turns the failure of a command whose context a signal cancelled
// into the signal's exit code. A command that finished despite the signal keeps its
// outcome.
func interruptedError(ctx context.Context, err error) error {
	var in interrupted
	if err == nil || !errors.As(context.Cause(ctx), &in) {
		return err
	}
	if errors.Is(err, errSilent) {
		return withCode(in.exitCode(), in)
	}
	return withCode(in.exitCode(), fmt.Errorf("%w: %w", in, err))
}
