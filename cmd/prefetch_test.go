package cmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/waltest"
)

type spawned struct {
	args, environ []string
	dir           string
}

// fetchWithSpawn runs pgb wal-fetch in this process with a spawn that records what it
// would have started.
func fetchWithSpawn(t *testing.T, calls *[]spawned, args ...string) outcome {
	t.Helper()
	spawn := func(args, environ []string, dir string) error {
		*calls = append(*calls, spawned{args, environ, dir})
		return nil
	}
	var out, errb bytes.Buffer
	code := runWith(context.Background(), append([]string{"pgb"}, args...), Build{Version: "test"}, &out, &errb, spawn)
	return outcome{code, out.String(), errb.String()}
}

func TestWALFetchStartsThePrefetcherWithItsSettingsAndNoSecretOnItsCommandLine(t *testing.T) {
	isolate(t)
	repo, pgdata := pushedRepo(t)
	t.Chdir(t.TempDir()) // not the data directory: --pgdata says where the spool is
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	var calls []spawned
	r := fetchWithSpawn(t, &calls, "wal-fetch", "--repo", repo, "--pgdata", pgdata, "--s3-secret-access-key", "s3cr3t", seg1, dest)
	if r.code != 0 {
		t.Fatalf("wal-fetch: %+v", r)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, waltest.Stamped(seg1, waltest.Segment(42, 1))) {
		t.Fatal("DEST does not hold the segment")
	}
	if len(calls) != 1 {
		t.Fatalf("%d prefetchers started, want 1", len(calls))
	}
	c := calls[0]
	if c.args[0] != "_prefetch" || c.args[len(c.args)-1] != pgdata || !slices.Contains(c.args, "--repo="+repo) {
		t.Errorf("prefetcher args %q", c.args)
	}
	if strings.Contains(strings.Join(c.args, " "), "s3cr3t") {
		t.Errorf("a secret on the prefetcher's command line: %q", c.args)
	}
	if !slices.Contains(c.environ, "AWS_SECRET_ACCESS_KEY=s3cr3t") {
		t.Error("the secret given by flag does not reach the prefetcher's environment")
	}
	want, err := os.ReadFile(filepath.Join(pgdata, "pg_wal", "pgb", "fetch", "want"))
	if err != nil || !strings.Contains(string(want), seg1) {
		t.Errorf("request file: %q, %v", want, err)
	}

	// Off: no prefetcher, and a .history file or a call without a data directory never starts one.
	calls = nil
	for _, args := range [][]string{
		{"wal-fetch", "--repo", repo, "--pgdata", pgdata, "--wal-fetch-prefetch", "0", seg1, dest},
		{"wal-fetch", "--repo", repo, seg1, dest},
	} {
		if r := fetchWithSpawn(t, &calls, args...); r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	if len(calls) != 0 {
		t.Errorf("prefetchers started: %+v", calls)
	}
	if r := fetchWithSpawn(t, &calls, "wal-fetch", "--repo", repo, "--wal-fetch-prefetch", "-1", seg1, dest); r.code != exitRecoveryMustStop || !strings.Contains(r.stderr, "wal-fetch-prefetch") {
		t.Errorf("a bad wal-fetch-prefetch: %+v", r)
	}
}
