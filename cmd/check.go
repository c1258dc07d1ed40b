package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "check the archiving path end to end",
		Description: "Connects to PostgreSQL, reports archive_mode and archive_command (FAIL unless it calls pgb\n" +
			"wal-push with %p), checks that the repository is reachable, writable and belongs to this\n" +
			"cluster (on S3 also which s3-checksum the store needs and whether it enforces conditional\n" +
			"writes), then forces a WAL switch and waits (up to --archive-timeout) until that segment is in\n" +
			"the repository; it fails at once when pg_stat_archiver shows archive_command failing for that\n" +
			"segment (see the PostgreSQL log for why). Prints one ok/FAIL line per step; exits 1 on any\n" +
			"failure.",
		Flags: flags(config.KeyPGDSN, config.KeyArchiveTimeout),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.check(c.Context)
		}),
	}
}

// checker prints one line per step. Its writes are not checked: the exit status
// carries the verdict, and there is nowhere better to report a broken stdout.
type checker struct {
	w      io.Writer
	failed int
}

func (k *checker) ok(format string, a ...any) { _, _ = fmt.Fprintf(k.w, "ok    "+format+"\n", a...) }
func (k *checker) warn(format string, a ...any) {
	_, _ = fmt.Fprintf(k.w, "WARN  "+format+"\n", a...)
}
func (k *checker) fail(format string, a ...any) {
	k.failed++
	_, _ = fmt.Fprintln(k.w, "FAIL  "+oneLine(fmt.Sprintf(format, a...)))
}

func (e *env) check(ctx context.Context) error {
	k := &checker{w: e.stdout}
	err := e.runChecks(ctx, k)
	if err != nil {
		k.fail("%v", err)
	}
	if k.failed > 0 {
		_, _ = fmt.Fprintf(e.stdout, "check FAILED (%d problem(s))\n", k.failed)
		return withCode(exitError, errSilent)
	}
	_, _ = fmt.Fprintln(e.stdout, "check passed: WAL reaches the repository")
	return nil
}

