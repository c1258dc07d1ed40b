package s3

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/pgb-project/pgb/internal/storage"
)

// The settings below are those config.LoadDefaultConfig (pgb before bdf5a35) read;
// pgb's own chain keeps them, or refuses them with a message, never ignores them.

// envOf is a test environment: m, with shared files that do not exist unless m names
// them.
func envOf(t *testing.T, m map[string]string) awsEnv {
	dir := t.TempDir()
	return func(k string) string {
		if v, ok := m[k]; ok {
			return v
		}
		switch k {
		case "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE":
			return filepath.Join(dir, "none")
		}
		return ""
	}
}

// writeShared writes a shared config and credentials file and returns their variables.
func writeShared(t *testing.T, config, creds string) map[string]string {
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credFile, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"AWS_CONFIG_FILE": cfgFile, "AWS_SHARED_CREDENTIALS_FILE": credFile}
}

// providerFor is the provider the chain picks for cfg in env.
func providerFor(t *testing.T, cfg Config, env awsEnv) (aws.CredentialsProvider, error) {
	t.Helper()
	prof, err := loadProfile(cfg.Profile, env)
	if err != nil {
		return nil, err
	}
	return credentialProvider(cfg, prof, env, "us-east-1", http.DefaultClient, endpoint{})
}

// With no profile named, EKS IRSA's environment (AWS_WEB_IDENTITY_TOKEN_FILE +
// AWS_ROLE_ARN) comes before the shared files' default profile, as in the SDK: a pod
// whose ~/.aws holds a default profile for other tools runs pgb as the pod's role.
func TestIRSAOnAPodWithADefaultProfileRunsAsThePodsRole(t *testing.T) {
	for _, c := range []struct{ name, config, creds string }{
		{"default profile with static keys", "", "[default]\naws_access_key_id = OTHERKEY\naws_secret_access_key = s\n"},
		{"default profile with a credential_process", "[default]\ncredential_process = /usr/bin/vault-aws\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := writeShared(t, c.config, c.creds)
			m["AWS_WEB_IDENTITY_TOKEN_FILE"], m["AWS_ROLE_ARN"] = "/var/run/secrets/eks/token", "arn:aws:iam::1:role/pgb"
			env := envOf(t, m)
			cfg := Config{}.withDefaults()
			if _, err := resolveAWSConfig(cfg, env, http.DefaultClient); err != nil {
				t.Fatalf("IRSA environment with a default profile: %v", err)
			}
			p, err := providerFor(t, cfg, env)
			if err != nil {
				t.Fatal(err)
			}
			if got := typeName(p); got != "web identity" {
				t.Errorf("provider %s, want web identity (the SDK's choice)", got)
			}
		})
	}
}

// A profile named with --s3-profile / AWS_PROFILE comes before the environment's keys
// and web identity, as it did with the SDK (WithSharedConfigProfile).
func TestNamedProfileComesBeforeEnvironmentKeysAndIRSA(t *testing.T) {
	m := writeShared(t, "", "[prod]\naws_access_key_id = PRODKEY\naws_secret_access_key = s\n")
	m["AWS_ACCESS_KEY"], m["AWS_SECRET_KEY"] = "ENVKEY", "e"
	m["AWS_WEB_IDENTITY_TOKEN_FILE"], m["AWS_ROLE_ARN"] = "/t", "arn:aws:iam::1:role/pgb"
	p, err := providerFor(t, Config{Profile: "prod"}.withDefaults(), envOf(t, m))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := p.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "PRODKEY" {
		t.Fatalf("credentials %q, %v; want the profile's PRODKEY", creds.AccessKeyID, err)
	}
}

