package gcstest

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Faults is an http.RoundTripper that hands requests to Next and spoils a share of
// them, as a flaky network or an overloaded server would. Each request draws at most
// one fault, in the order of the fields below, from a generator seeded with Seed. It is
// safe for concurrent use; set the fields before the first request.
type Faults struct {
	// Next carries the requests that are not failed; nil means http.DefaultTransport.
	Next http.RoundTripper
	// Seed seeds the draws, for reproducible runs.
	Seed uint64
	// Match, if set, limits the faults to the requests it accepts.
	Match func(*http.Request) bool

	// Fail is the share (0 to 1) of requests answered with status FailCode
	// (default 503 Service Unavailable) without reaching the server.
	Fail     float64
	FailCode int
	// Reset is the share of requests that fail with a connection reset without
	// reaching the server.
	Reset float64
	// Truncate is the share of successful responses with a body that deliver only the
	// first half of it, while Content-Length still announces all of it. The body then
	// ends with TruncateErr: nil means a clean io.EOF (a lying proxy, caught only by
	// counting); io.ErrUnexpectedEOF is what a broken connection gives.
	Truncate    float64
	TruncateErr error

	once     sync.Once
	mu       sync.Mutex
	rng      *rand.Rand
	injected atomic.Int64
}

// Injected is the number of faults injected so far.
func (f *Faults) Injected() int64 { return f.injected.Load() }

// draw reports whether an event of probability p happens.
func (f *Faults) draw(p float64) bool {
	if p <= 0 {
		return false
	}
	f.once.Do(func() { f.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15)) })
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < p
}

// RoundTrip implements http.RoundTripper.
func (f *Faults) RoundTrip(req *http.Request) (*http.Response, error) {
	next := f.Next
	if next == nil {
		next = http.DefaultTransport
	}
	if f.Match != nil && !f.Match(req) {
		return next.RoundTrip(req)
	}
	switch {
	case f.draw(f.Fail):
		f.injected.Add(1)
		closeBody(req)
		return f.failResponse(req), nil
	case f.draw(f.Reset):
		f.injected.Add(1)
		closeBody(req)
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}
	resp, err := next.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.ContentLength < 2 || resp.StatusCode/100 != 2 || !f.draw(f.Truncate) {
		return resp, err
	}
	f.injected.Add(1)
	end := f.TruncateErr
	if end == nil {
		end = io.EOF
	}
	resp.Body = &truncated{r: io.LimitReader(resp.Body, resp.ContentLength/2), c: resp.Body, end: end}
	return resp, nil
}

func (f *Faults) failResponse(req *http.Request) *http.Response {
	code := f.FailCode
	if code == 0 {
		code = http.StatusServiceUnavailable
	}
	body := fmt.Sprintf(`{"error":{"code":%d,"message":"gcstest: injected %s"}}`, code, http.StatusText(code))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", code, http.StatusText(code)),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// closeBody closes a request's body, as a RoundTripper must even when it fails.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close() // best effort: the injected failure is the result
	}
}

// truncated yields r, then end instead of io.EOF.
type truncated struct {
	r   io.Reader
	c   io.Closer
	end error
}

func (t *truncated) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		return n, t.end
	}
	return n, err
}

func (t *truncated) Close() error { return t.c.Close() }
