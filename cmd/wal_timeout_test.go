package cmd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pgb-project/pgb/internal/waltest"
)

// blackHole is a TCP endpoint that accepts connections and never answers: an object
// store behind a network that drops everything after the handshake.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

func blackHoledRepo(t *testing.T) []string {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	return []string{"--repo", "s3://bucket/prefix", "--s3-endpoint", blackHole(t), "--s3-force-path-style", "--s3-region", "us-east-1",
		"--wal-timeout", "1s"}
}

// A wal-fetch against a black-holed object store ends at --wal-timeout with exit 255
// (recovery stops; it must not be taken for the end of the archive) and a message
// naming the setting, rather than after every attempt's own 60 s deadline.
func TestWALFetchFromABlackHoledStoreStopsAtTheWALTimeout(t *testing.T) {
	args := blackHoledRepo(t)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	r := pgb(t, append(append([]string{"wal-fetch"}, args...), "000000010000000000000001", dest)...)
	if r.code != exitRecoveryMustStop || !strings.Contains(r.stderr, "wal-timeout") {
		t.Fatalf("wal-fetch = exit %d, stderr %q; want 255 naming wal-timeout", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("DEST: %v, want it absent", err)
	}
}

// wal-push is bounded the same way; PostgreSQL retries a failed archive_command.
func TestWALPushToABlackHoledStoreStopsAtTheWALTimeout(t *testing.T) {
	args := blackHoledRepo(t)
	dir := waltest.DataDir(t, 42)
	seg := waltest.WriteWAL(t, dir, "000000010000000000000001", waltest.Segment(42, 1))
	r := pgb(t, append(append([]string{"wal-push", "--pgdata", dir}, args...), seg)...)
	if r.code == 0 || !strings.Contains(r.stderr, "wal-timeout") {
		t.Fatalf("wal-push = exit %d, stderr %q; want a failure naming wal-timeout", r.code, r.stderr)
	}
}