// AWS_ACCESS_KEY / AWS_SECRET_KEY, the SDK's older names, still give static keys, after
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; a half pair is refused, not skipped.
func TestOlderKeyNamesAWSAccessKeyAndAWSSecretKeyAreRead(t *testing.T) {
	p, err := providerFor(t, Config{}.withDefaults(), envOf(t, map[string]string{"AWS_ACCESS_KEY": "OLDKEY", "AWS_SECRET_KEY": "s"}))
	if err != nil {
		t.Fatal(err)
	}
	if creds, err := p.Retrieve(context.Background()); err != nil || creds.AccessKeyID != "OLDKEY" {
		t.Fatalf("credentials %q, %v; want OLDKEY", creds.AccessKeyID, err)
	}
	// AWS_ACCESS_KEY_ID reaches Config through the configuration layer; its secret
	// under the older name completes it.
	cfg := withEnvironmentKeys(Config{Bucket: "b", AccessKeyID: "NEWKEY"}.withDefaults(), envOf(t, map[string]string{"AWS_SECRET_KEY": "s"}))
	if err := cfg.validate(); err != nil || cfg.SecretAccessKey != "s" {
		t.Fatalf("AWS_ACCESS_KEY_ID + AWS_SECRET_KEY: secret %q, %v", cfg.SecretAccessKey, err)
	}
	if _, err := providerFor(t, Config{}.withDefaults(), envOf(t, map[string]string{"AWS_ACCESS_KEY": "HALF"})); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY is set") {
		t.Fatalf("half pair: err = %v, want a message naming AWS_ACCESS_KEY", err)
	}
}

