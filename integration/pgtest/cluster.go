package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout is how long pg_ctl waits for the server to start or stop.
const StartTimeout = 120 * time.Second

// Options configures a cluster.
type Options struct {
	// ArchiveCommand, if non-empty, enables archive_mode with this command.
	ArchiveCommand string
	// RestoreCommand, if non-empty, sets restore_command.
	RestoreCommand string
	// Conf holds extra postgresql.conf lines ("name = value"), applied
	// after (and so overriding) pgtest's own settings.
	Conf []string
	// InitDBArgs are extra initdb arguments, e.g. "--data-checksums".
	// Ignored by OpenDataDir.
	InitDBArgs []string
	// WALSegSizeMB is initdb's --wal-segsize; 0 keeps the default (16).
	// Ignored by OpenDataDir.
	WALSegSizeMB int
	// Superuser is the name of the superuser initdb creates, "" for "postgres"
	// (a cluster whose superuser is not named after the OS user running it).
	// Env and DSN connect as it. Ignored by OpenDataDir.
	Superuser string
}

// Cluster is a PostgreSQL server on a private data directory, reachable over
// a unix socket in Dir() and on 127.0.0.1:Port().
type Cluster struct {
	pgbin   string
	cred    pgCred
	dir     string // socket directory and log file; owned by the PG user
	dataDir string
	logFile string
	port    int
	// owned: created by NewCluster; postgresql.conf is ours to edit.
	owned bool
	// extra holds additional server command-line options (OpenDataDir);
	// port, socket directory and listen_addresses are always passed.
	extra []string
	// superuser is the database user Env and DSN connect as.
	superuser string
}

// NewCluster runs initdb (trust auth, superuser "postgres", UTF8, C locale)
// in a fresh directory and configures it: a free port, listen_addresses =
// 127.0.0.1, the unix socket in Dir(), wal_level = replica, archive_mode and
// archive_command when opts.ArchiveCommand is set, restore_command,
// archive_timeout = 0, max_wal_senders = 4, shared_buffers = 128MB,
// logging_collector = off, then opts.Conf. It does not start the server.
// When the test ends the server is stopped (immediate) and the directory
// removed.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t)
	c.owned = true
	c.dataDir = filepath.Join(c.dir, "data")
	if opts.Superuser != "" {
		c.superuser = opts.Superuser
	}

	args := []string{"-D", c.dataDir, "-U", c.superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if opts.WALSegSizeMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(opts.WALSegSizeMB))
	}
	args = append(args, opts.InitDBArgs...)
	cmd := c.serverCmd("initdb", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	var conf strings.Builder
	conf.WriteString("\n# --- added by pgtest ---\n")
	for _, kv := range c.baseSettings(opts) {
		fmt.Fprintf(&conf, "%s = %s\n", kv[0], quoteConf(kv[1]))
	}
	for _, line := range opts.Conf {
		conf.WriteString(line + "\n")
	}
	if err := appendFile(filepath.Join(c.dataDir, "postgresql.conf"), conf.String()); err != nil {
		t.Fatal(err)
	}
	return c
}

