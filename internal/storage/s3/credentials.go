package s3

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"
)

// pgb builds its AWS credential chain itself instead of calling the SDK's
// config.LoadDefaultConfig: that package links every provider the SDK knows (SSO,
// SSO-OIDC, console sign-in, credential processes, …) and their endpoint tables, whose
// package initialisation every wal-push and wal-fetch call paid for at start-up. The
// providers below are the ones a DBA running PostgreSQL on or off AWS uses; they are
// chosen in the SDK's order (resolveCredentialChain), once, when the store is built:
//
//  1. static keys: --s3-access-key-id/--s3-secret-access-key/--s3-session-token, or
//     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN (Config.AccessKeyID…);
//  2. a profile named by --s3-profile / AWS_PROFILE (Config.Profile): its static keys
//     or web_identity_token_file + role_arn, else 6 and 7 (as the SDK did, the
//     environment's keys and web identity are then not looked at);
//  3. the environment's keys under their older names, AWS_ACCESS_KEY/AWS_SECRET_KEY;
//  4. web identity from the environment (EKS IRSA): AWS_WEB_IDENTITY_TOKEN_FILE +
//     AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME), through STS;
//  5. the default profile (AWS_DEFAULT_PROFILE, else "default") of the shared files
//     AWS_CONFIG_FILE (~/.aws/config) and AWS_SHARED_CREDENTIALS_FILE
//     (~/.aws/credentials): its static keys or web identity;
//  6. the container endpoint (ECS task roles, EKS Pod Identity):
//     AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI,
//     with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE);
//  7. the EC2 instance role through IMDS (unless AWS_EC2_METADATA_DISABLED=true).
//
// A profile that asks for something else (SSO, a console login session, a
// credential_process, an assumed role with source_profile or credential_source) is
// refused with a message saying so, never passed over for the next provider.
// The region is Config.Region (--s3-region, PGB_S3_REGION, AWS_REGION), else
// AWS_DEFAULT_REGION, else the profile's region, else DefaultRegion. The endpoint and
// transport switches of the SDK are honoured too (see endpointSettings, caBundle).

// maxSharedFileSize bounds what is read of one shared config or credentials file.
const maxSharedFileSize = 1 << 20

// maxCABundleSize bounds what is read of AWS_CA_BUNDLE (the whole Mozilla bundle is
// about 220 KiB).
const maxCABundleSize = 8 << 20

// ecsCredentialsHost is where AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is served.
const ecsCredentialsHost = "http://169.254.170.2"

// awsEnv reads the environment; tests substitute a map.
type awsEnv func(string) string

// firstEnv is the first of the variables that is set, with its name.
func firstEnv(env awsEnv, names ...string) (value, name string) {
	for _, n := range names {
		if v := env(n); v != "" {
			return v, n
		}
	}
	return "", ""
}

// withEnvironmentKeys completes a half pair of static keys from the environment's
// older names, as the SDK did (AWS_ACCESS_KEY_ID, else AWS_ACCESS_KEY; the same for the
// secret), so that validate does not refuse e.g. AWS_ACCESS_KEY_ID + AWS_SECRET_KEY.
func withEnvironmentKeys(cfg Config, env awsEnv) Config {
	if cfg.AccessKeyID != "" && cfg.SecretAccessKey == "" {
		cfg.SecretAccessKey = env("AWS_SECRET_KEY")
	}
	if cfg.SecretAccessKey != "" && cfg.AccessKeyID == "" {
		cfg.AccessKeyID = env("AWS_ACCESS_KEY")
	}
	return cfg
}

// loadAWSConfig resolves region, credentials and endpoint settings (see the chain
// above) into the aws.Config the S3 client is built from. client carries the HTTP
// requests of the credential providers that make them (STS, the container endpoint).
func loadAWSConfig(cfg Config, prof profile, client *http.Client) (aws.Config, error) {
	return resolveWithProfile(cfg, prof, os.Getenv, client)
}

