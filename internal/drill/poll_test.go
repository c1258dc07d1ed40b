package drill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestNotReadyRetriesOnlyWhatWaitingCures(t *testing.T) {
	sock := &net.OpError{Op: "dial", Net: "unix", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ENOENT}}
	refused := &net.OpError{Op: "dial", Net: "unix", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"socket not there yet", fmt.Errorf("connect: %w", sock), true},
		{"connection refused", refused, true},
		{"starting up (57P03)", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true},
		{"not yet accepting connections (57P03)", fmt.Errorf("x: %w", &pgconn.PgError{Code: "57P03"}), true},
		{"role does not exist (28000)", &pgconn.PgError{Code: "28000", Message: `role "postgres" does not exist`}, false},
		{"password failed (28P01)", &pgconn.PgError{Code: "28P01"}, false},
		{"database does not exist (3D000)", &pgconn.PgError{Code: "3D000"}, false},
		{"undefined function (42883)", &pgconn.PgError{Code: "42883"}, false},
		{"cancelled", context.Canceled, false},
		{"something else", errors.New("tls: bad certificate"), false},
	}
	for _, tt := range tests {
		if got := notReady(tt.err); got != tt.want {
			t.Errorf("%s: notReady(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestPollErrorOfAMissingRoleNamesUser(t *testing.T) {
	err := pollError(&pgconn.PgError{Severity: "FATAL", Code: "28000", Message: `role "postgres" does not exist`}, "postgres")
	if !strings.Contains(err.Error(), "--user") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("pollError = %q, want one line naming --user", err)
	}
}
