// Package gcstest runs GCS emulators for tests: the fake-gcs-server binary on a local
// port (StartFakeGCS), or its library in process (NewInProcess), and injects HTTP
// faults (Faults).
package gcstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/testenv"
)

// BinaryEnv names the variable that points at the fake-gcs-server binary.
const BinaryEnv = "PGB_FAKE_GCS_SERVER"

// shared is the binary server the tests of this process share: started by the first
// StartFakeGCS, stopped when the last test that asked for it ends.
var shared struct {
	mu   sync.Mutex
	srv  *server
	refs int
}

// StartFakeGCS returns the endpoint ("http://127.0.0.1:PORT") of a running
// fake-gcs-server and a fresh, empty bucket on it. The server is shared by the tests
// running at the same time and stopped when the last of them ends.
//
// The binary is $PGB_FAKE_GCS_SERVER, else <module root>/.build/bin/fake-gcs-server,
// else fake-gcs-server on $PATH. Without it the test is skipped, or fails when $CI is
// set: in CI a skipped backend test is a failure. The server keeps its objects in
// memory; a test binary killed before its cleanups run leaves the process behind.
// Under `go test -short` (make unit) the test is skipped.
func StartFakeGCS(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	testenv.SkipIfShort(t, "starts fake-gcs-server")
	bin := findBinary(t)
	shared.mu.Lock()
	if shared.srv != nil && shared.srv.exited() {
		shared.srv = nil // died under us; start another
	}
	if shared.srv == nil {
		s, err := startServer(bin)
		if err != nil {
			shared.mu.Unlock()
			t.Fatalf("gcstest: %v", err)
		}
		shared.srv = s
	}
	shared.refs++
	s := shared.srv
	shared.mu.Unlock()
	t.Cleanup(release)
	return s.endpoint, CreateBucket(t, s.endpoint)
}

// release drops a reference to the shared server, stopping it after the last.
func release() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.refs--
	if shared.refs == 0 && shared.srv != nil {
		shared.srv.stop()
		shared.srv = nil
	}
}

var bucketSeq atomic.Int64

// CreateBucket creates a bucket with a fresh name on the emulator at endpoint, through
// its JSON API, and returns its name.
func CreateBucket(t testing.TB, endpoint string) string {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("pgb-test-%d-%s", bucketSeq.Add(1), hex.EncodeToString(rnd[:]))
	body := strings.NewReader(fmt.Sprintf(`{"name":%q}`, name))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/storage/v1/b?project=pgb-test", body)
	if err != nil {
		t.Fatalf("gcstest: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("gcstest: create bucket %s: %v", name, err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("gcstest: create bucket %s: %s: %s", name, resp.Status, msg)
	}
	return name
}

// findBinary locates fake-gcs-server, or skips (fails in CI) the test.
func findBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("gcstest: %s=%s: %v", BinaryEnv, p, err)
		}
		return p
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".build", "bin", "fake-gcs-server")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("fake-gcs-server"); err == nil {
		return p
	}
	testenv.SkipOrFail(t, "gcstest: fake-gcs-server not found: set %s, put it in .build/bin or on PATH", BinaryEnv)
	return ""
}

// moduleRoot is the nearest directory above the working directory with a go.mod, else
// the one `go env GOMOD` names.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// server is a running fake-gcs-server process.
type server struct {
	endpoint string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	out      *syncBuffer
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// startServer starts the binary on a free port and waits until it answers, trying a
// few ports in case another process takes the one picked.
func startServer(bin string) (*server, error) {
	var err error
	for range 3 {
		var s *server
		if s, err = tryStart(bin); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func tryStart(bin string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	host := "127.0.0.1:" + p
	cmd := exec.Command(bin, "-scheme", "http", "-host", "127.0.0.1", "-port", p,
		"-backend", "memory", "-public-host", host, "-external-url", "http://"+host, "-log-level", "warn")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{endpoint: "http://" + host, cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(15 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w; its output:\n%s", bin, err, out.String())
	}
	return s, nil
}

// waitReady polls the bucket listing until the server answers.
func (s *server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.endpoint + "/storage/v1/b")
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if s.exited() {
			return errors.New("exited before answering")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %v: %w", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }() // only probing for a free port
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer collects a process's output, keeping the last 64 KiB.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Write(p)
	if over := b.b.Len() - 64<<10; over > 0 {
		b.b.Next(over)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
