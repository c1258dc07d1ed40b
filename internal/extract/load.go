package extract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgb-project/pgb/internal/drill"
)

// loadPrelude starts the load script: psql (--single-transaction) reports the
// transaction's id before anything is loaded, as a NOTICE (on stderr, unbuffered,
// with every psql version), so that pgb can ask the live server how the transaction
// ended when psql's own end says nothing.
const loadPrelude = "SET client_min_messages = notice;\n" +
	"DO $pgb$BEGIN RAISE NOTICE 'pgb-load-xid %', pg_catalog.txid_current(); END$pgb$;\n"

var loadXIDLine = regexp.MustCompile(`(?m)NOTICE:\s+pgb-load-xid ([0-9]+)\s*$`)

// statusWait bounds the question to the live server after an unclear end of the load.
const statusWait = 30 * time.Second

// load runs the dump into the live database with psql, in one transaction that stops
// at the first error. When psql's end does not tell (a signal, --load-timeout, a lost
// connection), the live server is asked how the load's transaction ended.
func (x *extractor) load(ctx context.Context, c *drill.Copy, file string) error {
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if x.opt.LoadTimeout > 0 {
		lctx, cancel = context.WithTimeout(ctx, x.opt.LoadTimeout)
	}
	defer cancel()
	// Not CommandContext: psql is stopped below, and its end then looked at.
	cmd := exec.Command(filepath.Join(c.Bin, "psql"), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", //nolint:gosec // next to the server
		"--single-transaction", "--dbname="+x.opt.Into, "-f", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: psql: %w (it comes with the PostgreSQL client package, in %s); nothing was loaded", ErrLoad, err, c.Bin)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	stopped := ""
	select {
	case err = <-done:
	case <-lctx.Done():
		_ = cmd.Process.Kill()
		err = <-done
		if ctx.Err() != nil {
			stopped = "pgb was interrupted during the load"
		} else {
			stopped = fmt.Sprintf("the load did not end within --load-timeout %s (a COMMIT waiting for a synchronous standby? a lock?)", x.opt.LoadTimeout)
		}
	}
	if err == nil {
		return x.loaded()
	}
	m := loadXIDLine.FindStringSubmatch(out.String())
	if m == nil {
		// psql stopped before its first statement returned: it sent nothing of the dump.
		if stopped != "" {
			return fmt.Errorf("%w: %s, before the load began: nothing was loaded", ErrLoad, stopped)
		}
		return fmt.Errorf("%w: %s; nothing was loaded", ErrLoad, firstError(out.String(), err))
	}
	xid, _ := strconv.ParseUint(m[1], 10, 64)
	var ee *exec.ExitError
	if stopped == "" && errors.As(err, &ee) && ee.ExitCode() == 3 {
		// ON_ERROR_STOP: a statement failed, the COMMIT was never sent.
		return fmt.Errorf("%w: %s; the load ran in one transaction and was rolled back: nothing was loaded (pgb extract --dump FILE writes the SQL to look at)",
			ErrLoad, firstError(out.String(), err))
	}
	if stopped == "" {
		stopped = "psql failed: " + firstError(out.String(), err)
	}
	return x.unclearEnd(ctx, xid, stopped, ctx.Err() == nil && lctx.Err() == nil)
}

// unclearEnd asks the live server how the load's transaction xid ended after the
// load stopped without saying (stopped: why). forced: pgb stopped it (a signal,
// --load-timeout); else a committed transaction is a load done.
func (x *extractor) unclearEnd(ctx context.Context, xid uint64, stopped string, lost bool) error {
	status, serr := x.xactStatus(context.WithoutCancel(ctx), xid)
	switch {
	case serr != nil:
		return fmt.Errorf("%w: %s, and whether the load's transaction %d committed is unknown (%w): check SELECT txid_status(%d) in the live database before retrying",
			ErrLoad, stopped, xid, serr, xid)
	case status == "committed" && lost:
		// The COMMIT went through; only its answer was lost.
		x.event("the load's end was unclear (%s), but its transaction %d committed", stopped, xid)
		return x.loaded()
	case status == "committed":
		return fmt.Errorf("%w: %s, but the load's transaction %d committed: the tables are in the live database; check them before retrying",
			ErrLoad, stopped, xid)
	case strings.HasPrefix(status, "committed"):
		return fmt.Errorf("%w: %s; the load's transaction %d is %s: the tables appear in the live database once it does; check before retrying",
			ErrLoad, stopped, xid, status)
	case status == "aborted":
		return fmt.Errorf("%w: %s; the load's transaction %d was rolled back: nothing was loaded", ErrLoad, stopped, xid)
	default:
		return fmt.Errorf("%w: %s, and the load's transaction %d is still %s in the live database (rolled back when the server notices the load's connection is gone, unless its COMMIT was sent): check SELECT txid_status(%d) before retrying",
			ErrLoad, stopped, xid, status, xid)
	}
}

func (x *extractor) loaded() error {
	x.res.Loaded = true
	x.event("loaded %s into the live database in one transaction", names(x.resultNames()))
	return nil
}

// xactStatus asks the live server, on a new connection, how transaction xid ended:
// committed, aborted or in progress.
func (x *extractor) xactStatus(ctx context.Context, xid uint64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, statusWait)
	defer cancel()
	conn, err := pgx.Connect(ctx, x.opt.Into)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var s, wait *string
	var pid *int32
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.txid_status($1),
		(SELECT pid FROM pg_stat_activity WHERE backend_xid::text = $2 LIMIT 1),
		(SELECT wait_event FROM pg_stat_activity WHERE backend_xid::text = $2 LIMIT 1)`,
		int64(xid), strconv.FormatUint(xid&0xffffffff, 10)).Scan(&s, &pid, &wait); err != nil { //nolint:gosec // an xid8 fits
		return "", err
	}
	switch {
	case s == nil:
		return "", fmt.Errorf("transaction %d is too old for the server to know", xid)
	case *s == "in progress" && pid != nil && wait != nil && *wait == "SyncRep":
		// Its commit record is written and flushed; the backend waits for a
		// synchronous standby before it makes the commit visible.
		return fmt.Sprintf("committed locally, its backend (pid %d) waiting for a synchronous standby to confirm", *pid), nil
	case *s == "in progress" && pid != nil:
		return fmt.Sprintf("in progress (backend pid %d)", *pid), nil
	}
	return *s, nil
}
