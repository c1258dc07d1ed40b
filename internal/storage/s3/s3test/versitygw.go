package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgb-project/pgb/internal/testenv"
)

// Credentials of the versitygw root user that StartVersityGW runs.
const (
	VersityAccessKey = "pgbtestaccess"
	VersitySecretKey = "pgbtestsecret-8f3Kq2Zx"
	// VersityRegion is the region versitygw signs for by default.
	VersityRegion = "us-east-1"
)

// startTimeout bounds the wait for a started versitygw to answer its health check.
const startTimeout = 15 * time.Second

// versity is the one versitygw of the test binary.
var versity struct {
	once sync.Once
	srv  *gateway
	err  error
}

// gateway is a running S3 server process: versitygw or SeaweedFS.
type gateway struct {
	name     string // for messages
	health   string // the URL that answers 200 once the server is up
	endpoint string
	root     string // the posix backend's directory: one subdirectory per bucket
	cmd      *exec.Cmd
	out      *syncBuffer
	exited   chan struct{} // closed once cmd.Wait returned, with its error in waitErr
	waitErr  error
	// leftovers are files outside root that the server makes and a killed server
	// leaves behind (SeaweedFS's gRPC sockets in /tmp).
	leftovers []string
}

// stop kills the process, waits for it and removes its leftovers.
func (g *gateway) stop() {
	_ = g.cmd.Process.Kill() // fails only if it has exited already; wait either way
	<-g.exited
	for _, f := range g.leftovers {
		_ = os.Remove(f) // best-effort cleanup
	}
}

// StartVersityGW returns the endpoint and root credentials of a versitygw (posix
// backend) and a fresh, empty bucket on it, which is removed at t's cleanup.
//
// One server serves the whole test binary: it starts on the first call, on a free
// loopback port with a temporary directory, and stops when the test process exits
// (it is started with a parent-death signal) or when Shutdown is called, typically
// from TestMain.
//
// The binary is $PGB_VERSITYGW, else <module root>/.build/bin/versitygw, else
// versitygw on $PATH. If none exists the test is skipped, or fails when $CI is set:
// in CI a skipped backend test is a failure. Under `go test -short` (make unit) the
// test is skipped.
func StartVersityGW(t testing.TB) (endpoint, accessKey, secretKey, bucket string) {
	t.Helper()
	testenv.SkipIfShort(t, "starts versitygw")
	bin, err := findVersityGW()
	if err != nil {
		testenv.SkipOrFail(t, "s3test: %v", err)
	}
	versity.once.Do(func() { versity.srv, versity.err = startGateway(bin) })
	if versity.err != nil {
		t.Fatalf("start versitygw: %v", versity.err)
	}
	srv := versity.srv
	bucket = newBucketName()
	if err := createBucket(t.Context(), srv.endpoint, bucket); err != nil {
		t.Fatalf("versitygw: create bucket %s: %v\nserver output:\n%s", bucket, err, srv.out)
	}
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(srv.root, bucket)) }) // best-effort cleanup
	return srv.endpoint, VersityAccessKey, VersitySecretKey, bucket
}

// Shutdown stops the servers that StartVersityGW and StartSeaweedFS started, if any,
// and removes their directories. Call it after m.Run in TestMain; no Start… may
// follow.
func Shutdown() {
	for _, srv := range []*gateway{versity.srv, seaweed.srv} {
		if srv != nil {
			srv.stop()
			_ = os.RemoveAll(srv.root) // best-effort cleanup
		}
	}
}

// findVersityGW locates the binary; see StartVersityGW.
func findVersityGW() (string, error) { return findServer("versitygw", "PGB_VERSITYGW") }

// findServer locates a server binary: $env, else <module root>/.build/bin/name (where
// scripts/install-test-servers puts it), else name on $PATH.
func findServer(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", env, err)
		}
		return p, nil
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".build", "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: set %s, install it as .build/bin/%s (scripts/install-test-servers), or put it on PATH", name, env, name)
	}
	return p, nil
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
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
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// startGateway starts bin and waits for its health check, trying a few ports in case
// another process takes the free port first.
func startGateway(bin string) (*gateway, error) {
	root, err := os.MkdirTemp("", "pgb-versitygw-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		g := &gateway{name: "versitygw", endpoint: "http://" + port, root: root, out: &syncBuffer{}, exited: make(chan struct{})}
		g.health = g.endpoint + "/health"
		g.cmd = exec.Command(bin, "--port", port, "--access", VersityAccessKey, "--secret", VersitySecretKey,
			"--region", VersityRegion, "--health", "/health", "--quiet", "posix", root)
		if err := g.launch(); err != nil {
			_ = os.RemoveAll(root) // best-effort cleanup
			return nil, err
		}
		if lastErr = g.waitHealthy(); lastErr == nil {
			return g, nil
		}
		g.stop()
	}
	_ = os.RemoveAll(root) // best-effort cleanup
	return nil, lastErr
}

// launch starts g.cmd, its output into g.out, killed when the test process dies.
func (g *gateway) launch() error {
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		return err
	}
	go func() { g.waitErr = g.cmd.Wait(); close(g.exited) }()
	return nil
}

// waitHealthy polls the health endpoint until it answers 200, the process exits or
// startTimeout passes.
func (g *gateway) waitHealthy() error {
	return g.waitHealthyFor(startTimeout)
}

// waitHealthyFor is waitHealthy with a timeout of its own.
func (g *gateway) waitHealthyFor(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-g.exited:
			if g.waitErr == nil {
				return fmt.Errorf("%s exited (status 0):\n%s", g.name, g.out)
			}
			return fmt.Errorf("%s exited (%w):\n%s", g.name, g.waitErr, g.out)
		default:
		}
		resp, err := client.Get(g.health)
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s at %s not healthy after %v:\n%s", g.name, g.endpoint, timeout, g.out)
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }() // only probing for a free port
	return l.Addr().String(), nil
}

// newBucketName returns a unique valid bucket name.
func newBucketName() string {
	return "pgb-" + strings.ToLower(rand.Text()[:16])
}

// createBucket creates bucket through the S3 API, as a user would.
func createBucket(ctx context.Context, endpoint, bucket string) error {
	_, err := AdminClient(endpoint).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	return err
}

// AdminClient returns a plain SDK client with the versitygw root credentials, for
// tests that look behind the store (for example at unfinished multipart uploads).
func AdminClient(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       VersityRegion,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(VersityAccessKey, VersitySecretKey, ""),
	})
}

// syncBuffer collects the server's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
