package s3

import (
	"bufio"
	"context"
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
// chosen in the SDK's order, once, when the store is built:
//
//  1. static keys: --s3-access-key-id/--s3-secret-access-key/--s3-session-token, or
//     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN (Config.AccessKeyID…);
//  2. the shared files' profile (--s3-profile / AWS_PROFILE, else "default") in
//     AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and AWS_CONFIG_FILE
//     (~/.aws/config): its static keys, or its web_identity_token_file + role_arn;
//  3. web identity from the environment (EKS IRSA): AWS_WEB_IDENTITY_TOKEN_FILE +
//     AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME), through STS;
//  4. the container endpoint (ECS task roles, EKS Pod Identity):
//     AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI,
//     with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE);
//  5. the EC2 instance role through IMDS (unless AWS_EC2_METADATA_DISABLED=true).
//
// A profile that asks for something else (SSO, a console login session, a
// credential_process, an assumed role with source_profile or credential_source) is
// refused with a message saying so, never passed over for the next provider.
// The region is Config.Region (--s3-region, PGB_S3_REGION, AWS_REGION), else the
// profile's region, else DefaultRegion.

// maxSharedFileSize bounds what is read of one shared config or credentials file.
const maxSharedFileSize = 1 << 20

// ecsCredentialsHost is where AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is served.
const ecsCredentialsHost = "http://169.254.170.2"

// awsEnv reads the environment; tests substitute a map.
type awsEnv func(string) string

// loadAWSConfig resolves region and credentials (see the chain above) into the
// aws.Config the S3 client is built from. client carries the HTTP requests of the
// credential providers that make them (STS, the container endpoint).
func loadAWSConfig(cfg Config, client *http.Client) (aws.Config, error) {
	return resolveAWSConfig(cfg, os.Getenv, client)
}

func resolveAWSConfig(cfg Config, env awsEnv, client *http.Client) (aws.Config, error) {
	prof, err := loadProfile(cfg.Profile, env)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: %w", err)
	}
	region := cfg.Region
	if region == "" {
		region = prof.get("region")
	}
	if region == "" {
		region = DefaultRegion
	}
	provider, err := credentialProvider(cfg, prof, env, region, client)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: %w", err)
	}
	// What config.LoadDefaultConfig set besides region and credentials: its defaults
	// for checksums (New narrows them per Config.Checksum) and a logger for the SDK's
	// warnings. AWS_ENDPOINT_URL and the SDK's other environment switches are not read:
	// pgb's own settings (--s3-endpoint, --s3-checksum…) cover what it supports.
	awsCfg := aws.Config{
		Region:                     region,
		RetryMaxAttempts:           cfg.MaxAttempts,
		HTTPClient:                 client,
		Logger:                     logging.NewStandardLogger(os.Stderr),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}
	if provider != nil {
		awsCfg.Credentials = aws.NewCredentialsCache(provider)
	}
	return awsCfg, nil
}

// credentialProvider picks the first provider of the chain that is configured.
func credentialProvider(cfg Config, prof profile, env awsEnv, region string, client *http.Client) (aws.CredentialsProvider, error) {
	if cfg.AccessKeyID != "" {
		return credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken), nil
	}
	if p, err := prof.credentials(region, client); p != nil || err != nil {
		return p, err
	}
	if tokenFile := env("AWS_WEB_IDENTITY_TOKEN_FILE"); tokenFile != "" {
		role := env("AWS_ROLE_ARN")
		if role == "" {
			return nil, errors.New("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: set the role to assume, or unset the token file")
		}
		return webIdentity(tokenFile, role, env("AWS_ROLE_SESSION_NAME"), region, client), nil
	}
	if p, err := containerProvider(env, client); p != nil || err != nil {
		return p, err
	}
	if strings.EqualFold(env("AWS_EC2_METADATA_DISABLED"), "true") {
		return noCredentials{}, nil
	}
	// IMDS keeps the SDK's own short timeouts, so that a host off EC2 fails fast.
	return ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = imds.New(imds.Options{}) }), nil
}