// OpenDataDir returns a Cluster for an existing, stopped data directory (for
// example one restored by pgb). The directory's configuration files are not
// edited: the port (a new free one), the socket directory (a new Dir()) and
// listen_addresses are passed on the server command line, as are
// opts.ArchiveCommand (with archive_mode = on), opts.RestoreCommand and each
// opts.Conf line. InitDBArgs and WALSegSizeMB are ignored.
//
// When running as root, dataDir is chowned recursively to the postgres user;
// it is also chmod'ed 0700 as PostgreSQL requires. A stale postmaster.pid is
// the caller's business. When the test ends the server is stopped
// (immediate) and Dir() removed, but dataDir is left alone.
//
// A data directory set up for recovery may start in recovery (Start returns
// once it accepts read-only connections, see pg_ctl -w); use
// WaitRecoveryDone or WaitRecoveryPaused afterwards.
func OpenDataDir(t testing.TB, dataDir string, opts Options) *Cluster {
	t.Helper()
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "PG_VERSION")); err != nil {
		t.Fatalf("pgtest: %s is not a PostgreSQL data directory: %v", abs, err)
	}
	c := newCluster(t)
	c.dataDir = abs
	if err := chownToPG(abs); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, kv := range c.baseSettings(Options{ArchiveCommand: opts.ArchiveCommand, RestoreCommand: opts.RestoreCommand}) {
		switch kv[0] {
		case "archive_mode", "archive_command", "restore_command":
			c.extra = append(c.extra, "-c", kv[0]+"="+kv[1])
		}
	}
	for _, line := range opts.Conf {
		name, value, ok := parseConfLine(line)
		if !ok {
			t.Fatalf("pgtest: cannot parse configuration line %q", line)
		}
		c.extra = append(c.extra, "-c", name+"="+value)
	}
	return c
}

func newCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := PGBin()
	if err != nil {
		t.Fatal(err)
	}
	cred := mustCred(t)
	dir, err := makeTempDir()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{pgbin: bin, cred: cred, dir: dir, logFile: filepath.Join(dir, "postgres.log"), port: freePort(t), superuser: "postgres"}
	t.Cleanup(func() {
		if c.Running() {
			if out, err := c.pgCtl("stop", "-m", "immediate"); err != nil {
				t.Logf("pgtest: cleanup stop of %s: %v\n%s", c.dataDir, err, out)
			}
		}
		if c.dataDir != "" {
			StopPGBWorkers(c.dataDir)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: removing %s: %v", dir, err)
		}
	})
	return c
}

// baseSettings returns pgtest's server settings as name, unquoted value.
func (c *Cluster) baseSettings(opts Options) [][2]string {
	s := [][2]string{
		{"port", strconv.Itoa(c.port)},
		{"listen_addresses", "127.0.0.1"},
		{"unix_socket_directories", c.dir},
		{"wal_level", "replica"},
		{"max_wal_senders", "4"},
		{"archive_timeout", "0"},
		{"logging_collector", "off"},
		{"shared_buffers", "128MB"},
	}
	if opts.ArchiveCommand != "" {
		s = append(s, [2]string{"archive_mode", "on"}, [2]string{"archive_command", opts.ArchiveCommand})
	}
	if opts.RestoreCommand != "" {
		s = append(s, [2]string{"restore_command", opts.RestoreCommand})
	}
	return s
}

// DataDir returns the data directory (PGDATA).
func (c *Cluster) DataDir() string { return c.dataDir }

// Dir returns the cluster's own directory: unix socket and postgres.log live
// here (and, for NewCluster, the data directory as Dir()/data). Owned by the
// postgres user when root, mode 0755; removed when the test ends.
func (c *Cluster) Dir() string { return c.dir }

// Port returns the server's port (on 127.0.0.1 and for the unix socket).
func (c *Cluster) Port() int { return c.port }

// LogFile returns the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile }

// Bin returns the path of a PostgreSQL program, e.g. c.Bin("pg_waldump").
func (c *Cluster) Bin(name string) string { return filepath.Join(c.pgbin, name) }

// Env returns PGHOST (the socket directory), PGPORT, PGUSER (the superuser),
// PGDATABASE=postgres and PGDATA as "KEY=value" entries, to append to a
// command's environment.
func (c *Cluster) Env() []string {
	return []string{
		"PGHOST=" + c.dir,
		"PGPORT=" + strconv.Itoa(c.port),
		"PGUSER=" + c.superuser,
		"PGDATABASE=postgres",
		"PGDATA=" + c.dataDir,
	}
}

// DSN returns a keyword/value connection string for the unix socket.
func (c *Cluster) DSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable connect_timeout=10 application_name=pgtest",
		quoteDSN(c.dir), c.port, quoteDSN(c.superuser))
}