// resolveAWSConfig is loadAWSConfig with the profile read from env's shared files.
func resolveAWSConfig(cfg Config, env awsEnv, client *http.Client) (aws.Config, error) {
	prof, err := loadProfile(cfg.Profile, env)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: %w", err)
	}
	return resolveWithProfile(cfg, prof, env, client)
}

func resolveWithProfile(cfg Config, prof profile, env awsEnv, client *http.Client) (aws.Config, error) {
	region, _ := firstEnv(env, "AWS_DEFAULT_REGION")
	if cfg.Region != "" {
		region = cfg.Region
	}
	if region == "" {
		region = prof.get("region")
	}
	if region == "" {
		region = DefaultRegion
	}
	s3End, err := endpointSettings("S3", cfg.Endpoint, prof, env)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: %w", err)
	}
	// STS's settings are read only where web identity may need them, so that one pgb
	// does not use cannot refuse the store.
	var stsEnd endpoint
	if env("AWS_WEB_IDENTITY_TOKEN_FILE") != "" || prof.get("web_identity_token_file") != "" {
		if stsEnd, err = endpointSettings("STS", "", prof, env); err != nil {
			return aws.Config{}, fmt.Errorf("s3: %w", err)
		}
	}
	provider, err := credentialProvider(cfg, prof, env, region, client, stsEnd)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: %w", err)
	}
	// What config.LoadDefaultConfig set besides region and credentials: its defaults
	// for checksums (New narrows them per Config.Checksum), a logger for the SDK's
	// warnings, and the endpoint switches (BaseEndpoint; FIPS and dual-stack through
	// ConfigSources, which the S3 client reads).
	awsCfg := aws.Config{
		Region:                     region,
		RetryMaxAttempts:           cfg.MaxAttempts,
		HTTPClient:                 client,
		Logger:                     logging.NewStandardLogger(os.Stderr),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}
	if s3End.url != "" {
		awsCfg.BaseEndpoint = aws.String(s3End.url)
	}
	if s3End.fips != aws.FIPSEndpointStateUnset || s3End.dualStack != aws.DualStackEndpointStateUnset {
		awsCfg.ConfigSources = []any{s3End}
	}
	if provider != nil {
		awsCfg.Credentials = aws.NewCredentialsCache(provider)
	}
	return awsCfg, nil
}

// endpoint is where one service is reached: a configured URL, and the FIPS and
// dual-stack switches. It is a configuration source of the SDK's clients
// (GetUseFIPSEndpoint, GetUseDualStackEndpoint).
type endpoint struct {
	url       string
	fips      aws.FIPSEndpointState
	dualStack aws.DualStackEndpointState
}

// GetUseFIPSEndpoint makes endpoint a source of the SDK's FIPS switch.
func (e endpoint) GetUseFIPSEndpoint(context.Context) (aws.FIPSEndpointState, bool, error) {
	return e.fips, e.fips != aws.FIPSEndpointStateUnset, nil
}

// GetUseDualStackEndpoint makes endpoint a source of the SDK's dual-stack switch.
func (e endpoint) GetUseDualStackEndpoint(context.Context) (aws.DualStackEndpointState, bool, error) {
	return e.dualStack, e.dualStack != aws.DualStackEndpointStateUnset, nil
}

