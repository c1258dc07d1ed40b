package s3

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgb-project/pgb/internal/storage"
)

// translateError is the one place where SDK errors become pgb's: op and key (List:
// the prefix) say what failed. The result
//   - wraps storage.ErrNotExist, ErrExist or ErrInvalidRange for those answers;
//   - is marked storage.Permanent, with a message naming the setting to fix, for
//     refused credentials, denied access, a missing or invalid bucket and a wrong
//     region, which another attempt cannot fix;
//   - otherwise wraps err unchanged in meaning (so context errors and network errnos
//     stay visible to errors.Is and retry.Retryable), adding the endpoint setting to
//     the message when the endpoint cannot be reached.
//
// Messages never contain the secret key or session token, even if the server echoes
// them.
func (s *Store) translateError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("s3: %s %q", op, key)
	var code string
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	status := 0
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	brief := code // what the server said, for messages: the code and its message
	if apiErr != nil && apiErr.ErrorMessage() != "" {
		brief = code + ": " + apiErr.ErrorMessage()
	}
	if brief == "" && status != 0 {
		brief = fmt.Sprintf("HTTP %d", status)
	}
	repo := s.cfg.location()
	bucketRegion := "" // S3 names the bucket's region when it refuses a request for it
	if respErr != nil && respErr.Response != nil {
		bucketRegion = respErr.Response.Header.Get("X-Amz-Bucket-Region")
	}

	switch {
	case code == "NoSuchBucket":
		return s.permanent(err, "%s: bucket %q does not exist%s: check --repo (s3://bucket/prefix)", where, s.cfg.Bucket, s.onEndpoint())
	case code == "NoSuchKey", code == "NotFound", status == 404 && code == "":
		return fmt.Errorf("%s: %w", where, storage.ErrNotExist)
	case code == "PreconditionFailed", status == 412, code == "ConditionalRequestConflict":
		// 409 ConditionalRequestConflict: a concurrent conditional write to the same
		// key was under way. AWS suggests retrying, which would find the other
		// writer's object in the common case; as storage.ErrExist the caller learns
		// at once that this write did not happen and can read what is there.
		return fmt.Errorf("%s: %w", where, storage.ErrExist)
	case code == "InvalidRange", status == 416:
		return fmt.Errorf("%s: %w", where, storage.ErrInvalidRange)
	case code == "InvalidBucketName":
		return s.permanent(err, "%s: bucket name %q is invalid (%s): check --repo (s3://bucket/prefix)", where, s.cfg.Bucket, brief)
	case code == "InvalidAccessKeyId", code == "SignatureDoesNotMatch", code == "InvalidToken",
		code == "ExpiredToken", code == "TokenRefreshRequired", code == "InvalidSecurity":
		return s.permanent(err, "%s: the credentials were refused (%s): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (or --s3-access-key-id / --s3-secret-access-key / --s3-session-token, AWS_PROFILE / --s3-profile)", where, code)
	case code == "AuthorizationHeaderMalformed", code == "PermanentRedirect", code == "IllegalLocationConstraintException",
		status == 301, bucketRegion != "" && bucketRegion != s.region():
		hint := ""
		if bucketRegion != "" {
			hint = fmt.Sprintf(" (the server says %q)", bucketRegion)
		}
		return s.permanent(err, "%s: bucket %q is not in region %q%s: set PGB_S3_REGION / --s3-region to the bucket's region", where, s.cfg.Bucket, s.region(), hint)
	case code == "RequestTimeTooSkewed":
		// The SDK corrects its clock offset from the answer's Date: the next attempt
		// (the retry layer's) is signed with the corrected time.
		return fmt.Errorf("%s: the store says this machine's clock is off (%s): retrying with its time; fix the clock (NTP): %w", where, code, err)
	case code == "AccessDenied", code == "AllAccessDisabled", code == "AccountProblem", status == 403:
		return s.permanent(err, "%s: access to %s denied (%s): check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE / --s3-profile) and their permissions on the bucket", where, repo, brief)
	case (code == "InvalidArgument" || code == "InvalidRequest" || code == "NotImplemented" || status == 501) &&
		s.cfg.Checksum == ChecksumWhenSupported && mentionsChecksums(brief):
		return s.permanent(err, "%s: the store refused the request (%s): it may not support the SDK's request checksums: set s3-checksum: when-required (PGB_S3_CHECKSUM); pgb check tells", where, brief)
	case status == 400 && code == "BadRequest":
		// The answer to a HEAD request has no body, so no reason: S3 answers so for an
		// invalid session token, among other things.
		return s.permanent(err, "%s: the request was refused (HTTP 400, no reason given): check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE / --s3-profile) and PGB_S3_REGION / --s3-region", where)
	}

	var opErr *net.OpError
	var dnsErr *net.DNSError
	if apiErr == nil && (errors.As(err, &opErr) || errors.As(err, &dnsErr)) {
		// Left retryable: the network may come back. The message says which setting
		// decides where pgb connects.
		return s.wrap(err, "%s: cannot reach %s: check PGB_S3_ENDPOINT / --s3-endpoint (and PGB_S3_REGION) and the network: %v", where, s.endpointName(), err)
	}
	if status >= 400 && status < 500 && status != 408 && status != 409 && status != 429 && code != "RequestTimeout" &&
		code != "SlowDown" && code != "NoSuchUpload" {
		// The store refused this request as it is (EntityTooSmall, InvalidPart, a wrong
		// KMS key, 405, 411…): sending it again gets the same answer.
		return s.permanent(err, "%s: the store refused the request (%s)", where, brief)
	}
	if apiErr == nil && strings.Contains(err.Error(), "get identity") {
		return s.wrap(err, "%s: no usable credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE / --s3-profile, or run with an IAM role): %v", where, err)
	}
	return s.wrap(err, "%s: %v", where, err)
}