// Command is like RunAsPG with the cluster's Env() added to the environment
// and the working directory set to Dir().
func (c *Cluster) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := newCmd(c.cred, name, args...)
	cmd.Env = setEnv(cmd.Env, c.Env()...)
	cmd.Dir = c.dir
	return cmd
}

func (c *Cluster) serverCmd(name string, args ...string) *exec.Cmd {
	cmd := newCmd(c.cred, filepath.Join(c.pgbin, name), args...)
	cmd.Env = setEnv(cmd.Env, c.Env()...)
	cmd.Env = setEnv(cmd.Env, "LC_ALL=C")
	cmd.Dir = c.dir
	return cmd
}

func (c *Cluster) pgCtl(args ...string) ([]byte, error) {
	full := append([]string{"-D", c.dataDir, "-w", "-t", strconv.Itoa(int(StartTimeout / time.Second))}, args...)
	return c.serverCmd("pg_ctl", full...).CombinedOutput()
}

// Start starts the server with `pg_ctl -w start` and fails the test, with
// the tail of the server log, if it does not come up. pg_ctl -w returns once
// the server accepts connections, read-only ones included: a server in
// archive recovery counts as started once it is consistent.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.TryStart(); err != nil {
		t.Fatal(err)
	}
}

// TryStart is Start returning an error (including the log tail) instead of
// failing the test, for tests that expect a start to fail. If the port turns
// out to be taken, it retries with another free port.
func (c *Cluster) TryStart() error {
	for attempt := 0; ; attempt++ {
		offset := fileSize(c.logFile)
		opts := []string{"-p", strconv.Itoa(c.port), "-k", shellQuote(c.dir), "-c", "listen_addresses=127.0.0.1"}
		for _, e := range c.extra {
			opts = append(opts, shellQuote(e))
		}
		out, err := c.pgCtl("-l", c.logFile, "-o", strings.Join(opts, " "), "start")
		if err == nil {
			return nil
		}
		if attempt < 3 && portInUse(readFrom(c.logFile, offset)) && !c.Running() {
			port, perr := nextFreePort()
			if perr == nil {
				c.setPort(port)
				continue
			}
		}
		return fmt.Errorf("pgtest: pg_ctl start (data %s, port %d): %w\n%s\n--- server log tail ---\n%s",
			c.dataDir, c.port, err, bytes.TrimSpace(out), c.LogTail(40))
	}
}

// ErrStillRunning is RunUntilExit's answer when the server did not exit.
var ErrStillRunning = errors.New("pgtest: the server is still running")

// RunUntilExit runs the server in the foreground, as a child of the test rather than
// through pg_ctl, and returns when the postmaster exits: for tests that expect the
// server to stop by itself (a FATAL error during recovery). It returns the exit
// status (nil for exit code 0). If the server is still running after timeout — a
// safety net against a hang, not a measure of anything — it returns ErrStillRunning
// and leaves the server running for the caller to inspect; it is stopped when the test
// ends. The server's output is appended to LogFile().
func (c *Cluster) RunUntilExit(timeout time.Duration) error {
	safety := time.NewTimer(timeout)
	defer safety.Stop()
	for attempt := 0; ; attempt++ {
		offset := fileSize(c.logFile)
		err := c.runForeground(safety.C)
		if err != nil && !errors.Is(err, ErrStillRunning) && attempt < 3 && portInUse(readFrom(c.logFile, offset)) {
			if port, perr := nextFreePort(); perr == nil {
				c.setPort(port)
				continue
			}
		}
		return err
	}
}

func (c *Cluster) runForeground(safety <-chan time.Time) error {
	log, err := os.OpenFile(c.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }() // the server writes it; the harness only hands it over
	args := append([]string{"-D", c.dataDir, "-p", strconv.Itoa(c.port), "-k", c.dir, "-c", "listen_addresses=127.0.0.1"}, c.extra...)
	cmd := c.serverCmd("postgres", args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-safety:
		return ErrStillRunning
	}
}

