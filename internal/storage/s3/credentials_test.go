package s3

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

const sharedConfig = `# a comment
[default]
region = eu-west-3

[profile prod]
region = eu-central-1
s3 =
  max_concurrent_requests = 20

[profile irsa]
role_arn = arn:aws:iam::123456789012:role/pgb
web_identity_token_file = /var/run/token

[profile sso]
sso_session = corp
sso_account_id = 123456789012

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start

[profile assumed]
role_arn = arn:aws:iam::123456789012:role/pgb
source_profile = prod

[profile regiononly]
region = ap-south-1
`

const sharedCredentials = `[default]
aws_access_key_id = DEFAULTKEY
aws_secret_access_key = defaultsecret

[prod]
aws_access_key_id = PRODKEY
aws_secret_access_key = prodsecret
aws_session_token = prodtoken

[half]
aws_access_key_id = HALFKEY
`

// TestCredentialChain checks which provider and region each configuration selects, and
// that a profile pgb cannot serve is refused with a message instead of being passed
// over for the next provider.
func TestCredentialChain(t *testing.T) {
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	if err := os.WriteFile(cfgFile, []byte(sharedConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credFile, []byte(sharedCredentials), 0o600); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"AWS_CONFIG_FILE": cfgFile, "AWS_SHARED_CREDENTIALS_FILE": credFile}
	noFiles := map[string]string{"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none2")}

	tests := []struct {
		name       string
		cfg        Config
		env        map[string]string
		wantRegion string
		wantKey    string // static credentials expected
		wantType   any    // else the provider's type
		wantErr    string
	}{
		{name: "flags win over the profile", cfg: Config{AccessKeyID: "FLAGKEY", SecretAccessKey: "s", Region: "us-west-2"}, env: files,
			wantRegion: "us-west-2", wantKey: "FLAGKEY"},
		{name: "default profile keys and region", env: files, wantRegion: "eu-west-3", wantKey: "DEFAULTKEY"},
		{name: "named profile: config region, credentials keys", cfg: Config{Profile: "prod"}, env: files,
			wantRegion: "eu-central-1", wantKey: "PRODKEY"},
		{name: "region setting wins over the profile's", cfg: Config{Profile: "prod", Region: "sa-east-1"}, env: files,
			wantRegion: "sa-east-1", wantKey: "PRODKEY"},
		{name: "profile web identity", cfg: Config{Profile: "irsa"}, env: files, wantRegion: DefaultRegion,
			wantType: &stscreds.WebIdentityRoleProvider{}},
		{name: "missing named profile", cfg: Config{Profile: "nosuch"}, env: files, wantErr: `AWS profile "nosuch" not found`},
		{name: "SSO profile refused", cfg: Config{Profile: "sso"}, env: files, wantErr: "uses an SSO login (sso_session), which pgb does not support"},
		{name: "assumed role profile refused", cfg: Config{Profile: "assumed"}, env: files, wantErr: "an assumed role (source_profile)"},
		{name: "half keys refused", cfg: Config{Profile: "half"}, env: files, wantErr: "only one of aws_access_key_id"},
		{name: "region-only profile falls through to the instance role", cfg: Config{Profile: "regiononly"}, env: files,
			wantRegion: "ap-south-1", wantType: &ec2rolecreds.Provider{}},
		{name: "web identity from the environment",
			env:        map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_CONFIG_FILE": noFiles["AWS_CONFIG_FILE"], "AWS_SHARED_CREDENTIALS_FILE": noFiles["AWS_SHARED_CREDENTIALS_FILE"]},
			wantRegion: DefaultRegion, wantType: &stscreds.WebIdentityRoleProvider{}},
		{name: "web identity without a role",
			env:     map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_CONFIG_FILE": noFiles["AWS_CONFIG_FILE"], "AWS_SHARED_CREDENTIALS_FILE": noFiles["AWS_SHARED_CREDENTIALS_FILE"]},
			wantErr: "AWS_ROLE_ARN is not"},
		{name: "ECS task role", env: map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x", "AWS_CONFIG_FILE": noFiles["AWS_CONFIG_FILE"], "AWS_SHARED_CREDENTIALS_FILE": noFiles["AWS_SHARED_CREDENTIALS_FILE"]},
			wantRegion: DefaultRegion, wantType: &endpointcreds.Provider{}},
		{name: "EKS pod identity", env: map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials", "AWS_CONFIG_FILE": noFiles["AWS_CONFIG_FILE"], "AWS_SHARED_CREDENTIALS_FILE": noFiles["AWS_SHARED_CREDENTIALS_FILE"]},
			wantRegion: DefaultRegion, wantType: &endpointcreds.Provider{}},
		{name: "container endpoint on a remote http host refused", env: map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://evil.example/creds", "AWS_CONFIG_FILE": noFiles["AWS_CONFIG_FILE"], "AWS_SHARED_CREDENTIALS_FILE": noFiles["AWS_SHARED_CREDENTIALS_FILE"]},
			wantErr: "only https, or http on the loopback"},
		{name: "nothing configured: instance role", env: noFiles, wantRegion: DefaultRegion, wantType: &ec2rolecreds.Provider{}},
		{name: "nothing configured, IMDS disabled", env: map[string]string{"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": noFiles["AWS_CONFIG_FILE"], "AWS_SHARED_CREDENTIALS_FILE": noFiles["AWS_SHARED_CREDENTIALS_FILE"]},
			wantRegion: DefaultRegion, wantType: noCredentials{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string { return tc.env[k] }
			cfg := tc.cfg.withDefaults()
			awsCfg, err := resolveAWSConfig(cfg, env, http.DefaultClient)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if awsCfg.Region != tc.wantRegion {
				t.Errorf("region = %q, want %q", awsCfg.Region, tc.wantRegion)
			}
			if awsCfg.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenSupported {
				t.Errorf("RequestChecksumCalculation = %v, want the SDK's default, when supported", awsCfg.RequestChecksumCalculation)
			}
			if awsCfg.RetryMaxAttempts != cfg.MaxAttempts {
				t.Errorf("RetryMaxAttempts = %d, want %d", awsCfg.RetryMaxAttempts, cfg.MaxAttempts)
			}
			prof, err := loadProfile(cfg.Profile, env)
			if err != nil {
				t.Fatal(err)
			}
			p, err := credentialProvider(cfg, prof, env, awsCfg.Region, http.DefaultClient, endpoint{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantKey != "" {
				creds, err := awsCfg.Credentials.Retrieve(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if creds.AccessKeyID != tc.wantKey {
					t.Errorf("access key = %q, want %q", creds.AccessKeyID, tc.wantKey)
				}
				if _, ok := p.(credentials.StaticCredentialsProvider); !ok {
					t.Errorf("provider %T, want static", p)
				}
				return
			}
			if got, want := typeName(p), typeName(tc.wantType); got != want {
				t.Errorf("provider %s, want %s", got, want)
			}
		})
	}
}

// typeName names the kind of credential provider v is.
func typeName(v any) string {
	switch v.(type) {
	case *stscreds.WebIdentityRoleProvider:
		return "web identity"
	case *endpointcreds.Provider:
		return "container endpoint"
	case *ec2rolecreds.Provider:
		return "instance role"
	case noCredentials:
		return "none"
	case credentials.StaticCredentialsProvider:
		return "static"
	case aws.CredentialsProvider:
		return "other provider"
	}
	return "not a provider"
}

// TestNoCredentialsSaysWhy checks the end of an empty chain names what to set.
func TestNoCredentialsSaysWhy(t *testing.T) {
	_, err := noCredentials{}.Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AWS_EC2_METADATA_DISABLED") {
		t.Fatalf("err = %v", err)
	}
}

// restore_command runs as postgres with the HOME of whoever started the server (say
// /root, which postgres cannot search): default shared files that cannot be reached
// are no profile, not a failure of every wal-fetch. (Root passes permission checks, so
// the test uses a HOME that is not a directory, which fails the same way.)
func TestUnreachableDefaultSharedFilesAreNoProfile(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "home")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "HOME" {
			return notDir
		}
		return ""
	}
	cfg, err := resolveAWSConfig(Config{AccessKeyID: "K", SecretAccessKey: "S"}, env, http.DefaultClient)
	if err != nil {
		t.Fatalf("static keys with an unreachable HOME: %v", err)
	}
	if cfg.Region != DefaultRegion {
		t.Fatalf("region %q, want %q", cfg.Region, DefaultRegion)
	}
	// A file named explicitly must be readable.
	env2 := func(k string) string {
		if k == "AWS_CONFIG_FILE" {
			return filepath.Join(notDir, "config")
		}
		return ""
	}
	if _, err := resolveAWSConfig(Config{AccessKeyID: "K", SecretAccessKey: "S"}, env2, http.DefaultClient); err == nil {
		t.Fatal("an AWS_CONFIG_FILE that cannot be read was ignored")
	}
}
