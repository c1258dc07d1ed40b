package s3

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// sdkErr builds the error the SDK returns for an HTTP error response.
func sdkErr(status int, code, msg string, header http.Header) error {
	if header == nil {
		header = http.Header{}
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: header}},
		Err:      &smithy.GenericAPIError{Code: code, Message: msg},
	}}
}

func TestTranslateError(t *testing.T) {
	const secret = "sEcReT-aaaaBBBBccccDDDD"
	st, err := New(t.Context(), Config{
		Bucket: "bkt", Prefix: "p", Region: "us-east-1", Endpoint: "http://127.0.0.1:9",
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name      string
		err       error
		is        error // a sentinel the result must wrap, if any
		permanent bool
		retryable bool
		mentions  []string
	}{
		{"missing key", sdkErr(404, "NoSuchKey", "", nil), storage.ErrNotExist, false, false, nil},
		{"missing key, HEAD", sdkErr(404, "NotFound", "", nil), storage.ErrNotExist, false, false, nil},
		{"precondition", sdkErr(412, "PreconditionFailed", "", nil), storage.ErrExist, false, false, nil},
		{"conditional conflict", sdkErr(409, "ConditionalRequestConflict", "", nil), storage.ErrExist, false, false, nil},
		{"range", sdkErr(416, "InvalidRange", "", nil), storage.ErrInvalidRange, false, false, nil},
		{"no bucket", sdkErr(404, "NoSuchBucket", "", nil), nil, true, false, []string{`"bkt"`, "--repo"}},
		{"bad bucket name", sdkErr(400, "InvalidBucketName", "", nil), nil, true, false, []string{`"bkt"`, "--repo"}},
		{"bad key id", sdkErr(403, "InvalidAccessKeyId", "", nil), nil, true, false, []string{"credentials", "AWS_ACCESS_KEY_ID"}},
		{"bad signature", sdkErr(403, "SignatureDoesNotMatch", "", nil), nil, true, false, []string{"credentials", "AWS_SECRET_ACCESS_KEY"}},
		{"denied", sdkErr(403, "AccessDenied", "Access Denied", nil), nil, true, false, []string{"s3://bkt/p", "credentials"}},
		{"denied, HEAD", sdkErr(403, "Forbidden", "", nil), nil, true, false, []string{"credentials"}},
		{"redirect", sdkErr(301, "PermanentRedirect", "", http.Header{"X-Amz-Bucket-Region": {"eu-west-1"}}), nil, true, false, []string{"PGB_S3_REGION", "eu-west-1", "us-east-1"}},
		{"region, HEAD", sdkErr(400, "BadRequest", "", http.Header{"X-Amz-Bucket-Region": {"eu-west-1"}}), nil, true, false, []string{"PGB_S3_REGION", "eu-west-1"}},
		{"region header", sdkErr(400, "AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong; expecting 'eu-west-1'", nil), nil, true, false, []string{"PGB_S3_REGION"}},
		{"slow down", sdkErr(503, "SlowDown", "", nil), nil, false, true, []string{"SlowDown"}},
		{"internal", sdkErr(500, "InternalError", "", nil), nil, false, true, nil},
		{"refused", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: refused}}, nil, false, true, []string{"PGB_S3_ENDPOINT", "http://127.0.0.1:9"}},
		{"cancelled", &smithy.OperationError{Err: &smithy.CanceledError{Err: context.Canceled}}, context.Canceled, false, false, nil},
		{"echoed secret", sdkErr(500, "InternalError", "signed with "+secret, nil), nil, false, true, []string{"[REDACTED]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := st.translateError("get", "k", tc.err)
			if tc.is != nil && !errors.Is(got, tc.is) {
				t.Errorf("%v does not wrap %v", got, tc.is)
			}
			if storage.IsPermanent(got) != tc.permanent {
				t.Errorf("%v: permanent = %v, want %v", got, !tc.permanent, tc.permanent)
			}
			if retry.Retryable(got) != tc.retryable {
				t.Errorf("%v: retryable = %v, want %v", got, !tc.retryable, tc.retryable)
			}
			msg := got.Error()
			if !strings.HasPrefix(msg, `s3: get "k"`) || strings.Contains(msg, secret) || strings.Contains(msg, "\n") {
				t.Errorf("message %q: want one line starting with the operation and without the secret", msg)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
		})
	}
	if st.translateError("get", "k", nil) != nil {
		t.Error("translateError(nil) != nil")
	}
}
