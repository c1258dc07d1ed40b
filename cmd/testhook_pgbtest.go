//go:build pgbtest

package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/faulty"
)

// testHangEnv names a test hook, not for users: set to N, it makes pgb delete let N
// object deletions through (a batch counts each key), print a line naming the next
// one to stderr and hang there, so that an integration test can SIGKILL it in the
// middle of its work, deterministically. testHangPrefixEnv, if set, counts only the
// deletions of keys that begin with it.
const (
	testHangEnv       = "PGB_TEST_DELETE_HANG_AFTER"
	testHangPrefixEnv = "PGB_TEST_DELETE_HANG_PREFIX"
)

// hangDeletes lets n deletions of keys under prefix through (a batch counts each
// key), then prints a line naming the next such key to w and blocks that deletion
// until the process ends.
func hangDeletes(st storage.Store, n int, prefix string, w io.Writer) storage.Store {
	return faulty.New(st, faulty.Rule{Op: faulty.Delete, Key: prefix, Skip: n, Count: 1, Fault: faulty.Hang,
		OnFire: func(_ faulty.Op, key string) {
			_, _ = fmt.Fprintf(w, "pgb: %s: hanging before deleting %s\n", testHangEnv, key)
		}})
}

// deleteTestHook arms hangDeletes when testHangEnv is set. It exists only in a pgb
// built with -tags pgbtest (the integration tests' build): a released pgb has no hook
// an environment variable could arm.
func (e *env) deleteTestHook() error {
	v := os.Getenv(testHangEnv)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return usagef("%s=%q: want a number of deletions", testHangEnv, v)
	}
	prefix := os.Getenv(testHangPrefixEnv)
	e.wrapStore = func(st storage.Store) storage.Store { return hangDeletes(st, n, prefix, e.stderr) }
	return nil
}

// testDrillHangEnv names a test hook, not for users: set (to anything), pgb drill
// holds once its server has started until its context is cancelled (a signal), so that
// a test can interrupt a drill mid-way, deterministically.
const testDrillHangEnv = "PGB_TEST_DRILL_HANG_AFTER_START"

func drillTestHook() func(ctx context.Context) error {
	if os.Getenv(testDrillHangEnv) == "" {
		return nil
	}
	return func(ctx context.Context) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}
}

// testDrillWaitEnv names a test hook, not for users: set to the path of a FIFO, pgb
// drill, once restored and before it starts its server, says so on stderr and waits
// until a line can be read from the FIFO (or its context ends), so that a test can act
// on the source in between, deterministically.
const testDrillWaitEnv = "PGB_TEST_DRILL_WAIT_BEFORE_START"

func drillBeforeStartHook(w io.Writer) func(ctx context.Context) error {
	fifo := os.Getenv(testDrillWaitEnv)
	if fifo == "" {
		return nil
	}
	return func(ctx context.Context) error {
		_, _ = fmt.Fprintf(w, "pgb: %s: waiting on %s\n", testDrillWaitEnv, fifo)
		read := make(chan error, 1)
		go func() {
			f, err := os.Open(fifo) // blocks until the test opens it to write
			if err == nil {
				_, err = f.Read(make([]byte, 1))
				_ = f.Close()
			}
			read <- err
		}()
		select {
		case err := <-read:
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// testArchiverHangEnv names a test hook, not for users: set to a path P, the
// background archiver's first upload of a WAL file while P.fired does not exist (the
// hook creates it when it fires, so it fires once; not while P's directory is missing) passes half of the object to the
// store, writes "KEY PID" to P and blocks until its context ends: an integration test
// can SIGKILL the archiver mid-upload, deterministically.
const testArchiverHangEnv = "PGB_TEST_ARCHIVER_HANG"

func (e *env) archiverTestHook() error {
	marker := os.Getenv(testArchiverHangEnv)
	if marker == "" {
		return nil
	}
	e.wrapStore = func(st storage.Store) storage.Store { return hangPut{Store: st, marker: marker} }
	return nil
}

type hangPut struct {
	storage.Store
	marker string
}

func (h hangPut) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if !strings.HasPrefix(key, "wal/") {
		return h.Store.Put(ctx, key, r, opts)
	}
	f, err := os.OpenFile(h.marker+".fired", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return h.Store.Put(ctx, key, r, opts) // fired already
	}
	_ = f.Close()
	return h.Store.Put(ctx, key, &hangReader{ctx: ctx, r: r, left: opts.Size / 2, fire: func() {
		tmp := h.marker + ".tmp"
		if os.WriteFile(tmp, []byte(fmt.Sprintf("%s %d\n", key, os.Getpid())), 0o644) == nil {
			_ = os.Rename(tmp, h.marker)
		}
	}}, opts)
}

// hangReader yields left bytes of r, then calls fire and blocks until ctx ends.
type hangReader struct {
	ctx  context.Context
	r    io.Reader
	left int64
	fire func()
}

func (h *hangReader) Read(p []byte) (int, error) {
	if h.left <= 0 {
		h.fire()
		<-h.ctx.Done()
		return 0, context.Cause(h.ctx)
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}
