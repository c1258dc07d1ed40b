package integration

import (
	"io"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// configFile writes a pgb config file the postgres user can read and returns the flags
// that select it.
func configFile(t *testing.T, body string) []string {
	t.Helper()
	p := filepath.Join(pgtest.TempDir(t), "pgb.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.ChownToPG(t, p)
	return []string{"--config", p}
}

// s3Repo starts versitygw (behind a fault proxy when failRate > 0) and returns the
// flags that select a fresh bucket on it, and the secret key (for leak checks).
func s3Repo(t *testing.T, failRate float64, secretOverride string) ([]string, string) {
	sel, secret, _ := s3RepoBehind(t, failRate, secretOverride)
	return sel, secret
}

// s3RepoBehind is s3Repo that also returns the fault proxy (nil without faults).
func s3RepoBehind(t *testing.T, failRate float64, secretOverride string) ([]string, string, *faultProxy) {
	t.Helper()
	return s3RepoVia(t, s3test.StartVersityGW, failRate > 0, failRate, secretOverride)
}

// s3RepoCounted is s3Repo behind a proxy that only counts the requests.
func s3RepoCounted(t *testing.T, secretOverride string) ([]string, string, *faultProxy) {
	t.Helper()
	return s3RepoVia(t, s3test.StartVersityGW, true, 0, secretOverride)
}

// s3RepoOn is s3Repo on the S3 server that start starts.
func s3RepoOn(t *testing.T, start func(testing.TB) (endpoint, access, secret, bucket string), failRate float64, secretOverride string) ([]string, string, *faultProxy) {
	t.Helper()
	return s3RepoVia(t, start, failRate > 0, failRate, secretOverride)
}

// s3RepoVia is s3Repo on the server start starts, behind a fault proxy if proxied.
func s3RepoVia(t *testing.T, start func(testing.TB) (endpoint, access, secret, bucket string), proxied bool, failRate float64, secretOverride string) ([]string, string, *faultProxy) {
	t.Helper()
	endpoint, access, secret, bucket := start(t)
	var proxy *faultProxy
	if proxied {
		proxy = startFaultProxy(t, endpoint, failRate, 7)
		endpoint = proxy.URL
	}
	if secretOverride != "" {
		secret = secretOverride
	}
	return configFile(t, "repo: s3://"+bucket+"/cluster1\n"+
		"s3-endpoint: "+endpoint+"\n"+
		"s3-region: us-east-1\n"+
		"s3-force-path-style: true\n"+
		"s3-access-key-id: "+access+"\n"+
		"s3-secret-access-key: "+secret+"\n"+
		"s3-part-size: 5MiB\n"+
		"storage-retries: 8\n"), secret, proxy
}

// assertFaulted checks that the proxy really broke requests during a test.
func assertFaulted(t *testing.T, p *faultProxy) {
	t.Helper()
	if p.faults.Load() < 5 {
		t.Fatalf("only %d of %d requests were faulted: the test did not test faults", p.faults.Load(), p.requests.Load())
	}
	t.Logf("%d of %d requests faulted", p.faults.Load(), p.requests.Load())
}

// pitrOn plays the drop-table scenario on a repository and recovers to the named
// point and to a time just before the drop.
func pitrOn(t *testing.T, sel []string) {
	s := newScenarioOn(t, "", sel)
	c := s.restore(t, "--target-name", "before_release")
	c.WaitRecoveryPaused(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.atPoint {
		t.Fatalf("rows at restore point = %d, want %d", got, s.atPoint)
	}
	c = s.restore(t, "--target-time", s.dropTime, "--target-action", "promote")
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.beforeDrop {
		t.Fatalf("rows = %d, want every committed row: %d", got, s.beforeDrop)
	}
	if got := c.QueryString(t, "SELECT max(ts) FROM ticks"); got != s.lastTS {
		t.Fatalf("last row at %s, want %s", got, s.lastTS)
	}
}

func TestPITROnS3(t *testing.T) {
	sel, _ := s3Repo(t, 0, "")
	pitrOn(t, sel)
}

// The same scenario on SeaweedFS's S3 gateway, a second real S3 implementation.
func TestPITROnSeaweedFS(t *testing.T) {
	sel, _, _ := s3RepoOn(t, s3test.StartSeaweedFS, 0, "")
	pitrOn(t, sel)
}

// Under transient faults (503 SlowDown, reset connections, cut-off bodies) every step
// still succeeds, and the restored data is verified.
func TestPITROnS3UnderTransientFaults(t *testing.T) {
	sel, _, proxy := s3RepoBehind(t, 0.15, "")
	pitrOn(t, sel)
	assertFaulted(t, proxy)
}

func TestS3PermanentFaultsFailFastWithOneLine(t *testing.T) {
	pgtest.Require(t)
	dir := pgtest.TempDir(t)
	c := pgtest.NewCluster(t, pgtest.Options{ArchiveCommand: "/bin/true"})
	c.Start(t)
	seg := c.SwitchWAL(t)
	// Archived (by /bin/true) first: a segment still marked ready would have wal-push
	// start its look-ahead archiver, whose own requests the proxies would count.
	c.WaitArchived(t, seg, 60*time.Second)

	good, _ := s3Repo(t, 0, "")
	bad, wrongSecret, badProxy := s3RepoCounted(t, "wrong-secret-s3cr3t")
	endpoint, access, secret, bucket := s3test.StartVersityGW(t)
	noBucketProxy := startFaultProxy(t, endpoint, 0, 7) // counts the requests
	noBucket := configFile(t, "repo: s3://no-such-bucket-"+strings.ToLower(filepath.Base(dir))+"/x\ns3-endpoint: "+noBucketProxy.URL+
		"\ns3-region: us-east-1\ns3-force-path-style: true\ns3-access-key-id: "+access+"\ns3-secret-access-key: "+secret+"\n")
	_ = bucket
	closed := configFile(t, "repo: s3://b/x\ns3-endpoint: http://127.0.0.1:1\ns3-region: us-east-1\ns3-force-path-style: true\n"+
		"s3-access-key-id: a\ns3-secret-access-key: b\nstorage-retries: 2\n")

	push := func(sel []string) result {
		return pgb(t, c.DataDir(), nil, append(append([]string{"wal-push"}, sel...), filepath.Join("pg_wal", seg))...)
	}
	// A permanent fault fails at its first request, never retried; an unreachable
	// endpoint is tried storage-retries times (2 here) and then fails.
	for name, tc := range map[string]struct {
		sel   []string
		want  string
		proxy *faultProxy // counts the requests; nil: none can be counted
	}{
		"wrong credentials":    {bad, "credentials", badProxy},
		"missing bucket":       {noBucket, "no-such-bucket", noBucketProxy},
		"unreachable endpoint": {closed, "127.0.0.1:1", nil},
	} {
		before := int64(0)
		if tc.proxy != nil {
			before = tc.proxy.requests.Load()
		}
		r := push(tc.sel)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: want a one-line error mentioning %q, got %s", name, tc.want, r)
		}
		if tc.proxy != nil {
			if n := tc.proxy.requests.Load() - before; n != 1 {
				t.Errorf("%s: %d requests; a permanent fault must fail at the first, without retries", name, n)
			}
		}
		if strings.Contains(r.stderr, wrongSecret) {
			t.Errorf("%s: the secret key appears in the error", name)
		}
	}

	// backup-push and restore fail the same way.
	for name, args := range map[string][]string{
		"backup-push": append(append([]string{"backup-push"}, bad...), "--fast"),
		"restore":     append(append([]string{"restore"}, bad...), "--pgdata", filepath.Join(dir, "restored")),
	} {
		before := badProxy.requests.Load()
		r := pgb(t, "", c.Env(), args...)
		if r.code == 0 || !strings.Contains(r.stderr, "credentials") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 ||
			strings.Contains(r.stderr, wrongSecret) {
			t.Errorf("%s with wrong credentials: want one line about credentials, got %s", name, r)
		}
		if n := badProxy.requests.Load() - before; n != 1 {
			t.Errorf("%s with wrong credentials: %d requests; a permanent fault must fail at the first, without retries", name, n)
		}
	}

	// wal-fetch keeps PostgreSQL's exit-code rules on S3.
	if r := push(good); r.code != 0 {
		t.Fatalf("push to a good repository: %s", r)
	}
	work := pgtest.TempDir(t)
	if r := pgb(t, work, nil, append(append([]string{"wal-fetch"}, good...), seg, "x")...); r.code != 0 {
		t.Fatalf("fetch: %s", r)
	}
	if r := pgb(t, work, nil, append(append([]string{"wal-fetch"}, good...), "0000000100000000000000FE", "y")...); r.code != 1 {
		t.Fatalf("fetch of a missing segment: want exit 1, got %s", r)
	}
	if r := pgb(t, work, nil, append(append([]string{"wal-fetch"}, closed...), seg, "z")...); r.code <= 125 {
		t.Fatalf("fetch from an unreachable store: want exit > 125, got %s", r)
	}
	if r := pgb(t, work, nil, append(append([]string{"wal-fetch"}, bad...), seg, "z")...); r.code <= 125 || strings.Contains(r.stderr, wrongSecret) {
		t.Fatalf("fetch with wrong credentials: want exit > 125 and no secret, got %s", r)
	}
}

func TestCheckReportsConditionalWritesOnS3(t *testing.T) {
	pgtest.Require(t)
	sel, _ := s3Repo(t, 0, "")
	c := archivingClusterWith(t, sel)
	r := mustPGB(t, "", c.Env(), append([]string{"check"}, sel...)...)
	if !strings.Contains(r.stdout, "conditional writes") || !strings.Contains(r.stdout, "check passed") {
		t.Fatalf("check on S3:\n%s", r)
	}
}

// A store that rejects the SDK's default checksum headers: pgb check says, in one
// line, which setting it needs, and with that setting the check passes.
func TestCheckSaysWhichChecksumSettingAStoreNeeds(t *testing.T) {
	pgtest.Require(t)
	endpoint, access, secret, bucket := s3test.StartVersityGW(t)
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &s3test.ChecksumRejecting{}
	rp.ErrorLog = log.New(io.Discard, "", 0)
	proxy := httptest.NewServer(rp)
	t.Cleanup(proxy.Close)
	repo := "repo: s3://" + bucket + "/cluster1\ns3-endpoint: " + proxy.URL + "\ns3-region: us-east-1\ns3-force-path-style: true\n" +
		"s3-access-key-id: " + access + "\ns3-secret-access-key: " + secret + "\n"
	sel := configFile(t, repo)
	c := archivingClusterWith(t, configFile(t, repo+"s3-checksum: when-required\n"))

	r := pgb(t, "", c.Env(), append([]string{"check"}, sel...)...)
	if r.code == 0 || !strings.Contains(r.stdout, "set s3-checksum: when-required") {
		t.Fatalf("check against a store that rejects checksum headers, default setting: want a failure naming s3-checksum: when-required, got %s", r)
	}
	r = mustPGB(t, "", c.Env(), append([]string{"check"}, configFile(t, repo+"s3-checksum: when-required\n")...)...)
	if !strings.Contains(r.stdout, "when-required, as set, works") || !strings.Contains(r.stdout, "check passed") {
		t.Fatalf("check with s3-checksum: when-required:\n%s", r)
	}
}