// mentionsChecksums reports whether a server's refusal is about checksums or the
// headers that carry them.
func mentionsChecksums(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "checksum") || strings.Contains(msg, "x-amz-trailer") ||
		strings.Contains(msg, "header") || strings.Contains(msg, "aws-chunked")
}

// permanent is wrap marked with storage.Permanent.
func (s *Store) permanent(err error, format string, args ...any) error {
	return storage.Permanent(s.wrap(err, format, args...))
}

// wrap gives err the formatted message, with secrets removed, keeping err in the
// chain for errors.Is and errors.As.
func (s *Store) wrap(err error, format string, args ...any) error {
	return &sdkError{msg: s.redact(fmt.Sprintf(format, args...)), err: err}
}

// minSecret is the shortest secret redact looks for: shorter strings would match
// ordinary words (real secret keys have 40 characters).
const minSecret = 8

// redact removes the configured secrets from msg.
func (s *Store) redact(msg string) string {
	for _, secret := range []string{s.cfg.SecretAccessKey, s.cfg.SessionToken} {
		if len(secret) >= minSecret {
			msg = strings.ReplaceAll(msg, secret, "[REDACTED]")
		}
	}
	return msg
}

// onEndpoint describes a custom endpoint for messages, or says nothing for AWS.
func (s *Store) onEndpoint() string {
	if s.cfg.Endpoint == "" {
		return ""
	}
	return " at " + redactURL(s.cfg.Endpoint)
}

// endpointName names the endpoint pgb connects to.
func (s *Store) endpointName() string {
	if s.cfg.Endpoint == "" {
		return "the AWS S3 endpoint of region " + s.region()
	}
	return "the S3 endpoint " + redactURL(s.cfg.Endpoint)
}

// region is the region the client uses.
func (s *Store) region() string { return s.client.Options().Region }

// sdkError is a translated error: a one-line message over the SDK's error.
type sdkError struct {
	msg string
	err error
}

func (e *sdkError) Error() string { return e.msg }
func (e *sdkError) Unwrap() error { return e.err }
