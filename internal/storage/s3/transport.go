package s3

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/time/rate"
)

// defaultDialTimeout bounds connecting when Config.RequestTimeout is zero.
const defaultDialTimeout = 30 * time.Second

// newTransport returns the store's one connection pool: enough idle connections per
// host for several uploads' parts in flight, and Config.RequestTimeout applied to
// connecting and to the wait for response headers.
func newTransport(cfg Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dial := defaultDialTimeout
	if cfg.RequestTimeout > 0 {
		dial = min(dial, cfg.RequestTimeout)
		t.ResponseHeaderTimeout = cfg.RequestTimeout
		t.TLSHandshakeTimeout = min(t.TLSHandshakeTimeout, cfg.RequestTimeout)
	}
	t.DialContext = (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext
	t.MaxIdleConnsPerHost = max(16, 4*cfg.Concurrency)
	t.MaxIdleConns = max(t.MaxIdleConns, t.MaxIdleConnsPerHost)
	return t
}

// wrapTransport adds the test hook, the body length check and the rate limit around
// the pool. The limit is outermost, so that every attempt the SDK makes is counted;
// the length check sits right above the pool (and the hook), below the SDK's checksum
// validation, so that a body cut short is reported as such.
func wrapTransport(cfg Config, base *http.Transport) http.RoundTripper {
	var rt http.RoundTripper = base
	if cfg.WrapTransport != nil {
		rt = cfg.WrapTransport(rt)
	}
	rt = lengthChecked{rt}
	if cfg.RateLimit > 0 {
		rt = &limitedTransport{base: rt, lim: rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateLimit)}
	}
	return rt
}

// limitedTransport waits for a token before each request.
type limitedTransport struct {
	base http.RoundTripper
	lim  *rate.Limiter
}

func (l *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := l.lim.Wait(req.Context()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close the body, even on errors
		}
		return nil, fmt.Errorf("waiting for the request rate limit (--s3-rate-limit): %w", err)
	}
	return l.base.RoundTrip(req)
}

// lengthChecked makes a response body that ends before its Content-Length fail with
// io.ErrUnexpectedEOF. net/http does so for bodies it reads off the wire; this covers
// whatever sits between (proxies in tests, fault injection).
type lengthChecked struct{ base http.RoundTripper }

func (l lengthChecked) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	if err == nil && resp.ContentLength > 0 && req.Method != http.MethodHead {
		resp.Body = &lengthBody{rc: resp.Body, left: resp.ContentLength}
	}
	return resp, err
}

type lengthBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		return n, fmt.Errorf("response body ended %d bytes short of its Content-Length: %w", b.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (b *lengthBody) Close() error { return b.rc.Close() }