// AWS_DEFAULT_REGION is read after AWS_REGION (Config.Region) and before the profile.
func TestAWSDefaultRegionSetsTheRegion(t *testing.T) {
	m := writeShared(t, "[default]\nregion = ap-south-1\n", "")
	m["AWS_DEFAULT_REGION"], m["AWS_EC2_METADATA_DISABLED"] = "eu-west-1", "true"
	for _, c := range []struct {
		cfg  Config
		want string
	}{{Config{}, "eu-west-1"}, {Config{Region: "us-west-2"}, "us-west-2"}} {
		awsCfg, err := resolveAWSConfig(c.cfg.withDefaults(), envOf(t, m), http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		if awsCfg.Region != c.want {
			t.Errorf("region %q with AWS_DEFAULT_REGION=eu-west-1 and Config.Region %q, want %q", awsCfg.Region, c.cfg.Region, c.want)
		}
	}
}

// A profile that assumes a role from another profile is refused even when it also
// holds keys: the SDK would have assumed the role, pgb must not run as the keys' user.
func TestProfileAssumingARoleWithKeysIsRefused(t *testing.T) {
	m := writeShared(t, "[profile ops]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = base\n", "[ops]\naws_access_key_id = K\naws_secret_access_key = s\n")
	_, err := providerFor(t, Config{Profile: "ops"}.withDefaults(), envOf(t, m))
	if err == nil || !strings.Contains(err.Error(), "source_profile") {
		t.Fatalf("err = %v, want the assumed role refused", err)
	}
}

// The SDK's endpoint switches are honoured (the URL becomes the endpoint, FIPS and
// dual-stack reach the S3 client) or refused with a message, never ignored.
func TestSDKEndpointSwitchesAreHonouredOrRefused(t *testing.T) {
	shared := writeShared(t, `[default]
endpoint_url = https://profile.example
services = local

[profile fips]
use_fips_endpoint = true

[profile ignoring]
endpoint_url = https://profile.example
ignore_configured_endpoint_urls = true

[services local]
s3 =
  endpoint_url = https://services.example
sts =
  endpoint_url = https://sts.example
`, "")
	noFiles := map[string]string{}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{"AWS_EC2_METADATA_DISABLED": "true"}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name     string
		cfg      Config
		env      map[string]string
		wantURL  string
		wantFIPS bool
		wantDual bool
		wantErr  string
	}{
		{name: "AWS_ENDPOINT_URL", env: with(noFiles, "AWS_ENDPOINT_URL", "https://minio.internal:9000"), wantURL: "https://minio.internal:9000"},
		{name: "AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL", env: with(noFiles, "AWS_ENDPOINT_URL", "https://all.example", "AWS_ENDPOINT_URL_S3", "https://s3.example"), wantURL: "https://s3.example"},
		{name: "--s3-endpoint wins", cfg: Config{Endpoint: "http://127.0.0.1:7070"}, env: with(shared, "AWS_ENDPOINT_URL_S3", "https://s3.example"), wantURL: "http://127.0.0.1:7070"},
		{name: "environment before the profile", env: with(shared, "AWS_ENDPOINT_URL", "https://all.example"), wantURL: "https://all.example"},
		{name: "services section before the profile's endpoint_url", env: with(shared), wantURL: "https://services.example"},
		{name: "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", env: with(shared, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", "AWS_ENDPOINT_URL", "https://all.example")},
		{name: "profile's ignore_configured_endpoint_urls", cfg: Config{Profile: "ignoring"}, env: with(shared)},
		{name: "endpoint not a URL", env: with(noFiles, "AWS_ENDPOINT_URL_S3", "minio:9000"), wantErr: "AWS_ENDPOINT_URL_S3"},
		{name: "AWS_USE_FIPS_ENDPOINT", env: with(noFiles, "AWS_USE_FIPS_ENDPOINT", "true"), wantFIPS: true},
		{name: "profile's use_fips_endpoint", cfg: Config{Profile: "fips"}, env: with(shared), wantFIPS: true},
		{name: "AWS_USE_DUALSTACK_ENDPOINT", env: with(noFiles, "AWS_USE_DUALSTACK_ENDPOINT", "true"), wantDual: true},
		{name: "FIPS with a custom endpoint refused", cfg: Config{Endpoint: "http://127.0.0.1:7070"}, env: with(noFiles, "AWS_USE_FIPS_ENDPOINT", "true"), wantErr: "cannot be combined"},
		{name: "FIPS switch not a boolean", env: with(noFiles, "AWS_USE_FIPS_ENDPOINT", "yes"), wantErr: `AWS_USE_FIPS_ENDPOINT is "yes"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			awsCfg, err := resolveAWSConfig(tc.cfg.withDefaults(), envOf(t, tc.env), http.DefaultClient)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := aws.ToString(awsCfg.BaseEndpoint); got != tc.wantURL {
				t.Errorf("endpoint %q, want %q", got, tc.wantURL)
			}
			var fips, dual bool
			for _, src := range awsCfg.ConfigSources {
				if e, ok := src.(endpoint); ok {
					fips = e.fips == aws.FIPSEndpointStateEnabled
					dual = e.dualStack == aws.DualStackEndpointStateEnabled
				}
			}
			if fips != tc.wantFIPS || dual != tc.wantDual {
				t.Errorf("FIPS %v dual-stack %v, want %v %v", fips, dual, tc.wantFIPS, tc.wantDual)
			}
		})
	}
	// The web identity's STS client follows the same switches (AWS_ENDPOINT_URL_STS,
	// the services section's sts).
	prof, err := loadProfile("", envOf(t, with(shared)))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := endpointSettings("STS", "", prof, envOf(t, with(shared))); err != nil || e.url != "https://sts.example" {
		t.Errorf("STS endpoint %q, %v; want the services section's", e.url, err)
	}
}

// AWS_CA_BUNDLE is trusted for the store's connections (replacing the system's roots,
// as the SDK did); a file with no certificate is refused.
func TestCABundleIsTrustedForTheStore(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound) // HEAD of a missing key
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshake is expected
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"HOME": dir, "AWS_CONFIG_FILE": "", "AWS_SHARED_CREDENTIALS_FILE": "", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "", "AWS_USE_FIPS_ENDPOINT": "", "AWS_USE_DUALSTACK_ENDPOINT": ""} {
		t.Setenv(k, v)
	}
	stat := func() error {
		s, err := New(context.Background(), Config{Bucket: "b", Endpoint: srv.URL, ForcePathStyle: true, AccessKeyID: "k", SecretAccessKey: "s", MaxAttempts: 1})
		if err != nil {
			return err
		}
		defer func() { _ = s.Close() }()
		_, err = s.Stat(context.Background(), "missing")
		return err
	}
	t.Setenv("AWS_CA_BUNDLE", "")
	if err := stat(); err == nil || errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("without the bundle: err = %v, want a TLS failure", err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	if err := stat(); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("with AWS_CA_BUNDLE: err = %v, want ErrNotExist (the server trusted)", err)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", empty)
	if err := stat(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("bundle without a certificate: err = %v", err)
	}
}

// The SDK's IMDS switches reach the instance-role client; a mode it does not know is
// refused.
func TestInstanceRoleFollowsTheIMDSSwitches(t *testing.T) {
	prof := profile{name: "default", keys: map[string]string{"ec2_metadata_service_endpoint_mode": "IPv6"}}
	o, err := imdsOptions(prof, envOf(t, map[string]string{"AWS_EC2_METADATA_V1_DISABLED": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if o.EndpointMode != imds.EndpointModeStateIPv6 || o.EnableFallback != aws.FalseTernary {
		t.Errorf("options %+v, want IPv6 and no IMDSv1 fallback", o)
	}
	if _, err := imdsOptions(profile{}, envOf(t, map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "v6"})); err == nil {
		t.Error("an unknown endpoint mode was accepted")
	}
}