func (e *env) runChecks(ctx context.Context, k *checker) error {
	conn, err := pg.Connect(ctx, e.cfg.PGDSN)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }() // ends the session: nothing is pending on it
	sysid, err := conn.SystemID(ctx)
	if err != nil {
		return err
	}
	k.ok("connected to PostgreSQL %d (server_version_num %d, system identifier %d)", conn.Major(), conn.Version, sysid)

	mode, err := conn.Setting(ctx, "archive_mode")
	if err != nil {
		return err
	}
	if mode == "off" {
		k.fail("archive_mode = off: set archive_mode = on in postgresql.conf and restart PostgreSQL")
	} else {
		k.ok("archive_mode = %s", mode)
	}
	cmdline, err := conn.Setting(ctx, "archive_command")
	if err != nil {
		return err
	}
	noArchiving := mode == "off"
	switch {
	case strings.TrimSpace(cmdline) == "" || cmdline == "(disabled)":
		k.fail("archive_command is empty: set archive_command = 'pgb wal-push %%p' and reload PostgreSQL")
		noArchiving = true
	case !callsWALPush(cmdline):
		// The WAL switch below still shows what this command does.
		k.fail("archive_command = '%s' does not call pgb wal-push with %%p: set archive_command = 'pgb wal-push %%p' "+
			"(with pgb's absolute path if it is not in the server's PATH) and reload PostgreSQL", cmdline)
	default:
		k.ok("archive_command = '%s'", cmdline)
	}

	rp, err := e.openRepo(ctx, true, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: every write has completed or failed by now
	// A probe that fails either way leaves the reason to ProbeWrite below.
	switch known, supported, err := rp.ProbeChecksums(ctx); {
	case !known || err != nil:
	case !supported && e.cfg.S3.Checksum != "when-required":
		k.fail("the store rejects the SDK's default request checksums (x-amz-checksum-* headers): set s3-checksum: when-required (PGB_S3_CHECKSUM)")
		return nil
	case supported:
		k.ok("the store accepts the SDK's request checksums (s3-checksum: when-supported works; set: %s)", e.cfg.S3.Checksum)
	default:
		k.ok("the store rejects the SDK's default request checksums; s3-checksum: when-required, as set, works")
	}
	if err := rp.ProbeWrite(ctx); err != nil {
		return fmt.Errorf("repository %s is not writable: %w", rp, err)
	}
	id, err := rp.Identity(ctx)
	switch {
	case errors.Is(err, repo.ErrNoIdentity):
		k.ok("repository %s is reachable and writable (new: the first archived segment binds it to this cluster)", rp)
	case err != nil:
		return err
	case id.SystemID != repo.SystemID(sysid) || id.PGVersion != conn.Major():
		k.fail("repository %s: %v", rp, id.Matches(repo.SystemID(sysid), conn.Major()))
		return nil
	default:
		k.ok("repository %s is reachable, writable, and belongs to this cluster (PostgreSQL %d)", rp, id.PGVersion)
	}
	if known, enforced, err := rp.ProbeConditionalWrites(ctx); known {
		switch {
		case err != nil:
			k.fail("probing conditional writes: %v", err)
		case enforced:
			k.ok("the store enforces conditional writes (If-None-Match): put-if-absent is atomic")
		case e.cfg.S3.Conditional == "head-check":
			k.warn("the store ignores conditional writes (If-None-Match); s3-conditional-writes = head-check makes pgb check before writing, which two racing writers could both pass")
		default:
			k.fail("the store ignores conditional writes (If-None-Match), so two writers could overwrite each other: set s3-conditional-writes: head-check (PGB_S3_CONDITIONAL_WRITES) to use the safest fallback")
		}
	}
	// No point waiting for WAL that cannot arrive; an archive_command that is not pgb's
	// alone is no reason not to look.
	notPGB := 0
	if !callsWALPush(cmdline) {
		notPGB = 1
	}
	if noArchiving || k.failed > notPGB {
		return nil
	}

	before, err := conn.Archiver(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	seg, err := switchWAL(ctx, conn, rp, e.cfg.ArchiveTimeout)
	switch {
	case err == nil:
		k.ok("WAL switch: segment %s reached the repository in %.1fs", seg, time.Since(start).Seconds())
	case errors.Is(err, pg.ErrArchiveFailing):
		k.fail("WAL switch: segment %s did not reach the repository: %v", seg, err)
	case errors.Is(err, repo.ErrWALTimeout):
		now, _ := conn.Archiver(ctx)
		hint := "is the archiver running and archive_command pointing at this repository?"
		if now.FailedCount > before.FailedCount {
			hint = fmt.Sprintf("archive_command failed %d time(s), last for %s: see the PostgreSQL log", now.FailedCount-before.FailedCount, now.LastFailed)
		}
		k.fail("WAL switch: segment %s did not reach the repository within %s (--archive-timeout); %s", seg, e.cfg.ArchiveTimeout, hint)
	default:
		return err
	}
	return nil
}

// switchWAL completes the current WAL segment and waits, up to timeout, until it is in
// the repository. A segment that does not arrive is an error wrapping
// repo.ErrWALTimeout, with the segment's name returned.
// It gives up early, with an error wrapping pg.ErrArchiveFailing, as soon as
// pg_stat_archiver shows archive_command failing for that segment or a later one.
func switchWAL(ctx context.Context, conn *pg.Conn, rp *repo.Repo, timeout time.Duration) (string, error) {
	before, err := conn.Archiver(ctx)
	if err != nil {
		return "", err
	}
	seg, err := conn.SwitchWAL(ctx)
	if err != nil {
		return "", err
	}
	f, err := wal.Parse(seg)
	if err != nil {
		return "", err
	}
	failing := func(ctx context.Context) error { return conn.ArchiveFailing(ctx, before, seg) }
	return seg, rp.WaitForWALUntil(ctx, f, timeout, failing)
}

// pgbWALPush matches a command line that runs a program named pgb… (any directory, flags
// before the command allowed) with wal-push; other tools' wal-push (wal-g) do not match.
var pgbWALPush = regexp.MustCompile(`(^|[\s/'"])pgb[^\s/]*\s(.*\s)?wal-push(\s|$)`)

// callsWALPush reports whether an archive_command runs pgb wal-push on %p.
func callsWALPush(cmdline string) bool {
	return pgbWALPush.MatchString(cmdline) && strings.Contains(cmdline, "%p")
}
