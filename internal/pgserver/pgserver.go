// Package pgserver finds PostgreSQL server binaries and runs a private, local-only
// server on a data directory: a free port, a unix socket in a directory of its own,
// listen_addresses = ” (no TCP), as a chosen OS user when pgb runs as root.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinaries means no PostgreSQL server binaries of the wanted major version were found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// Candidates are the directories searched, in order, for the server binaries of
// major version major: dir (--pg-bin) alone when given; else each directory of PATH,
// then /usr/lib/postgresql/N/bin (Debian) and /usr/pgsql-N/bin (RPM).
func Candidates(major int, dir, path string) []string {
	if dir != "" {
		return []string{dir}
	}
	out := filepath.SplitList(path)
	return append(out, fmt.Sprintf("/usr/lib/postgresql/%d/bin", major), fmt.Sprintf("/usr/pgsql-%d/bin", major))
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// ParseVersion is the major version in `postgres --version` output, 0 if none.
func ParseVersion(out string) int {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// FindBin is the first of Candidates holding a postgres binary of major version major,
// links followed.
func FindBin(ctx context.Context, major int, dir string) (string, error) {
	var seen []string
	for _, d := range Candidates(major, dir, os.Getenv("PATH")) {
		p := filepath.Join(d, "postgres")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		out, err := exec.CommandContext(ctx, p, "--version").Output()
		if err != nil {
			continue
		}
		v := ParseVersion(string(out))
		if v != major {
			seen = append(seen, fmt.Sprintf("%s is %d", p, v))
			continue
		}
		// A link (/usr/local/bin/postgres) leads to the directory that holds the
		// other server binaries (pg_amcheck).
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return d, nil
	}
	if dir != "" {
		return "", fmt.Errorf("%w: --pg-bin %s holds no postgres of version %d %v", ErrNoBinaries, dir, major, seen)
	}
	return "", fmt.Errorf("%w: the backup is of PostgreSQL %d and no postgres %d is in PATH, /usr/lib/postgresql/%d/bin or /usr/pgsql-%d/bin %v: install it or name its directory with --pg-bin DIR",
		ErrNoBinaries, major, major, major, major, seen)
}

// FreePort is a TCP port free on the loopback now; the server only uses it to name
// its unix socket (listen_addresses is empty).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Server is one postgres process on DataDir.
type Server struct {
	Bin     string              // directory of the server binaries
	DataDir string              // the data directory
	SockDir string              // the unix socket's directory (private: the server's user owns it)
	Port    int                 // names the socket
	HBAFile string              // when set, the pg_hba.conf used instead of the data directory's
	Cred    *syscall.Credential // the OS user the server runs as; nil: pgb's own
	LogFile string              // where the server's output goes
	Major   int                 // the server's major version (settings some versions lack); 0: unknown

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts postgres. It returns once the process runs, not once it accepts
// connections. The process is in its own process group, so that a terminal's ^C
// reaches pgb only and pgb stops the server itself.
func (s *Server) Start() error {
	log, err := openLog(s.LogFile)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	if s.Cred != nil {
		if err := log.Chown(int(s.Cred.Uid), int(s.Cred.Gid)); err != nil {
			return fmt.Errorf("server log: %w", err)
		}
	}
	args := []string{"-D", s.DataDir, "-p", strconv.Itoa(s.Port), "-c", "listen_addresses=",
		"-c", "unix_socket_directories=" + quoteListItem(s.SockDir)}
	// The copy keeps the source's settings (postgresql.conf and .auto.conf came with
	// the backup); these must not reach anything of the source's: its data directory
	// or pid file by absolute path, its publishers (subscriptions would consume their
	// slots), its primary, its archive (archive_cleanup_command would prune a shared
	// archive a standby still needs), whatever recovery_end_command acts on. hot_standby
	// on: a pause at a target must be queryable; logging to the server's log file, which
	// the drill reads (in English, "LOG:  message" whatever the source's logging).
	for _, kv := range []string{"data_directory=" + s.DataDir, "external_pid_file=", "max_logical_replication_workers=0",
		"primary_conninfo=", "primary_slot_name=", "archive_mode=off", "archive_cleanup_command=", "recovery_end_command=",
		"hot_standby=on", "ssl=off",
		"logging_collector=off", "log_destination=stderr", "log_error_verbosity=default", "log_min_messages=warning", "lc_messages=C"} {
		args = append(args, "-c", kv)
	}
	if s.Major != 0 && s.Major <= 15 {
		args = append(args, "-c", "promote_trigger_file=") // removed in 16
	}
	if s.Major != 0 && s.Major <= 14 {
		// its default is relative, but Debian sets an absolute /var/run path,
		// the source's own (removed in 15)
		args = append(args, "-c", "stats_temp_directory=pg_stat_tmp")
	}
	if s.HBAFile != "" {
		args = append(args, "-c", "hba_file="+s.HBAFile)
	}
	cmd := exec.Command(filepath.Join(s.Bin, "postgres"), args...) //nolint:gosec // the server binary found by FindBin
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = s.SockDir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.Cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { s.err = cmd.Wait(); close(s.done) }()
	return nil
}

// quoteListItem quotes dir as one name of a directory list (unix_socket_directories):
// PostgreSQL splits the list at commas, outside double quotes, in which "" is a
// quote (SplitDirectoriesString). Unquoted, a comma in dir would make a second socket
// directory.
func quoteListItem(dir string) string {
	return `"` + strings.ReplaceAll(dir, `"`, `""`) + `"`
}

// openLog opens the server's log file to append, in a directory the server's OS user
// may own (and have planted links in): never through a symbolic link, and only a
// regular file with no other name (a hard link to a file of root's is refused).
func openLog(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("server log: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || !ok || st.Nlink != 1 {
		_ = f.Close()
		return nil, fmt.Errorf("server log %s: not a regular file of its own (a link?): remove it", p)
	}
	return f, nil
}

// Pid is the postmaster's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Exited is closed when the server process has exited.
func (s *Server) Exited() <-chan struct{} { return s.done }

// ExitErr is how the server exited, once Exited is closed.
func (s *Server) ExitErr() error { <-s.done; return s.err }

// DSN is a connection string to database db as user on the server's socket.
func (s *Server) DSN(user, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=10 application_name=pgb-drill",
		quoteDSN(s.SockDir), s.Port, quoteDSN(user), quoteDSN(db))
}

func quoteDSN(v string) string {
	b := []byte{'\''}
	for _, r := range []byte(v) {
		if r == '\'' || r == '\\' {
			b = append(b, '\\')
		}
		b = append(b, r)
	}
	return string(append(b, '\''))
}

// Stop stops the server: a fast shutdown (SIGINT), then after grace an immediate
// one (SIGQUIT), then SIGKILL; it returns once the process has exited. It works with
// no context: it runs when the drill's context is already cancelled.
func (s *Server) Stop(grace time.Duration) {
	if s.cmd == nil {
		return
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		_ = s.cmd.Process.Signal(sig)
		t := time.NewTimer(grace)
		select {
		case <-s.done:
			t.Stop()
			return
		case <-t.C:
		}
	}
	<-s.done
}
