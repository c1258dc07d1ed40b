# pgb: the two quick-start commands are `make demo` and `make test`.
GO      ?= go
BIN     ?= bin/pgb
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# TAGS: every build, test and vet of pgb uses them (exported through GOFLAGS). They leave
# out code pgb never runs and that costs start-up time in every wal-push/wal-fetch call:
# urfave/cli's man-page/markdown generators, and cloud.google.com/go/storage's gRPC
# direct-path/xDS modules (pgb's GCS backend uses the JSON API over HTTP). Keep the list
# in step with .goreleaser.yaml, .golangci.yml and integration/pgtest (TestBuildTags).
TAGS    := urfave_cli_no_docs,disable_grpc_modules,grpcnotrace
export GOFLAGS += -tags=$(TAGS)
# GOTOOLCHAIN: every target builds and tests with this Go, taken from the Go module proxy
# on first use (about 76 MB, 10 s) when the machine's own Go is older. The go.mod line
# stays at the oldest Go pgb builds with; this one is the newest patch release, so that
# the standard library pgb ships holds the security fixes govulncheck (make vuln) knows
# of: go1.26.8 lacks the fixes of 14 (10 in code pgb calls: net/http, crypto/tls,
# crypto/x509, ...), which go1.26.10 and go1.27.3 have. `make test GOTOOLCHAIN=local` uses the machine's Go instead.
GOTOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN

.PHONY: build test test-servers unit race fuzz killtest demo bench vet lint vuln fmt clean package package-check release-check

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

## test: vet plus every test, the integration tests against a real PostgreSQL 15 and the
## S3 (versitygw, SeaweedFS) and GCS (fake-gcs-server) backend tests included, then
## every benchmark run once.
test: test-servers
	scripts/ensure-postgres
	scripts/ensure-test-tools
	$(GO) vet ./...
	$(GO) vet -tags pgbtest,$(TAGS) ./cmd/
	AWS_EC2_METADATA_DISABLED=true GCE_METADATA_HOST=127.0.0.1:1 $(GO) test -count=1 -timeout 25m ./...
	# Every benchmark once: a change that breaks one fails here, not only in make bench.
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./cmd/ ./internal/...

## race: the unit tests (short mode: no PostgreSQL) under the race detector; CI runs it.
race:
	$(GO) test -count=1 -short -race -timeout 20m ./cmd/ ./internal/...

## unit: the fast tests only (no PostgreSQL needed).
unit:
	$(GO) test -count=1 -short ./...

## fuzz: each fuzz target for FUZZTIME inputs (CI runs it); a count, not a duration: a time
## limit can end a run with a spurious "context deadline exceeded".
## Minimising new inputs is skipped: the inputs are whole 8 kB WAL pages. A target written
## pkg:Name:N runs N inputs instead (FuzzRestorePart restores a whole backup per input).
FUZZTIME ?= 20000x
fuzz:
	for t in internal/wal:FuzzReader internal/wal:FuzzDecodeCommit internal/wal:FuzzDecodeChange internal/wal:FuzzParseHistory internal/repo:FuzzDocuments internal/repo:FuzzStreamedManifest internal/repo:FuzzDrillRecord internal/repo:FuzzGapRecord internal/repo:FuzzStreamedChunks internal/repo:FuzzVerifyRecord internal/walsum:FuzzDecode internal/envelope:FuzzReader internal/envelope:FuzzEncryptedReader internal/envelope:FuzzParseTrailer internal/wal:FuzzParse internal/config:FuzzReadFile internal/pagemap:FuzzDecode internal/restore:FuzzRestorePart:300x internal/restore:FuzzPatchFile:5000x internal/restore:FuzzDecodeRecord; do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; [ "$$n" = "$$rest" ] && n=$(FUZZTIME); \
		$(GO) test -run XXX -fuzz "^$$name$$" -fuzztime $$n -fuzzminimizetime 0 -parallel 1 ./$$pkg || exit 1; \
	done