// endpointSettings reads the SDK's endpoint switches for service ("S3", "STS") as the
// SDK did: the URL from AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL, else the
// profile's services section (<service> = endpoint_url), else the profile's
// endpoint_url, all skipped when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS (or the profile's
// ignore_configured_endpoint_urls) is true; explicit (--s3-endpoint) wins over them.
// FIPS and dual-stack: AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT, else the
// profile's use_fips_endpoint / use_dualstack_endpoint. A value pgb cannot use is
// refused, naming where it was set.
func endpointSettings(service, explicit string, prof profile, env awsEnv) (endpoint, error) {
	var e endpoint
	lower := strings.ToLower(service)
	ignore, err := boolSetting(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", prof, "ignore_configured_endpoint_urls")
	if err != nil {
		return e, err
	}
	switch {
	case explicit != "":
		e.url = explicit
	case ignore:
	default:
		var from string
		if e.url, from = firstEnv(env, "AWS_ENDPOINT_URL_"+service, "AWS_ENDPOINT_URL"); e.url == "" {
			if e.url = prof.service(lower + ".endpoint_url"); e.url != "" {
				from = fmt.Sprintf("the %s endpoint_url of the services section of AWS profile %q", lower, prof.name)
			} else if e.url = prof.get("endpoint_url"); e.url != "" {
				from = fmt.Sprintf("endpoint_url of AWS profile %q", prof.name)
			}
		}
		if e.url != "" {
			u, perr := url.Parse(e.url)
			if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return e, fmt.Errorf("%s %q is not an http(s) URL: correct or unset it", from, redactURL(e.url))
			}
		}
	}
	fips, err := boolSetting(env, "AWS_USE_FIPS_ENDPOINT", prof, "use_fips_endpoint")
	if err != nil {
		return e, err
	}
	dual, err := boolSetting(env, "AWS_USE_DUALSTACK_ENDPOINT", prof, "use_dualstack_endpoint")
	if err != nil {
		return e, err
	}
	if fips {
		e.fips = aws.FIPSEndpointStateEnabled
		if e.url != "" {
			return e, fmt.Errorf("FIPS endpoints (AWS_USE_FIPS_ENDPOINT / use_fips_endpoint) cannot be combined with the custom %s endpoint %s: give the FIPS endpoint as the endpoint, or drop one of the two", service, redactURL(e.url))
		}
	}
	if dual {
		e.dualStack = aws.DualStackEndpointStateEnabled
		if e.url != "" {
			return e, fmt.Errorf("dual-stack endpoints (AWS_USE_DUALSTACK_ENDPOINT / use_dualstack_endpoint) cannot be combined with the custom %s endpoint %s: give the dual-stack endpoint as the endpoint, or drop one of the two", service, redactURL(e.url))
		}
	}
	return e, nil
}

// boolSetting is the environment variable's true/false, else the profile key's.
func boolSetting(env awsEnv, name string, prof profile, key string) (bool, error) {
	v, from := env(name), name
	if v == "" {
		v, from = prof.get(key), fmt.Sprintf("%s of AWS profile %q", key, prof.name)
	}
	switch strings.ToLower(v) {
	case "":
		return false, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%s is %q: set it to true or false", from, v)
}

// caBundle is the trust store AWS_CA_BUNDLE (else the profile's ca_bundle) names, or
// nil. As with the SDK it replaces the system's roots for the store's connections.
func caBundle(prof profile, env awsEnv) (*x509.CertPool, error) {
	path, from := env("AWS_CA_BUNDLE"), "AWS_CA_BUNDLE"
	if path == "" {
		path, from = prof.get("ca_bundle"), fmt.Sprintf("ca_bundle of AWS profile %q", prof.name)
	}
	if path == "" {
		return nil, nil
	}
	b, err := readLimited(path, maxCABundleSize)
	if err != nil {
		return nil, fmt.Errorf("s3: read the CA bundle %s (%s): %w", path, from, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("s3: the CA bundle %s (%s) holds no PEM certificate: correct or unset it", path, from)
	}
	return pool, nil
}

// credentialProvider picks the first provider of the chain that is configured.
func credentialProvider(cfg Config, prof profile, env awsEnv, region string, client *http.Client, stsEnd endpoint) (aws.CredentialsProvider, error) {
	if cfg.AccessKeyID != "" {
		return credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken), nil
	}
	if !prof.explicit {
		id, idName := firstEnv(env, "AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY")
		secret, secretName := firstEnv(env, "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY")
		switch {
		case id != "" && secret != "":
			return credentials.NewStaticCredentialsProvider(id, secret, env("AWS_SESSION_TOKEN")), nil
		case id != "":
			return nil, fmt.Errorf("%s is set but neither AWS_SECRET_ACCESS_KEY nor AWS_SECRET_KEY: set the secret too, or unset the key id", idName)
		case secret != "":
			return nil, fmt.Errorf("%s is set but neither AWS_ACCESS_KEY_ID nor AWS_ACCESS_KEY: set the key id too, or unset the secret", secretName)
		}
		if tokenFile := env("AWS_WEB_IDENTITY_TOKEN_FILE"); tokenFile != "" {
			role := env("AWS_ROLE_ARN")
			if role == "" {
				return nil, errors.New("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: set the role to assume, or unset the token file")
			}
			return webIdentity(tokenFile, role, env("AWS_ROLE_SESSION_NAME"), region, client, stsEnd), nil
		}
	}
	if p, err := prof.credentials(region, client, stsEnd); p != nil || err != nil {
		return p, err
	}
	if p, err := containerProvider(env, client); p != nil || err != nil {
		return p, err
	}
	if strings.EqualFold(env("AWS_EC2_METADATA_DISABLED"), "true") {
		return noCredentials{}, nil
	}
	opts, err := imdsOptions(prof, env)
	if err != nil {
		return nil, err
	}
	// IMDS keeps the SDK's own short timeouts, so that a host off EC2 fails fast.
	return ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = imds.New(opts) }), nil
}

