// Package check is pgb check: it tests the archiving path end to end (PostgreSQL's
// settings, the repository, a WAL switch that must reach the repository) and returns
// one verdict per step. It prints nothing: the command line prints the steps.
package check

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
)

// Status is a step's verdict.
type Status int

// Verdicts, from good to bad.
const (
	OK Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "WARN"
	default:
		return "FAIL"
	}
}

// MarshalText names the status in JSON: "ok", "warn" or "fail".
func (s Status) MarshalText() ([]byte, error) { return []byte(strings.ToLower(s.String())), nil }

// Step names: what each step checked.
const (
	StepPostgreSQL        = "postgresql"
	StepArchiveMode       = "archive_mode"
	StepArchiveCommand    = "archive_command"
	StepChecksums         = "checksums"
	StepRepository        = "repository"
	StepConditionalWrites = "conditional-writes"
	StepWALSwitch         = "wal-switch"
	StepEncryption        = "encryption"
	StepWALStream         = "wal-stream"
)

// Step is one verdict: Name says what was checked (one of the Step* constants),
// Message says what was found and, on failure, what to do.
type Step struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// Result is every step, in the order they ran.
type Result struct {
	Steps []Step `json:"steps"`
}

// Failed counts the failed steps.
func (r *Result) Failed() int {
	n := 0
	for _, s := range r.Steps {
		if s.Status == Fail {
			n++
		}
	}
	return n
}

// DB is what check needs of a PostgreSQL session (*pg.Conn is one).
type DB interface {
	archive.Switcher
	SystemID(ctx context.Context) (uint64, error)
	Major() int
	ServerVersionNum() int
	Setting(ctx context.Context, name string) (string, error)
	WALSenders(ctx context.Context) ([]pg.WALSender, error)
	Close(ctx context.Context) error
}

// Deps are check's dependencies. Connect and OpenRepo are called in that order, each
// at most once; Run closes what they return.
type Deps struct {
	Connect  func(ctx context.Context) (DB, error)
	OpenRepo func(ctx context.Context) (*repo.Repo, error)
}

// Options are check's settings.
type Options struct {
	ArchiveTimeout time.Duration // how long the switched segment may take to arrive
	S3Conditional  string        // s3-conditional-writes: "head-check" turns a store that ignores If-None-Match into a warning
	S3Checksum     string        // s3-checksum: "when-required" suits a store that rejects the SDK's default checksums
	StreamAppName  string        // application_name of pgb wal-stream ("": pgb)
	// OnStep, if not nil, is called with each step as soon as it is decided (to print
	// progress while the WAL switch is waited for).
	OnStep func(Step)
	Now    func() time.Time // the clock; nil is time.Now
}

// recorder collects the steps; step is the one running, named on an error that ends
// the check.
type recorder struct {
	res    Result
	onStep func(Step)
	step   string
}

func (r *recorder) add(status Status, format string, a ...any) {
	s := Step{Name: r.step, Status: status, Message: fmt.Sprintf(format, a...)}
	r.res.Steps = append(r.res.Steps, s)
	if r.onStep != nil {
		r.onStep(s)
	}
}

func (r *recorder) ok(format string, a ...any)   { r.add(OK, format, a...) }
func (r *recorder) warn(format string, a ...any) { r.add(Warn, format, a...) }
func (r *recorder) fail(format string, a ...any) { r.add(Fail, format, a...) }

// Run checks the archiving path: PostgreSQL's archive_mode and archive_command, the
// repository (the request checksums it accepts, where the store can tell; reachable,
// writable, this cluster's; whether it enforces conditional writes, where the store
// can tell), then a WAL switch whose segment must reach the repository within
// opt.ArchiveTimeout (skipped when archiving cannot work anyway). An error that stops
// the check (PostgreSQL or the repository unreachable) is its last, failed step: the
// check passed when no step failed.
func Run(ctx context.Context, deps Deps, opt Options) Result {
	r := &recorder{onStep: opt.OnStep, step: StepPostgreSQL}
	if err := run(ctx, deps, opt, r); err != nil {
		r.fail("%v", err)
	}
	return r.res
}

