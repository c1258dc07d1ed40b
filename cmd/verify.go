package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/verify"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "re-read the repository and prove that its backups (and with --wal its WAL) restore",
		Description: "Reads every part of every backup (or of --backup NAME) to its end: each part must decode and\n" +
			"pass its size and checksum, and hold exactly the files its manifest lists there, each with the\n" +
			"manifest's size and CRC-32C; the manifest must agree with the backup's summary, and the WAL\n" +
			"from the backup's start to its stop segment must be archived and sound.\n\n" +
			"--wal also checks the WAL archive: continuous from each backup's start segment to the last\n" +
			"segment of its timeline and of every timeline branched off it (named in .history files;\n" +
			"each gap is named by its first and last missing segment); every WAL object decodes and\n" +
			"passes its checksum; each segment's page header names the repository's system identifier,\n" +
			"the timeline and the address its name says. --concurrency objects are read at once.\n\n" +
			"--deep (implies --wal) also decodes every WAL record recovery from each backup reads, with\n" +
			"pgb's WAL reader: each record's CRC, and its xl_prev link to the record before it, across\n" +
			"segment boundaries. Each problem names the segment and the LSN (docs/verify.md).\n\n" +
			"Prints one line per problem (the object, and what is wrong) as it is found, then one summary\n" +
			"line. Exits 0 only when everything checked is sound; 1 when a problem was found or the\n" +
			"repository could not be read. --json prints one document instead (docs/verify.md).\n\n" +
			"The outcome is recorded in the repository (verifies/; the newest 30 and the newest that passed\n" +
			"are kept): pgb status shows the last verify, and the metrics pgb_last_verify_success and\n" +
			"pgb_last_successful_verify_timestamp_seconds. An interrupted verify is not recorded; one whose\n" +
			"record cannot be written warns.",
		Flags: append(flags(config.KeyConcurrency),
			&cli.StringFlag{Name: "backup", Usage: "verify only the backup `NAME` (and with --wal only the WAL it needs)"},
			&cli.BoolFlag{Name: "wal", Usage: "also verify the WAL archive: continuity and every WAL object"},
			&cli.BoolFlag{Name: "deep", Usage: "also decode every WAL record of the recoverable window (implies --wal)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document (docs/verify.md)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.each(c, func(e *env) error {
				return e.verify(c.Context, verify.Options{Backup: c.String("backup"), WAL: c.Bool("wal"),
					Deep: c.Bool("deep"), Concurrency: e.cfg.Concurrency}, c.Bool("json"), c.App.Version)
			})
		}),
	}
}

// verifyJSON is what verify --json prints; docs/verify.md documents it.
type verifyJSON struct {
	OK       bool             `json:"ok"`
	Checked  *verify.Report   `json:"checked"`
	Problems []verify.Problem `json:"problems"`
}

// verify runs the check and prints each problem as it is found, then one summary
// line. Writes to stdout are not checked: the exit status carries the verdict.
func (e *env) verify(ctx context.Context, opt verify.Options, asJSON bool, version string) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: the record is written and durable before
	var (
		mu       sync.Mutex
		problems = []verify.Problem{}
	)
	if isTTY(e.stderr) {
		bars := map[string]func(done, total int64){}
		opt.Progress = func(backup string, done, total int64) {
			bar, ok := bars[backup]
			if !ok {
				bar = progress(e.stderr, "verify "+backup)
				bars[backup] = bar
			}
			bar(done, total)
		}
	}
	var first []string // the record keeps the first few
	opt.OnProblem = func(p verify.Problem) {
		mu.Lock()
		if len(first) < repo.VerifyProblemsKept {
			first = append(first, oneLine(p.String()))
		}
		if asJSON {
			problems = append(problems, p)
		}
		mu.Unlock()
		if !asJSON {
			_, _ = fmt.Fprintln(e.stdout, "PROBLEM  "+oneLine(p.String()))
		}
	}
	started := time.Now()
	rep, err := verify.Run(ctx, rp, opt)
	e.recordVerify(ctx, rp, repo.VerifyRecord{Started: started, Finished: time.Now(), Scope: verifyScope(opt),
		FirstProblems: first, Version: version}, rep, err)
	if err != nil {
		return err
	}
	if asJSON {
		if err := e.printJSON(verifyJSON{OK: rep.OK(), Checked: rep, Problems: problems}); err != nil {
			return err
		}
	} else {
		_, _ = fmt.Fprintln(e.stdout, verifySummary(rep, opt.WAL || opt.Deep, opt.Deep))
	}
	if !rep.OK() {
		return withCode(exitError, errSilent)
	}
	return nil
}

// verifyScope says what verify checked, for its record.
func verifyScope(opt verify.Options) string {
	scope := "backups"
	switch {
	case opt.Deep:
		scope = "backups, WAL and every WAL record"
	case opt.WAL:
		scope = "backups and WAL"
	}
	if opt.Backup != "" {
		scope += " of backup " + opt.Backup
	}
	return scope
}

// recordVerify leaves the outcome of a verify that ran in the repository (pgb status
// and the metrics show it). A verify interrupted by a signal proved nothing and is not
// recorded. A record that cannot be written (a reader's credentials that cannot write)
// is a warning: the verify's own verdict stands.
func (e *env) recordVerify(ctx context.Context, rp *repo.Repo, v repo.VerifyRecord, rep *verify.Report, err error) {
	var in interrupted
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &in) {
		return
	}
	if errors.Is(err, verify.ErrNoBackup) {
		return // a mistyped --backup verified nothing: no outcome to record
	}
	switch {
	case err != nil:
		v.Error = oneLine(err.Error())
		v.FirstProblems = nil
	default:
		v.OK, v.Problems = rep.OK(), rep.Problems
		v.Backups, v.Bytes, v.WALObjects = rep.Backups, rep.Bytes, rep.WALObjects
	}
	if !v.OK && v.Problems == 0 && v.Error == "" {
		v.Error = "failed" // cannot happen: a report is OK exactly when it has no problem
	}
	if len(v.FirstProblems) > v.Problems {
		v.FirstProblems = v.FirstProblems[:v.Problems]
	}
	// Not into a repository that is none (no pgb.json): a mistyped --repo must not
	// become a directory of verify records.
	if _, ierr := rp.Identity(context.WithoutCancel(ctx)); errors.Is(ierr, repo.ErrNoIdentity) || errors.Is(ierr, storage.ErrNotExist) {
		return
	}
	v.Host, _ = os.Hostname()
	if _, werr := rp.PutVerify(context.WithoutCancel(ctx), v); werr != nil {
		e.log.Warn("the verify's outcome could not be recorded in the repository: pgb status and the metrics will not show it", "err", werr)
	}
}

func verifySummary(rep *verify.Report, withWAL, deep bool) string {
	what := fmt.Sprintf("%d backup(s): %d parts, %d files, %s of file data; %d WAL objects read, %d segments needed",
		rep.Backups, rep.Parts, rep.Files, human(rep.Bytes), rep.WALObjects, rep.WALSegments)
	if deep {
		what += fmt.Sprintf("; %d WAL records decoded (%s of WAL)", rep.WALRecords, human(rep.WALDecoded))
	}
	if !withWAL {
		what += " (the backups' own; --wal checks the archive)"
	}
	if rep.OK() {
		return "verify passed: " + what
	}
	return fmt.Sprintf("verify FAILED: %d problem(s) in %s", rep.Problems, what)
}
