package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	// exitUsage is for mistakes in how pgb was called. It is above 125 because pgb
	// cannot know whether it runs as restore_command, where PostgreSQL takes 1..125 for
	// "not in the archive" and would end recovery early and promote.
	exitUsage = 255
	// exitRecoveryMustStop is above 125, which PostgreSQL treats as a hard failure of
	// restore_command: it stops recovery instead of taking the failure for the end of
	// the archive and promoting with committed transactions missing.
	exitRecoveryMustStop = 255
)

// exitError carries an explicit exit code.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// withCode attaches an exit code to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return codedError{code: code, err: err}
}

// exitCode is the one place where errors become exit codes and one-line messages.
func exitCode(err error, stderr io.Writer, format string) int {
	if err == nil {
		return exitOK
	}
	code := exitError
	var ce codedError
	var ue usageError
	switch {
	case errors.As(err, &ce):
		code = ce.code
	case errors.As(err, &ue) || isCLIUsage(err):
		code = exitUsage
	}
	if !errors.Is(err, errSilent) {
		// Writes to stderr are unchecked: there is nowhere else to report; the code still tells.
		msg := oneLine(err.Error())
		if format == "json" {
			b, _ := json.Marshal(map[string]any{"time": time.Now().Format(time.RFC3339Nano), "level": "ERROR", "msg": msg, "exit_code": code})
			_, _ = fmt.Fprintln(stderr, string(b))
		} else {
			_, _ = fmt.Fprintln(stderr, "pgb: error: "+msg)
		}
	}
	return code
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// isCLIUsage recognises urfave/cli's own parse errors.
func isCLIUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "flag provided but not defined") ||
		strings.HasPrefix(s, "invalid value") ||
		strings.Contains(s, "flag needs an argument") ||
		strings.HasPrefix(s, "No help topic")
}
