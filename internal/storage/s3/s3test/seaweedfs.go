package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// SeaweedFS's S3 gateway signs with the same credentials and region as versitygw, so
// that AdminClient serves both.
const (
	SeaweedAccessKey = VersityAccessKey
	SeaweedSecretKey = VersitySecretKey
	SeaweedRegion    = VersityRegion
)

// seaweedStartTimeout bounds the wait for a started SeaweedFS to take its first
// object: its master, volume server, filer and S3 gateway start one after another.
const seaweedStartTimeout = 90 * time.Second

// seaweed is the one SeaweedFS of the test binary.
var seaweed struct {
	once sync.Once
	srv  *gateway
	err  error
}

// StartSeaweedFS returns the endpoint and credentials of SeaweedFS's S3 gateway
// ("weed server -s3": master, volume server, filer and S3 gateway in one process) and
// a fresh, empty bucket on it, which is removed at t's cleanup.
//
// One server serves the whole test binary, as with StartVersityGW: it starts on the
// first call, on free loopback ports with a temporary directory, and stops when the
// test process exits or when Shutdown is called.
//
// The binary is $PGB_WEED, else <module root>/.build/bin/weed, else weed on $PATH.
// If none exists the test is skipped, or fails when $CI is set.
func StartSeaweedFS(t testing.TB) (endpoint, accessKey, secretKey, bucket string) {
	t.Helper()
	bin, err := findServer("weed", "PGB_WEED")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SeaweedFS (weed) is required in CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	seaweed.once.Do(func() { seaweed.srv, seaweed.err = startSeaweed(bin) })
	if seaweed.err != nil {
		t.Fatalf("start SeaweedFS: %v", seaweed.err)
	}
	srv := seaweed.srv
	bucket = newBucketName()
	if err := createBucket(t.Context(), srv.endpoint, bucket); err != nil {
		t.Fatalf("SeaweedFS: create bucket %s: %v\nserver output:\n%s", bucket, err, srv.out)
	}
	t.Cleanup(func() { removeBucket(srv.endpoint, bucket) })
	return srv.endpoint, SeaweedAccessKey, SeaweedSecretKey, bucket
}

// s3ConfigJSON gives the one identity every right.
const s3ConfigJSON = `{"identities":[{"name":"pgb","credentials":[{"accessKey":%q,"secretKey":%q}],` +
	`"actions":["Admin","Read","List","Tagging","Write"]}]}`

// startSeaweed starts "weed server -s3" on free ports and waits until its S3 gateway
// stores an object, trying again with other ports if the first ones were taken.
func startSeaweed(bin string) (*gateway, error) {
	root, err := os.MkdirTemp("", "pgb-seaweedfs-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(root, "s3.json")
	if err := os.WriteFile(conf, fmt.Appendf(nil, s3ConfigJSON, SeaweedAccessKey, SeaweedSecretKey), 0o600); err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		ports, err := freePorts(8)
		if err != nil {
			return nil, err
		}
		data := filepath.Join(root, "data-"+strconv.Itoa(ports[0]))
		if err := os.Mkdir(data, 0o700); err != nil {
			return nil, err
		}
		p := func(i int) string { return strconv.Itoa(ports[i]) }
		g := &gateway{name: "SeaweedFS", endpoint: "http://127.0.0.1:" + p(6), root: root, out: &syncBuffer{}, exited: make(chan struct{})}
		g.health = g.endpoint + "/healthz"
		// The gRPC sockets' paths are fixed by weed; the HTTP ones can go in root.
		for i, name := range map[int]string{1: "master", 3: "volume", 5: "filer", 7: "s3"} {
			g.leftovers = append(g.leftovers, fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", name, ports[i]))
		}
		g.cmd = exec.Command(bin, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir="+data,
			"-master.port="+p(0), "-master.port.grpc="+p(1), "-master.volumeSizeLimitMB=64", "-master.telemetry=false",
			"-volume.port="+p(2), "-volume.port.grpc="+p(3), "-volume.max=0",
			"-filer", "-filer.port="+p(4), "-filer.port.grpc="+p(5),
			"-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7), "-s3.port.iceberg=0", "-s3.port.lance=0",
			"-s3.config="+conf, "-s3.allowDeleteBucketNotEmpty",
			"-filer.localSocket="+filepath.Join(data, "filer.sock"), "-s3.localSocket="+filepath.Join(data, "s3.sock"))
		if err := g.launch(); err != nil {
			_ = os.RemoveAll(root) // best-effort cleanup
			return nil, err
		}
		if lastErr = g.waitWritable(); lastErr == nil {
			return g, nil
		}
		g.stop()
	}
	_ = os.RemoveAll(root) // best-effort cleanup
	return nil, lastErr
}

// waitWritable waits for the health check and then until a bucket and an object can
// be created: the gateway answers before the volume server has registered.
func (g *gateway) waitWritable() error {
	deadline := time.Now().Add(seaweedStartTimeout)
	if err := g.waitHealthyFor(seaweedStartTimeout); err != nil {
		return err
	}
	client := AdminClient(g.endpoint)
	const warm = "pgb-warmup"
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-g.exited:
			if g.waitErr == nil {
				return fmt.Errorf("SeaweedFS exited (status 0):\n%s", g.out)
			}
			return fmt.Errorf("SeaweedFS exited (%w):\n%s", g.waitErr, g.out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(warm)})
		if err == nil || strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") || strings.Contains(err.Error(), "BucketAlreadyExists") {
			_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(warm), Key: aws.String("k"), Body: strings.NewReader("x")})
		}
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("SeaweedFS at %s takes no object after %v: %w\n%s", g.endpoint, seaweedStartTimeout, err, g.out)
}

// removeBucket deletes a bucket with everything in it (the server runs with
// -s3.allowDeleteBucketNotEmpty), best effort.
func removeBucket(endpoint, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = AdminClient(endpoint).DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}) // best-effort cleanup
}

// freePorts returns n loopback ports that were free a moment ago, all different.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close() // only probing for free ports
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
