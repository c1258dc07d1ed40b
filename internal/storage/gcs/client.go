package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	gs "cloud.google.com/go/storage"
	gax "github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// emulatorEnv is the variable the client reads to talk to an emulator.
const emulatorEnv = "STORAGE_EMULATOR_HOST"

// endpoint returns the custom endpoint as given, and where it was given; "" for
// Google's.
func (c Config) endpoint() (ep, source string) {
	if c.Endpoint != "" {
		return c.Endpoint, "--gcs-endpoint"
	}
	if h := os.Getenv(emulatorEnv); h != "" {
		return h, emulatorEnv
	}
	return "", ""
}

// noAuth reports whether requests go without credentials: to a custom endpoint or an
// emulator, unless a credentials file is given.
func (c Config) noAuth() bool {
	ep, _ := c.endpoint()
	return ep != "" && c.CredentialsFile == ""
}

// newClient makes the storage client: JSON API for reads too (emulators serve it),
// requests through httpClient, which also authenticates.
func newClient(ctx context.Context, cfg Config) (*gs.Client, error) {
	hc, err := httpClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opts := []option.ClientOption{
		option.WithHTTPClient(hc),
		option.WithoutAuthentication(), // hc carries the credentials
		gs.WithJSONReads(),
	}
	if cfg.Endpoint != "" {
		ep, err := apiEndpoint(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option.WithEndpoint(ep))
	}
	c, err := gs.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcs: %s: %w", location(cfg.Bucket, cfg.Prefix), err)
	}
	return c, nil
}

// retryOptions are the client's retry settings under policy, for requests other
// than uploads.
func retryOptions(cfg Config, policy gs.RetryPolicy) []gs.RetryOption {
	return []gs.RetryOption{gs.WithMaxAttempts(cfg.MaxAttempts), gs.WithPolicy(policy), gs.WithBackoff(backoff(cfg.Retry))}
}

// backoff is p's backoff for the client: it doubles from BaseDelay up to MaxDelay,
// with the client's own jitter.
func backoff(p retry.Policy) gax.Backoff {
	return gax.Backoff{Initial: p.BaseDelay, Max: p.MaxDelay, Multiplier: 2}
}

// httpClient returns the client that carries the store's requests: cfg.HTTPClient or
// a transport of our own (with RequestTimeout as the response header timeout), under
// ctxGuard, under the credentials unless cfg.noAuth.
func httpClient(ctx context.Context, cfg Config) (*http.Client, error) {
	var hc http.Client
	var base http.RoundTripper
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
		base = hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
	} else {
		t := &http.Transport{}
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			t = dt.Clone()
		}
		t.MaxIdleConnsPerHost = max(100, cfg.Concurrency)
		t.ResponseHeaderTimeout = cfg.RequestTimeout
		base = t
	}
	if cfg.WrapTransport != nil {
		base = cfg.WrapTransport(base)
	}
	var rt http.RoundTripper = ctxGuard{next: base}
	if !cfg.noAuth() {
		opts := []option.ClientOption{option.WithScopes(gs.ScopeReadWrite), option.WithUserAgent("pgb")}
		if cfg.CredentialsFile != "" {
			o, err := credentialsFile(cfg.CredentialsFile)
			if err != nil {
				return nil, credentialsError(cfg, err)
			}
			opts = append(opts, o)
		}
		// The credentials keep the context for fetching tokens later: it must outlive
		// New's caller.
		var err error
		if rt, err = htransport.NewTransport(context.WithoutCancel(ctx), rt, opts...); err != nil {
			return nil, credentialsError(cfg, err)
		}
	}
	hc.Transport = rt
	return &hc, nil
}

// credentialsFile is the option that loads the credentials file at path: a
// service-account key, or another kind of Google credentials file that
// GOOGLE_APPLICATION_CREDENTIALS may name (user, impersonation and workload identity
// federation credentials). The file's type is checked here, since the option does not
// check it on every path, and the file's content is never quoted.
func credentialsFile(path string) (option.ClientOption, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, errors.New("the file is not JSON")
	}
	switch t := option.CredentialsType(f.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ImpersonatedServiceAccount, option.ExternalAccount,
		option.CredentialsType("external_account_authorized_user"):
		return option.WithAuthCredentialsJSON(t, data), nil
	case "":
		return nil, errors.New("the file has no \"type\": not a Google credentials file")
	default:
		if len(f.Type) > 64 {
			return nil, errors.New("unsupported credentials type")
		}
		return nil, fmt.Errorf("unsupported credentials type %q", f.Type)
	}
}

// credentialsError explains a failure to load credentials.
func credentialsError(cfg Config, err error) error {
	from := "Application Default Credentials"
	if cfg.CredentialsFile != "" {
		from = "service-account key file " + cfg.CredentialsFile
	}
	return storage.Permanent(fmt.Errorf("gcs: %s: cannot load credentials from %s (set GOOGLE_APPLICATION_CREDENTIALS or --gcs-credentials-file to a service-account key file): %w",
		location(cfg.Bucket, cfg.Prefix), from, err))
}

// ctxGuard refuses requests whose context is done, whatever the transport below does
// with contexts (the Go transport refuses them too; test transports may not). Put
// relies on it: it cancels an upload's context before the client can see the end of
// the data, so that the request that would finalize the upload is never sent.
type ctxGuard struct{ next http.RoundTripper }

func (g ctxGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close the body; the context's error is the result
		}
		return nil, err
	}
	return g.next.RoundTrip(req)
}

// apiEndpoint turns a custom endpoint into the JSON API base URL the client wants:
// "host:port" means plain HTTP, and a URL without a path gets "/storage/v1/".
func apiEndpoint(raw string) (string, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", storage.Permanent(fmt.Errorf("gcs: endpoint %q: want host:port, http(s)://host[:port] or a JSON API URL ending in /storage/v1/", redactURL(raw)))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/storage/v1/"
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String(), nil
}

// redactURL drops the user information, query and fragment of an endpoint URL, which
// could hold secrets.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !strings.Contains(raw, "://") {
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			return "REDACTED@" + raw[i+1:]
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
