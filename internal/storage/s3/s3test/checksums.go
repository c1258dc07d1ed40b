package s3test

import (
	"net/http"
	"strings"
	"sync/atomic"
)

// ChecksumRejecting is an http.RoundTripper that answers like an S3-compatible store
// that predates the SDK's default request checksums: any request carrying an
// x-amz-checksum-* (x-amz-checksum-mode included), x-amz-sdk-checksum-algorithm or
// x-amz-trailer header is refused with 400 InvalidArgument ("Unsupported header …")
// without reaching Base. Install it with s3.Config.WrapTransport:
//
//	cr := &s3test.ChecksumRejecting{}
//	cfg.WrapTransport = cr.Wrap
type ChecksumRejecting struct {
	Base     http.RoundTripper // nil: http.DefaultTransport
	rejected atomic.Int64
}

// Wrap sets base as Base and returns the transport.
func (c *ChecksumRejecting) Wrap(base http.RoundTripper) http.RoundTripper {
	c.Base = base
	return c
}

// Rejected returns how many requests were refused so far.
func (c *ChecksumRejecting) Rejected() int { return int(c.rejected.Load()) }

// RoundTrip implements http.RoundTripper.
func (c *ChecksumRejecting) RoundTrip(req *http.Request) (*http.Response, error) {
	for name := range req.Header {
		n := strings.ToLower(name)
		if strings.HasPrefix(n, "x-amz-checksum-") || n == "x-amz-sdk-checksum-algorithm" || n == "x-amz-trailer" {
			c.rejected.Add(1)
			closeBody(req)
			return errorDocument(req, http.StatusBadRequest, "InvalidArgument",
				"Unsupported header '"+n+"' received for this API call."), nil
		}
	}
	base := c.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(req)
}