// imdsOptions are the SDK's IMDS switches: AWS_EC2_METADATA_SERVICE_ENDPOINT (else
// the profile's ec2_metadata_service_endpoint), AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE
// (IPv4 or IPv6) and AWS_EC2_METADATA_V1_DISABLED, with their profile counterparts.
func imdsOptions(prof profile, env awsEnv) (imds.Options, error) {
	var o imds.Options
	if o.Endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT"); o.Endpoint == "" {
		o.Endpoint = prof.get("ec2_metadata_service_endpoint")
	}
	mode, from := env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"), "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"
	if mode == "" {
		mode, from = prof.get("ec2_metadata_service_endpoint_mode"), fmt.Sprintf("ec2_metadata_service_endpoint_mode of AWS profile %q", prof.name)
	}
	switch strings.ToLower(mode) {
	case "":
	case "ipv4":
		o.EndpointMode = imds.EndpointModeStateIPv4
	case "ipv6":
		o.EndpointMode = imds.EndpointModeStateIPv6
	default:
		return o, fmt.Errorf("%s is %q: set it to IPv4 or IPv6", from, mode)
	}
	v1Off, err := boolSetting(env, "AWS_EC2_METADATA_V1_DISABLED", prof, "ec2_metadata_v1_disabled")
	if err != nil {
		return o, err
	}
	if v1Off {
		o.EnableFallback = aws.FalseTernary
	}
	return o, nil
}

func webIdentity(tokenFile, role, session, region string, client *http.Client, stsEnd endpoint) aws.CredentialsProvider {
	opts := sts.Options{Region: region, HTTPClient: client}
	if stsEnd.url != "" {
		opts.BaseEndpoint = aws.String(stsEnd.url)
	}
	opts.EndpointOptions.UseFIPSEndpoint = stsEnd.fips
	opts.EndpointOptions.UseDualStackEndpoint = stsEnd.dualStack
	stsClient := sts.New(opts)
	return stscreds.NewWebIdentityRoleProvider(stsClient, role, stscreds.IdentityTokenFile(tokenFile),
		func(o *stscreds.WebIdentityRoleOptions) {
			if session != "" {
				o.RoleSessionName = session
			}
		})
}

// containerProvider is the ECS/EKS container credentials endpoint, or nil when
// neither variable names one.
func containerProvider(env awsEnv, client *http.Client) (aws.CredentialsProvider, error) {
	endpoint := ""
	if rel := env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		endpoint = ecsCredentialsHost + rel
	} else if full := env("AWS_CONTAINER_CREDENTIALS_FULL_URI"); full != "" {
		if err := checkContainerEndpoint(full); err != nil {
			return nil, err
		}
		endpoint = full
	} else {
		return nil, nil
	}
	token, tokenFile := env("AWS_CONTAINER_AUTHORIZATION_TOKEN"), env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
	return endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.HTTPClient = client
		o.AuthorizationToken = token
		if tokenFile != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := readBounded(tokenFile)
				if err != nil {
					return "", fmt.Errorf("read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		}
	}), nil
}