## killtest: the random-kill test at KILLSCALE times the kills make test runs (200 there);
## PGB_KILLTEST_SEED=N replays the kill instants of a run (the test logs its seed).
KILLSCALE ?= 2
killtest:
	scripts/ensure-postgres
	PGB_KILLTEST_SCALE=$(KILLSCALE) $(GO) test -count=1 -v -run '^TestKillingPgbAtRandomInstantsLosesNothing$$' -timeout 120m ./integration/

## demo: a throwaway cluster archiving through pgb, end to end.
demo: build
	scripts/ensure-postgres
	scripts/demo.sh $(abspath $(BIN))

## package: static linux/amd64 and linux/arm64 binaries and their .deb and .rpm packages
## in dist/ (scripts/package; nfpm pinned there, built from the Go module proxy).
package:
	VERSION=$(VERSION) COMMIT=$(COMMIT) TAGS=$(TAGS) scripts/package

## release-check: goreleaser check on .goreleaser.yaml, with a goreleaser you provide
## (GORELEASER=/path/to/goreleaser). The Go module proxy here serves no approved release of
## goreleaser, so the project pins none and CI does not run it; TestPackageContentsAgree
## keeps .goreleaser.yaml in step with make package, which CI builds and installs.
GORELEASER ?= goreleaser
release-check:
	$(GORELEASER) check

## package-check: installs the .deb of make package (dpkg -i, as root) and checks what it
## installed (scripts/package-check); CI runs it. It removes the package again.
package-check: package
	scripts/package-check

## bench: the project's own benchmarks (see scripts/bench).
bench:
	scripts/bench

## test-servers: the pinned object-store servers the backend tests run against.
test-servers:
	scripts/install-test-servers

vet:
	$(GO) vet ./...
	$(GO) vet -tags pgbtest,$(TAGS) ./cmd/

## lint: golangci-lint (pinned, installed into .build/bin on first use) with .golangci.yml.
GOLANGCI_LINT_VERSION ?= v2.15.0
# Built with the toolchain that builds pgb (one built with an older Go panics on newer
# standard-library source), so kept per version and toolchain.
LINTBIN := .build/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)-$(GOTOOLCHAIN)
lint:
	@test -x $(LINTBIN)/golangci-lint || GOBIN=$(abspath $(LINTBIN)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(LINTBIN)/golangci-lint run ./...

## vuln: govulncheck (pinned) over every package, with the build tags: a known
## vulnerability in code pgb calls (its own, a dependency's or the standard library's)
## fails it; those only in packages or modules pgb imports without calling are listed.
## The database is the golang.org/x/vulndb module from the Go module proxy, pinned at
## VULNDB_VERSION (its data/osv holds every report as OSV JSON, which govulncheck reads
## from a directory): vuln.go.dev itself cannot be reached from every machine (not from
## this project's CI). `make vuln VULNDB=https://vuln.go.dev` asks the live database.
## Bump VULNDB_VERSION to the proxy's newest pseudo-version of golang.org/x/vulndb.
GOVULNCHECK_VERSION ?= v1.9.0
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB ?=
VULNBIN := .build/tools/govulncheck-$(GOVULNCHECK_VERSION)-$(GOTOOLCHAIN)
vuln:
	@test -x $(VULNBIN)/govulncheck || GOBIN=$(abspath $(VULNBIN)) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	@db='$(VULNDB)'; if [ -z "$$db" ]; then \
		dir=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
		[ -d "$$dir/data/osv" ] || { echo "vuln: golang.org/x/vulndb@$(VULNDB_VERSION) could not be downloaded from the Go module proxy"; exit 1; }; \
		db=file://$$dir/data/osv; fi; \
	echo "vuln: govulncheck $(GOVULNCHECK_VERSION), $$($(GO) env GOVERSION), database $$db"; \
	$(VULNBIN)/govulncheck -db "$$db" ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin dist
