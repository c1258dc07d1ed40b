package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// notReady says whether err, from connecting to or querying the drilled server while
// it starts and recovers, only means "not yet": the socket does not exist or refuses
// (the postmaster is still starting), SQLSTATE 57P03 (cannot_connect_now: starting
// up, not yet consistent), the server going down or restarting after a crash (57P01,
// 57P02, a dropped connection: the server's exit is noticed on its own), or a
// connect_timeout. Anything else (no such role, no such database, a query error)
// will not go away by waiting and fails the drill at once.
func notReady(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P03", "57P01", "57P02":
			return true
		}
		return false
	}
	for _, e := range []error{syscall.ENOENT, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return pgconn.Timeout(err) && !errors.Is(err, context.Canceled)
}

// pollError is the one line for an error notReady refuses: what is wrong and what
// to do.
func pollError(err error, user string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28000", "28P01":
			return fmt.Errorf("connect to the drilled server as database user %q: %w: pass --user with a superuser role of the backed-up cluster", user, err)
		case "3D000":
			return fmt.Errorf("connect to the drilled server: %w: the drill connects to database postgres, which the backed-up cluster lacks", err)
		}
	}
	return fmt.Errorf("poll the drilled server as database user %q: %w", user, err)
}