// checkContainerEndpoint allows, like the SDK, an https URL or a plain http one on the
// loopback interface or the ECS/EKS credential addresses. A name is not resolved.
func checkContainerEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q is not a URL", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if u.Scheme == "http" {
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || host == "169.254.170.2" || host == "169.254.170.23" || ip.Equal(net.ParseIP("fd00:ec2::23"))) {
			return nil
		}
	}
	return fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q: only https, or http on the loopback interface or the ECS/EKS credential address, is allowed", raw)
}

// noCredentials is the end of a chain with nothing configured and IMDS disabled.
type noCredentials struct{}

func (noCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("no AWS credentials configured (no static keys, profile keys, web identity or container credentials, and AWS_EC2_METADATA_DISABLED=true)")
}

// profile is one profile of the shared config and credentials files: its keys, in
// lower case, the credentials file's taking precedence, and the keys of the services
// section it names ("s3.endpoint_url").
type profile struct {
	name     string
	explicit bool // named by --s3-profile / AWS_PROFILE
	keys     map[string]string
	services map[string]string
}

func (p profile) get(key string) string { return p.keys[key] }

func (p profile) service(key string) string { return p.services[key] }

// unsupportedProfileKeys name the profile settings pgb does not implement, and what
// they are.
var unsupportedProfileKeys = []struct{ key, what string }{
	{"sso_session", "an SSO login"},
	{"sso_start_url", "an SSO login"},
	{"sso_account_id", "an SSO login"},
	{"login_session", "a console login session"},
	{"credential_process", "a credential_process"},
}

// credentials is the profile's provider, nil when it names no credentials. The cases
// are taken in the SDK's order (resolveCredsFromProfile): an assumed role from another
// profile first, then static keys, a credential_source, web identity, SSO, a login
// session, a credential process.
func (p profile) credentials(region string, client *http.Client, stsEnd endpoint) (aws.CredentialsProvider, error) {
	if p.get("source_profile") != "" && p.get("role_arn") != "" {
		return nil, p.unsupported("an assumed role (source_profile)", "source_profile")
	}
	id, secret := p.get("aws_access_key_id"), p.get("aws_secret_access_key")
	switch {
	case id != "" || secret != "":
		if id == "" || secret == "" {
			return nil, fmt.Errorf("AWS profile %q has only one of aws_access_key_id and aws_secret_access_key: give both", p.name)
		}
		return credentials.NewStaticCredentialsProvider(id, secret, p.get("aws_session_token")), nil
	case p.get("credential_source") != "":
		return nil, p.unsupported("an assumed role (credential_source)", "credential_source")
	case p.get("web_identity_token_file") != "":
		if p.get("role_arn") == "" {
			return nil, fmt.Errorf("AWS profile %q has web_identity_token_file but no role_arn: add the role to assume", p.name)
		}
		return webIdentity(p.get("web_identity_token_file"), p.get("role_arn"), p.get("role_session_name"), region, client, stsEnd), nil
	}
	for _, u := range unsupportedProfileKeys {
		if p.get(u.key) != "" {
			return nil, p.unsupported(u.what, u.key)
		}
	}
	if p.get("source_profile") != "" || p.get("role_arn") != "" {
		return nil, fmt.Errorf("AWS profile %q assumes role_arn without web_identity_token_file, which pgb does not support: give pgb the role's credentials another way (static keys, web identity, a container or instance role)", p.name)
	}
	return nil, nil
}

func (p profile) unsupported(what, key string) error {
	return fmt.Errorf("AWS profile %q uses %s (%s), which pgb does not support: give pgb static keys (e.g. from `aws configure export-credentials --profile %s --format env`), web identity, or a container or instance role", p.name, what, key, p.name)
}