func run(ctx context.Context, deps Deps, opt Options, r *recorder) error {
	conn, err := deps.Connect(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }() // ends the session: nothing is pending on it
	sysid, err := conn.SystemID(ctx)
	if err != nil {
		return err
	}
	r.ok("connected to PostgreSQL %d (server_version_num %d, system identifier %d)", conn.Major(), conn.ServerVersionNum(), sysid)

	r.step = StepWALStream
	streaming, err := checkStream(ctx, conn, opt.StreamAppName, r)
	if err != nil {
		return err
	}
	r.step = StepArchiveMode
	mode, err := conn.Setting(ctx, "archive_mode")
	if err != nil {
		return err
	}
	switch {
	case mode == "off" && streaming:
		r.ok("archive_mode = off: WAL reaches the repository through pgb wal-stream alone")
	case mode == "off":
		r.fail("archive_mode = off: set archive_mode = on in postgresql.conf and restart PostgreSQL (or run pgb wal-stream)")
	default:
		r.ok("archive_mode = %s", mode)
	}
	r.step = StepArchiveCommand
	cmdline, err := conn.Setting(ctx, "archive_command")
	if err != nil {
		return err
	}
	noArchiving := mode == "off" && !streaming
	switch {
	case mode == "off" && streaming:
	case (strings.TrimSpace(cmdline) == "" || cmdline == "(disabled)") && streaming:
		r.ok("archive_command is empty: WAL reaches the repository through pgb wal-stream alone")
	case strings.TrimSpace(cmdline) == "" || cmdline == "(disabled)":
		r.fail("archive_command is empty: set archive_command = 'pgb wal-push %%p' and reload PostgreSQL")
		noArchiving = true
	case !CallsWALPush(cmdline):
		// The WAL switch below still shows what this command does.
		r.fail("archive_command = '%s' does not call pgb wal-push with %%p: set archive_command = 'pgb wal-push %%p' "+
			"(with pgb's absolute path if it is not in the server's PATH) and reload PostgreSQL", cmdline)
	default:
		r.ok("archive_command = '%s'", cmdline)
	}

	r.step = StepRepository
	rp, err := deps.OpenRepo(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: every write has completed or failed by now
	r.step = StepChecksums
	if stop := checkChecksums(ctx, rp, opt.S3Checksum, r); stop {
		return nil
	}
	r.step = StepRepository
	if stop, err := checkRepository(ctx, rp, conn, sysid, r); stop || err != nil {
		return err
	}
	r.step = StepConditionalWrites
	checkConditionalWrites(ctx, rp, opt.S3Conditional, r)
	r.step = StepEncryption
	checkEncryption(ctx, rp, r)
	// No point waiting for WAL that cannot arrive; an archive_command that is not pgb's
	// alone is no reason not to look.
	notPGB := 0
	if !CallsWALPush(cmdline) && !streaming {
		notPGB = 1
	}
	if noArchiving || r.res.Failed() > notPGB {
		return nil
	}
	r.step = StepWALSwitch
	return checkWALSwitch(ctx, conn, rp, opt, r)
}

// checkStream reports a pgb wal-stream connected to the server (a WAL sender whose
// application_name is app, streaming): then WAL reaches the repository through it, and
// archive_command is not needed. No step when none is.
func checkStream(ctx context.Context, conn DB, app string, r *recorder) (bool, error) {
	if app == "" {
		app = "pgb"
	}
	ss, err := conn.WALSenders(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range ss {
		if s.AppName != app || s.State != "streaming" {
			continue
		}
		switch s.SyncState {
		case "sync":
			r.ok("pgb wal-stream is connected (application_name %s) and synchronous: a commit returns once its WAL is in the repository (RPO 0)", app)
		case "quorum":
			r.ok("pgb wal-stream is connected (application_name %s) in a quorum (ANY n): a commit returns once its WAL is in the repository or on enough of the other standbys", app)
		default:
			r.ok("pgb wal-stream is connected (application_name %s), not synchronous (%s): commits do not wait for it; synchronous_standby_names = '%s' makes RPO 0", app, s.SyncState, app)
		}
		return true, nil
	}
	return false, nil
}

// checkChecksums says which s3-checksum the store needs, when it can tell (S3); no step
// otherwise. stop means a store that rejects the checksums pgb is set to send: every
// write would fail. A probe that fails either way leaves the reason to ProbeWrite.
func checkChecksums(ctx context.Context, rp *repo.Repo, s3Checksum string, r *recorder) (stop bool) {
	switch known, supported, err := rp.ProbeChecksums(ctx); {
	case !known || err != nil:
	case !supported && s3Checksum != "when-required":
		r.fail("the store rejects the SDK's default request checksums (x-amz-checksum-* headers): set s3-checksum: when-required (PGB_S3_CHECKSUM)")
		return true
	case supported:
		r.ok("the store accepts the SDK's request checksums (s3-checksum: when-supported works; set: %s)", s3Checksum)
	default:
		r.ok("the store rejects the SDK's default request checksums; s3-checksum: when-required, as set, works")
	}
	return false
}

// checkRepository checks that the repository is writable and this cluster's; stop
// means a verdict that ends the check.
func checkRepository(ctx context.Context, rp *repo.Repo, conn DB, sysid uint64, r *recorder) (stop bool, err error) {
	if err := rp.ProbeWrite(ctx); err != nil {
		return true, fmt.Errorf("repository %s is not writable: %w", rp, err)
	}
	id, err := rp.Identity(ctx)
	switch {
	case errors.Is(err, repo.ErrNoIdentity):
		r.ok("repository %s is reachable and writable (new: the first archived segment binds it to this cluster)", rp)
	case err != nil:
		return true, err
	case id.SystemID != repo.SystemID(sysid) || id.PGVersion != conn.Major():
		r.fail("repository %s: %v", rp, id.Matches(repo.SystemID(sysid), conn.Major()))
		return true, nil
	default:
		r.ok("repository %s is reachable, writable, and belongs to this cluster (PostgreSQL %d)", rp, id.PGVersion)
	}
	return false, nil
}

// checkConditionalWrites says whether the store enforces put-if-absent, when it can
// tell (S3); no step otherwise.
func checkConditionalWrites(ctx context.Context, rp *repo.Repo, s3Conditional string, r *recorder) {
	known, enforced, err := rp.ProbeConditionalWrites(ctx)
	switch {
	case !known:
	case err != nil:
		r.fail("probing conditional writes: %v", err)
	case enforced:
		r.ok("the store enforces conditional writes (If-None-Match): put-if-absent is atomic")
	case s3Conditional == "head-check":
		r.warn("the store ignores conditional writes (If-None-Match); s3-conditional-writes = head-check makes pgb check before writing, which two racing writers could both pass")
	default:
		r.fail("the store ignores conditional writes (If-None-Match), so two writers could overwrite each other: set s3-conditional-writes: head-check (PGB_S3_CONDITIONAL_WRITES) to use the safest fallback")
	}
}

func checkWALSwitch(ctx context.Context, conn DB, rp *repo.Repo, opt Options, r *recorder) error {
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	before, err := conn.Archiver(ctx)
	if err != nil {
		return err
	}
	start := now()
	seg, err := archive.SwitchWAL(ctx, conn, rp, opt.ArchiveTimeout)
	switch {
	case err == nil:
		r.ok("WAL switch: segment %s reached the repository in %.1fs", seg, now().Sub(start).Seconds())
	case errors.Is(err, pg.ErrArchiveFailing):
		r.fail("WAL switch: segment %s did not reach the repository: %v", seg, err)
	case errors.Is(err, repo.ErrWALTimeout):
		after, _ := conn.Archiver(ctx)
		hint := "is the archiver running and archive_command pointing at this repository?"
		if after.FailedCount > before.FailedCount {
			hint = fmt.Sprintf("archive_command failed %d time(s), last for %s: see the PostgreSQL log", after.FailedCount-before.FailedCount, after.LastFailed)
		}
		r.fail("WAL switch: segment %s did not reach the repository within %s (--archive-timeout); %s", seg, opt.ArchiveTimeout, hint)
	default:
		return err
	}
	return nil
}

// pgbWALPush matches a command line that runs a program named pgb… (any directory, flags
// before the command allowed) with wal-push; other tools' wal-push (wal-g) do not match.
var pgbWALPush = regexp.MustCompile(`(^|[\s/'"])pgb[^\s/]*\s(.*\s)?wal-push(\s|$)`)

// CallsWALPush reports whether an archive_command runs pgb wal-push on %p.
func CallsWALPush(cmdline string) bool {
	return pgbWALPush.MatchString(cmdline) && strings.Contains(cmdline, "%p")
}

// checkEncryption says how new objects are encrypted, when they are or the repository
// already holds encrypted ones; no step otherwise. Keys that cannot write fail it: every
// wal-push would.
func checkEncryption(ctx context.Context, rp *repo.Repo, r *recorder) {
	st := rp.EncryptionState()
	sets, err := rp.RecipientSets(ctx)
	switch {
	case st.Err != nil:
		r.fail("%v", st.Err)
	case st.Passphrase:
		r.ok("encryption: age, with the repository's passphrase key (the first encrypted write opens it, or makes it)")
	case st.Info != nil:
		r.ok("encryption: age, new objects to recipient set %s (%d recipient(s)), MAC key %s; readers need the identities", st.Info.RecipientSet, len(st.Info.Recipients), st.Info.MACKeyID)
	case err != nil:
		r.warn("cannot tell whether the repository holds encrypted objects: %v", err)
	case len(sets) > 0:
		r.warn("the repository holds objects encrypted for %d recipient set(s), but encryption is none here: new WAL and backups would be stored unencrypted (set encryption: age)", len(sets))
	}
}