func (c *Cluster) setPort(port int) {
	c.port = port
	if c.owned {
		// Keep postgresql.conf in line with the port actually used.
		_ = appendFile(filepath.Join(c.dataDir, "postgresql.conf"), fmt.Sprintf("port = %d\n", port))
	}
}

func portInUse(log string) bool {
	return strings.Contains(log, "Address already in use") || strings.Contains(log, "could not create any TCP/IP sockets")
}

// Stop stops the server with the fast shutdown mode and waits for it.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.stop(t, "fast")
}

// StopImmediate stops the server with the immediate mode (no shutdown
// checkpoint: the next start performs crash recovery).
func (c *Cluster) StopImmediate(t testing.TB) {
	t.Helper()
	c.stop(t, "immediate")
}

func (c *Cluster) stop(t testing.TB, mode string) {
	t.Helper()
	if out, err := c.pgCtl("-m", mode, "stop"); err != nil {
		t.Fatalf("pgtest: pg_ctl stop -m %s (data %s): %v\n%s\n--- server log tail ---\n%s",
			mode, c.dataDir, err, bytes.TrimSpace(out), c.LogTail(40))
	}
}

// Restart stops the server (fast) and starts it again.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// Promote ends recovery of a server in standby or paused archive recovery
// (pg_ctl promote -w).
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	if out, err := c.pgCtl("promote"); err != nil {
		t.Fatalf("pgtest: pg_ctl promote: %v\n%s\n--- server log tail ---\n%s", err, bytes.TrimSpace(out), c.LogTail(40))
	}
}

// Running reports whether a postmaster is alive for the data directory,
// judging by postmaster.pid.
func (c *Cluster) Running() bool {
	data, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LogTail returns the last n lines of the server log ("" if there is none).
func (c *Cluster) LogTail(n int) string {
	const maxRead = 256 << 10
	f, err := os.Open(c.logFile)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read-only
	size := fileSize(c.logFile)
	start := max(size-maxRead, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, start, size-start))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(p string, offset int64) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read-only
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(data)
}

func appendFile(p, s string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		_ = f.Close() // the write error is what matters
		return err
	}
	return f.Close()
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// nextFreePort returns a TCP port that was free on 127.0.0.1 a moment ago
// and has not been handed out before in this process.
func nextFreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close() // only probing for a free port
		if !portsUsed[port] {
			portsUsed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("pgtest: no free port found")
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := nextFreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// quoteConf quotes a postgresql.conf value.
func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// quoteDSN quotes a keyword/value connection string value.
func quoteDSN(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// parseConfLine splits a postgresql.conf line ("name = value", "name =
// 'quoted value'", "name value", with an optional trailing comment) into
// name and unquoted value.
func parseConfLine(line string) (name, value string, ok bool) {
	line = strings.TrimSpace(line)
	i := strings.IndexAny(line, "= \t")
	if i <= 0 {
		return "", "", false
	}
	name = line[:i]
	rest := strings.TrimLeft(line[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	rest = strings.TrimLeft(rest, " \t")
	if strings.HasPrefix(rest, "'") {
		var b strings.Builder
		for j := 1; j < len(rest); j++ {
			switch ch := rest[j]; {
			case ch == '\'' && j+1 < len(rest) && rest[j+1] == '\'':
				b.WriteByte('\'')
				j++
			case ch == '\\' && j+1 < len(rest):
				b.WriteByte(rest[j+1])
				j++
			case ch == '\'':
				tail := strings.TrimSpace(rest[j+1:])
				return name, b.String(), tail == "" || strings.HasPrefix(tail, "#")
			default:
				b.WriteByte(ch)
			}
		}
		return "", "", false // unterminated quote
	}
	if k := strings.IndexByte(rest, '#'); k >= 0 {
		rest = rest[:k]
	}
	return name, strings.TrimSpace(rest), true
}