func webIdentity(tokenFile, role, session, region string, client *http.Client) aws.CredentialsProvider {
	stsClient := sts.New(sts.Options{Region: region, HTTPClient: client})
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
// lower case, the credentials file's taking precedence.
type profile struct {
	name     string
	explicit bool // named by --s3-profile / AWS_PROFILE
	keys     map[string]string
}

func (p profile) get(key string) string { return p.keys[key] }

// unsupportedProfileKeys name the profile settings pgb does not implement, and what
// they are.
var unsupportedProfileKeys = []struct{ key, what string }{
	{"sso_session", "an SSO login"},
	{"sso_start_url", "an SSO login"},
	{"sso_account_id", "an SSO login"},
	{"login_session", "a console login session"},
	{"credential_process", "a credential_process"},
	{"source_profile", "an assumed role (source_profile)"},
	{"credential_source", "an assumed role (credential_source)"},
}

// credentials is the profile's provider, nil when it names no credentials.
func (p profile) credentials(region string, client *http.Client) (aws.CredentialsProvider, error) {
	id, secret := p.get("aws_access_key_id"), p.get("aws_secret_access_key")
	switch {
	case id != "" || secret != "":
		if id == "" || secret == "" {
			return nil, fmt.Errorf("AWS profile %q has only one of aws_access_key_id and aws_secret_access_key: give both", p.name)
		}
		return credentials.NewStaticCredentialsProvider(id, secret, p.get("aws_session_token")), nil
	case p.get("web_identity_token_file") != "":
		if p.get("role_arn") == "" {
			return nil, fmt.Errorf("AWS profile %q has web_identity_token_file but no role_arn: add the role to assume", p.name)
		}
		return webIdentity(p.get("web_identity_token_file"), p.get("role_arn"), p.get("role_session_name"), region, client), nil
	}
	for _, u := range unsupportedProfileKeys {
		if p.get(u.key) != "" {
			return nil, fmt.Errorf("AWS profile %q uses %s (%s), which pgb does not support: give pgb static keys (e.g. from `aws configure export-credentials --profile %s --format env`), web identity, or a container or instance role", p.name, u.what, u.key, p.name)
		}
	}
	if p.get("role_arn") != "" {
		return nil, fmt.Errorf("AWS profile %q assumes role_arn without web_identity_token_file, which pgb does not support: give pgb the role's credentials another way (static keys, web identity, a container or instance role)", p.name)
	}
	return nil, nil
}

// loadProfile reads the named profile (or "default") from the shared files. A profile
// named explicitly must exist in one of them; a missing file is no error.
func loadProfile(name string, env awsEnv) (profile, error) {
	p := profile{name: name, explicit: name != "", keys: map[string]string{}}
	if p.name == "" {
		p.name = "default"
	}
	home := env("HOME")
	cfgFile, credFile := env("AWS_CONFIG_FILE"), env("AWS_SHARED_CREDENTIALS_FILE")
	// The default files under HOME may sit in a directory this user cannot search
	// (PostgreSQL's restore_command runs as postgres with the HOME of whoever started
	// the server, say /root): like a missing file, that is no profile. A file named by
	// AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE must be readable. (So is a HOME that
	// is not a directory.)
	defaultCfg, defaultCred := cfgFile == "", credFile == ""
	if cfgFile == "" && home != "" {
		cfgFile = filepath.Join(home, ".aws", "config")
	}
	if credFile == "" && home != "" {
		credFile = filepath.Join(home, ".aws", "credentials")
	}
	found := false
	// The config file first: the credentials file's keys replace its keys.
	for _, f := range []struct {
		path         string
		config, home bool
	}{{cfgFile, true, defaultCfg}, {credFile, false, defaultCred}} {
		if f.path == "" {
			continue
		}
		keys, ok, err := readProfile(f.path, p.name, f.config)
		if f.home && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR)) {
			continue
		}
		if err != nil {
			return profile{}, err
		}
		found = found || ok
		for k, v := range keys {
			p.keys[k] = v
		}
	}
	if p.explicit && !found {
		return profile{}, fmt.Errorf("AWS profile %q not found in %s or %s: check --s3-profile / AWS_PROFILE", p.name, cfgFile, credFile)
	}
	return p, nil
}

// readProfile returns the keys of one profile of an INI-style AWS file. In the config
// file a profile's section is [profile NAME] ([default] or [profile default] for the
// default one); in the credentials file it is [NAME]. Indented lines (a service's
// nested settings) and comments are skipped.
func readProfile(path, name string, configFile bool) (map[string]string, bool, error) {
	b, err := readBounded(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the AWS shared file %s: %w", path, err)
	}
	keys := map[string]string{}
	in, found := false, false
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
				return nil, false, fmt.Errorf("AWS shared file %s: section line %q has no closing ]", path, line)
			}
			in = sectionProfile(strings.TrimSpace(line[1:end]), configFile) == name
			found = found || in
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			continue // a nested setting (e.g. under "s3 =")
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("AWS shared file %s: %w", path, err)
	}
	return keys, found, nil
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
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only: a Close error cannot lose data
	b, err := io.ReadAll(io.LimitReader(f, maxSharedFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSharedFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSharedFileSize)
	}
	return b, nil
}
