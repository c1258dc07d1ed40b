package s3test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
)

// FaultyTransport is an http.RoundTripper that breaks some requests, for tests of
// how the S3 store and the layers above it cope with a misbehaving server. Install it
// with s3.Config.WrapTransport:
//
//	ft := &s3test.FaultyTransport{Prob: 0.2, Status: 503, Seed: 1}
//	cfg.WrapTransport = ft.Wrap
//
// Each eligible request (see Match) is chosen to fail by FailEvery or Prob, or always
// when both are zero. A chosen request fails in the first way set:
//   - Reset: the round trip fails with a connection reset, without reaching Base;
//   - Status: it is answered with that status and an S3 error document (503:
//     SlowDown, 500: InternalError, else ServiceUnavailable), without reaching Base;
//   - TruncateAfter: it goes to Base, and the response body ends cleanly (io.EOF)
//     after that many bytes, while Content-Length still announces them all.
//
// With none of them set the transport only counts requests. It is safe for
// concurrent use. Configure it before the first request.
type FaultyTransport struct {
	Base http.RoundTripper // nil: http.DefaultTransport
	// Match, if set, limits the faults to requests it accepts; others pass unharmed
	// and are not counted.
	Match func(*http.Request) bool
	// FailEvery n > 0 chooses every n-th eligible request (the n-th, 2n-th, …).
	FailEvery int
	// Prob in (0, 1] chooses each eligible request with this probability, drawn from
	// a source seeded with Seed.
	Prob float64
	Seed uint64

	Reset         bool
	Status        int
	TruncateAfter int64

	mu       sync.Mutex
	rng      *rand.Rand
	eligible int
	faults   int
}

// Wrap sets base as the transport's Base and returns the transport: the signature of
// s3.Config.WrapTransport.
func (f *FaultyTransport) Wrap(base http.RoundTripper) http.RoundTripper {
	f.Base = base
	return f
}

// Faults returns how many requests were broken so far.
func (f *FaultyTransport) Faults() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults
}

// Requests returns how many eligible requests were seen so far.
func (f *FaultyTransport) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.eligible
}

// RoundTrip implements http.RoundTripper.
func (f *FaultyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := f.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if !f.choose(req) {
		return base.RoundTrip(req)
	}
	switch {
	case f.Reset:
		closeBody(req)
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	case f.Status != 0:
		closeBody(req)
		return errorResponse(req, f.Status), nil
	case f.TruncateAfter > 0:
		resp, err := base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		resp.Body = &truncatedBody{rc: resp.Body, left: f.TruncateAfter}
		return resp, nil
	}
	return base.RoundTrip(req)
}

// choose decides whether req is broken, and counts it.
func (f *FaultyTransport) choose(req *http.Request) bool {
	if f.Match != nil && !f.Match(req) {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.eligible++
	var hit bool
	switch {
	case f.FailEvery > 0:
		hit = f.eligible%f.FailEvery == 0
	case f.Prob > 0:
		if f.rng == nil {
			f.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
		}
		hit = f.rng.Float64() < f.Prob
	default:
		hit = true
	}
	if hit && (f.Reset || f.Status != 0 || f.TruncateAfter > 0) {
		f.faults++
		return true
	}
	return false
}

// closeBody closes the request body, as RoundTrip must even when it fails.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close() // best effort: the injected failure is the result
	}
}

// errorResponse is an S3 error document with the given status.
func errorResponse(req *http.Request, status int) *http.Response {
	code, msg := "ServiceUnavailable", "Service is unable to handle request."
	switch status {
	case http.StatusServiceUnavailable:
		code, msg = "SlowDown", "Please reduce your request rate."
	case http.StatusInternalServerError:
		code, msg = "InternalError", "We encountered an internal error. Please try again."
	}
	return errorDocument(req, status, code, msg)
}

// errorDocument is an S3 error response with the given status, code and message.
func errorDocument(req *http.Request, status int, code, msg string) *http.Response {
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><RequestId>faulty</RequestId></Error>`, code, msg)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/xml"}, "X-Amz-Request-Id": {"faulty"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// truncatedBody ends with a clean io.EOF after left bytes.
type truncatedBody struct {
	rc   io.ReadCloser
	left int64
}

func (t *truncatedBody) Read(p []byte) (int, error) {
	if t.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.left {
		p = p[:t.left]
	}
	n, err := t.rc.Read(p)
	t.left -= int64(n)
	return n, err
}

func (t *truncatedBody) Close() error { return t.rc.Close() }
