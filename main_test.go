package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/testenv"
)

// buildTags are the tags every build of pgb uses (the Makefile's TAGS). They leave out
// code pgb never runs and which costs start-up time in every wal-push and wal-fetch
// call: urfave/cli's documentation generators, cloud.google.com/go/storage's gRPC
// direct-path/xDS modules (pgb's GCS backend uses the JSON API over HTTP) and gRPC's
// request tracing (golang.org/x/net/trace, whose init registers /debug/requests and
// /debug/events on http.DefaultServeMux).
var buildTags = []string{"urfave_cli_no_docs", "disable_grpc_modules", "grpcnotrace"}

// TestBuildTags fails when a place that builds, tests, vets or lints pgb loses a tag:
// the Makefile (exported through GOFLAGS, and the pgbtest vet), the release build, the
// linter and the integration tests' build.
func TestBuildTags(t *testing.T) {
	joined := strings.Join(buildTags, ",")

	makefile := readFile(t, "Makefile")
	if !regexp.MustCompile(`(?m)^TAGS\s*:?=\s*` + regexp.QuoteMeta(joined) + `\s*$`).MatchString(makefile) {
		t.Errorf("Makefile: no line TAGS := %s", joined)
	}
	if !regexp.MustCompile(`(?m)^export GOFLAGS \+?= -tags=\$\(TAGS\)\s*$`).MatchString(makefile) {
		t.Error("Makefile: GOFLAGS does not carry -tags=$(TAGS) to every go command")
	}
	// A -tags on the command line replaces GOFLAGS's: each must name $(TAGS) too.
	for _, m := range regexp.MustCompile(`(?:^|\s)-tags[ =](\S+)`).FindAllStringSubmatch(makefile, -1) {
		if !strings.Contains(m[1], "$(TAGS)") {
			t.Errorf("Makefile: %q overrides GOFLAGS's tags without $(TAGS)", m[0])
		}
	}

	var release struct {
		Before struct {
			Hooks []string `yaml:"hooks"`
		} `yaml:"before"`
		Builds []struct {
			ID   string   `yaml:"id"`
			Tags []string `yaml:"tags"`
		} `yaml:"builds"`
	}
	unmarshal(t, ".goreleaser.yaml", &release)
	if len(release.Builds) == 0 {
		t.Error(".goreleaser.yaml: no builds")
	}
	for _, b := range release.Builds {
		if !containsAll(b.Tags, buildTags) {
			t.Errorf(".goreleaser.yaml: build %q has tags %v, want %v", b.ID, b.Tags, buildTags)
		}
	}
	for _, h := range release.Before.Hooks {
		if strings.HasPrefix(h, "go vet") && !strings.Contains(h, "-tags "+joined) {
			t.Errorf(".goreleaser.yaml: hook %q does not use -tags %s", h, joined)
		}
	}

	var lint struct {
		Run struct {
			BuildTags []string `yaml:"build-tags"`
		} `yaml:"run"`
	}
	unmarshal(t, ".golangci.yml", &lint)
	if !containsAll(lint.Run.BuildTags, buildTags) {
		t.Errorf(".golangci.yml: run.build-tags %v, want %v among them", lint.Run.BuildTags, buildTags)
	}

	if pgtest.BuildTags != joined {
		t.Errorf("integration/pgtest.BuildTags = %q, want %q", pgtest.BuildTags, joined)
	}
}

// TestStartupDependencies fails when the pgb binary links a package left out on
// purpose because its initialisation costs every wal-push and wal-fetch call time and
// pgb never uses it.
func TestStartupDependencies(t *testing.T) {
	testenv.SkipIfShort(t, "runs go list over the whole dependency graph")
	out, err := exec.Command("go", "list", "-deps", "-tags", strings.Join(buildTags, ","), ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	unwanted := map[string]string{
		"google.golang.org/grpc/xds":                   "cloud.google.com/go/storage's gRPC direct path (tag disable_grpc_modules)",
		"google.golang.org/grpc/balancer/rls":          "cloud.google.com/go/storage's gRPC direct path (tag disable_grpc_modules)",
		"github.com/cpuguy83/go-md2man":                "urfave/cli's man page generator (tag urfave_cli_no_docs)",
		"github.com/aws/aws-sdk-go-v2/config":          "the AWS SDK's default configuration loader: pgb builds its own credential chain",
		"github.com/aws/aws-sdk-go-v2/service/sso":     "AWS SSO login profiles are not supported (internal/storage/s3/credentials.go)",
		"github.com/aws/aws-sdk-go-v2/service/ssooidc": "AWS SSO login profiles are not supported (internal/storage/s3/credentials.go)",
		"github.com/aws/aws-sdk-go-v2/service/signin":  "AWS console login sessions are not supported (internal/storage/s3/credentials.go)",
		"github.com/russross/blackfriday":              "urfave/cli's markdown generator (tag urfave_cli_no_docs)",
		"golang.org/x/net/trace":                       "gRPC's request tracing, with debug pages on http.DefaultServeMux (tag grpcnotrace)",
		"github.com/prometheus/client_golang":          "its init registers Go and process collectors globally, +9% instructions per call: internal/metrics encodes with prometheus/common/expfmt",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for prefix, why := range unwanted {
			if pkg == prefix || strings.HasPrefix(pkg, prefix+"/") {
				t.Errorf("pgb links %s: left out on purpose, %s", pkg, why)
			}
		}
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func unmarshal(t *testing.T, name string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(readFile(t, name)), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
