package s3

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgb-project/pgb/internal/storage/retry"
)

// multipartOps are the requests of a multipart upload other than UploadPart. No layer
// above can resend them (the upload is this store's): they are retried by the SDK
// under Config.Retry, the one policy, whatever Config.MaxAttempts says for the other
// requests. UploadPart is retried by sendPart under the same policy, one request per
// attempt, so that attempts do not multiply.
var multipartOps = map[string]bool{
	"CreateMultipartUpload": true, "CompleteMultipartUpload": true, "AbortMultipartUpload": true,
}

// multipartRetries is an API option that gives the multipart operations an SDK
// retryer with p's attempts and backoff, and no client-side retry quota (the policy
// bounds the attempts).
func multipartRetries(p retry.Policy) func(*middleware.Stack) error {
	retryer := awsretry.NewStandard(func(o *awsretry.StandardOptions) {
		o.MaxAttempts = p.MaxAttempts
		o.Backoff = policyBackoff{p}
		o.RateLimiter = ratelimit.None
	})
	return func(stack *middleware.Stack) error {
		if !multipartOps[stack.ID()] {
			return nil
		}
		_, err := stack.Finalize.Swap("Retry", awsretry.NewAttemptMiddleware(retryer, smithyhttp.RequestCloner))
		return err
	}
}

// policyBackoff is the policy's backoff as the SDK's BackoffDelayer.
type policyBackoff struct{ p retry.Policy }

func (b policyBackoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	return b.p.Backoff(attempt), nil
}
