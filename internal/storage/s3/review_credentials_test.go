package s3

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// What config.LoadDefaultConfig (pgb before bdf5a35) did, and pgb's chain must keep
// unless documented as a change: with no profile named, EKS IRSA's environment
// (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN) comes before the shared files' default
// profile (resolveCredentialChain: env keys, then env web identity, then the profile).
// A pod or host whose ~/.aws holds a default profile for other tools now either runs
// pgb as that profile's user instead of the pod's role, or fails outright.
func TestReviewIRSAEnvironmentComesBeforeTheDefaultProfileAsItDidWithTheSDK(t *testing.T) {
	dir := t.TempDir()
	irsa := map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/pgb"}
	for _, c := range []struct{ name, config, creds string }{
		{"default profile with static keys", "", "[default]\naws_access_key_id = OTHERKEY\naws_secret_access_key = s\n"},
		{"default profile with a credential_process", "[default]\ncredential_process = /usr/bin/vault-aws\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgFile, credFile := filepath.Join(dir, c.name+"-config"), filepath.Join(dir, c.name+"-creds")
			_ = os.WriteFile(cfgFile, []byte(c.config), 0o600)
			_ = os.WriteFile(credFile, []byte(c.creds), 0o600)
			env := func(k string) string {
				switch k {
				case "AWS_CONFIG_FILE":
					return cfgFile
				case "AWS_SHARED_CREDENTIALS_FILE":
					return credFile
				}
				return irsa[k]
			}
			cfg := Config{}.withDefaults()
			if _, err := resolveAWSConfig(cfg, env, http.DefaultClient); err != nil {
				t.Fatalf("IRSA environment with a default profile: %v", err)
			}
			prof, err := loadProfile("", env)
			if err != nil {
				t.Fatal(err)
			}
			p, err := credentialProvider(cfg, prof, env, "us-east-1", http.DefaultClient, endpoint{})
			if err != nil {
				t.Fatal(err)
			}
			if got := typeName(p); got != "web identity" {
				t.Errorf("provider %s, want web identity (the SDK's choice before)", got)
			}
		})
	}
}

// LoadDefaultConfig read the region from AWS_DEFAULT_REGION too (env_config.go); pgb's
// chain now silently falls back to us-east-1 (README: s3-region/AWS_REGION, profile, us-east-1).
func TestReviewAWSDefaultRegionIsStillRead(t *testing.T) {
	dir := t.TempDir()
	env := func(k string) string {
		switch k {
		case "AWS_DEFAULT_REGION":
			return "eu-west-1"
		case "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE":
			return filepath.Join(dir, "none")
		case "AWS_EC2_METADATA_DISABLED":
			return "true"
		}
		return ""
	}
	awsCfg, err := resolveAWSConfig(Config{}.withDefaults(), env, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if awsCfg.Region != "eu-west-1" {
		t.Errorf("region %q with AWS_DEFAULT_REGION=eu-west-1, want eu-west-1 (as before the chain was pgb's own)", awsCfg.Region)
	}
}

// LoadDefaultConfig honoured AWS_ENDPOINT_URL(_S3) and AWS_USE_FIPS_ENDPOINT (and the
// shared config's endpoint_url / use_fips_endpoint). pgb's chain ignores them without a
// word (a code comment only; README does not say it): a host that set them now talks to
// the public, non-FIPS AWS endpoint. Either honour them or refuse with a message.
func TestReviewSDKEndpointSwitchesAreHonouredOrRefusedNotIgnored(t *testing.T) {
	dir := t.TempDir()
	for _, sw := range []map[string]string{
		{"AWS_ENDPOINT_URL": "https://minio.internal:9000"},
		{"AWS_ENDPOINT_URL_S3": "https://minio.internal:9000"},
		{"AWS_USE_FIPS_ENDPOINT": "true"},
	} {
		env := func(k string) string {
			switch k {
			case "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE":
				return filepath.Join(dir, "none")
			case "AWS_EC2_METADATA_DISABLED":
				return "true"
			}
			return sw[k]
		}
		awsCfg, err := resolveAWSConfig(Config{}.withDefaults(), env, http.DefaultClient)
		if err != nil {
			continue // refused with a message: fine
		}
		if awsCfg.BaseEndpoint == nil && len(awsCfg.ConfigSources) == 0 {
			t.Errorf("%v: silently ignored (no endpoint, no FIPS, no error)", sw)
		}
	}
}
