package drill

import "github.com/pgb-project/pgb/internal/pgserver"

// Copy is the running, recovered copy an Options.AtTarget hook works on. It lives
// until the drill cleans up: the hook must not keep it.
type Copy struct {
	Bin      string // directory of the server binaries (pg_dump, psql of the same version)
	SockDir  string // the server's unix socket directory (the scratch directory)
	Port     int    // names the socket
	User     string // the database user the drill connects as
	Promoted bool   // false: paused at the target, read-only
	Target   string // the recovery target, as pgb restore prints it
}

// DSN is a connection string to database db on the copy, as User.
func (c *Copy) DSN(db string) string {
	s := pgserver.Server{SockDir: c.SockDir, Port: c.Port}
	return s.DSN(c.User, db)
}