// loadProfile reads the named profile (else AWS_DEFAULT_PROFILE, else "default") from
// the shared files. A profile named explicitly must exist in one of them; a missing
// file is no error.
func loadProfile(name string, env awsEnv) (profile, error) {
	p := profile{name: name, explicit: name != "", keys: map[string]string{}}
	if p.name == "" {
		p.name = env("AWS_DEFAULT_PROFILE")
	}
	named := p.name != ""
	if p.name == "" {
		p.name = "default"
	}
	home := env("HOME")
	cfgFile, credFile := env("AWS_CONFIG_FILE"), env("AWS_SHARED_CREDENTIALS_FILE")
	// The default files under HOME may sit in a directory this user cannot search
	// (PostgreSQL's restore_command runs as postgres with the HOME of whoever started
	// the server, say /root): like a missing file, that is no profile. (So is a HOME
	// that is not a directory.) A file named by AWS_CONFIG_FILE or
	// AWS_SHARED_CREDENTIALS_FILE must be readable.
	defaultCfg, defaultCred := cfgFile == "", credFile == ""
	if cfgFile == "" && home != "" {
		cfgFile = filepath.Join(home, ".aws", "config")
	}
	if credFile == "" && home != "" {
		credFile = filepath.Join(home, ".aws", "credentials")
	}
	found := false
	var cfgSections map[string]map[string]string
	// The config file first: the credentials file's keys replace its keys.
	for _, f := range []struct {
		path         string
		config, home bool
	}{{cfgFile, true, defaultCfg}, {credFile, false, defaultCred}} {
		if f.path == "" {
			continue
		}
		sections, err := readShared(f.path)
		if f.home && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR)) {
			continue
		}
		if err != nil {
			return profile{}, err
		}
		if f.config {
			cfgSections = sections
		}
		for section, keys := range sections {
			if sectionProfile(section, f.config) != p.name {
				continue
			}
			found = true
			for k, v := range keys {
				p.keys[k] = v
			}
		}
	}
	if named && !found {
		return profile{}, fmt.Errorf("AWS profile %q not found in %s or %s: check --s3-profile / AWS_PROFILE / AWS_DEFAULT_PROFILE", p.name, cfgFile, credFile)
	}
	if svc := p.get("services"); svc != "" {
		keys, ok := cfgSections["services "+svc]
		if !ok {
			return profile{}, fmt.Errorf("AWS profile %q names services %q, which %s does not have: add [services %s] or remove the setting", p.name, svc, cfgFile, svc)
		}
		p.services = keys
	}
	return p, nil
}

// readShared returns the sections of an INI-style AWS file, each with its keys in lower
// case; an indented line under a key with no value (a service's nested settings, e.g.
// "s3 =" then "  endpoint_url = …") is stored as "s3.endpoint_url". A missing file
// has no sections.
func readShared(path string) (map[string]map[string]string, error) {
	b, err := readBounded(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the AWS shared file %s: %w", path, err)
	}
	sections := map[string]map[string]string{}
	var cur map[string]string
	parent := ""
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(nil, maxSharedFileSize)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("AWS shared file %s: section line %q has no closing ]", path, line)
			}
			name := strings.Join(strings.Fields(line[1:end]), " ")
			if sections[name] == nil {
				sections[name] = map[string]string{}
			}
			cur, parent = sections[name], ""
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || cur == nil {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if raw[0] == ' ' || raw[0] == '\t' {
			if parent != "" {
				cur[parent+"."+k] = v
			}
			continue
		}
		cur[k] = v
		parent = ""
		if v == "" {
			parent = k
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("AWS shared file %s: %w", path, err)
	}
	return sections, nil
}

// sectionProfile is the profile a section header names, or "" for another kind of
// section (sso-session, services).
func sectionProfile(section string, configFile bool) string {
	if !configFile {
		return section
	}
	if section == "default" {
		return section
	}
	if rest, ok := strings.CutPrefix(section, "profile "); ok {
		return strings.TrimSpace(rest)
	}
	return ""
}

// readBounded reads a small local file, refusing one larger than maxSharedFileSize.
func readBounded(path string) ([]byte, error) { return readLimited(path, maxSharedFileSize) }

// readLimited reads a local file, refusing one larger than limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only: a Close error cannot lose data
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
