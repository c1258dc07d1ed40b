package integration

import (
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// faultProxy sits between pgb and a real object-store server and breaks a share of the
// requests the way real networks do: 503 SlowDown answers, connections reset before an
// answer, and response bodies cut off short of their Content-Length. Decisions come
// from a seeded source, so a run is reproducible; every fault is counted. In hold mode
// (holdRequests) it also keeps chosen requests waiting until the test releases them.
type faultProxy struct {
	URL string // what pgb uses as its endpoint

	mu       sync.Mutex
	rng      *rand.Rand
	failRate float64 // share of requests that get a fault
	faults   atomic.Int64
	requests atomic.Int64
	hold     atomic.Pointer[hold]
	// down: every request is answered by a connection reset, as by a server that
	// was stopped (setDown).
	down atomic.Bool
}

// setDown makes the store behind the proxy look stopped (every connection reset) or
// back up.
func (p *faultProxy) setDown(down bool) { p.down.Store(down) }

// hold is the proxy's "hold" mode: requests it matches are read in full and then left
// unanswered until the test releases them (or the client gives up on them): a client
// cannot finish what needs their answers before the release.
type hold struct {
	match     func(*http.Request) bool
	arrived   chan struct{} // closed when the first held request has been read
	released  chan struct{} // closed by release
	arriveOne sync.Once
	releaseIt sync.Once
}

// holdRequests makes the proxy hold every request match selects until release is
// called; the requests that follow the release pass through.
func (p *faultProxy) holdRequests(match func(*http.Request) bool) *hold {
	h := &hold{match: match, arrived: make(chan struct{}), released: make(chan struct{})}
	p.hold.Store(h)
	return h
}

// release answers the held requests with 503 SlowDown (the client may retry) and lets
// the next ones through.
func (h *hold) release() { h.releaseIt.Do(func() { close(h.released) }) }

func (h *hold) holds(r *http.Request) bool {
	select {
	case <-h.released:
		return false
	default:
		return h.match(r)
	}
}

func (h *hold) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body) // the request is held whole; a broken body changes nothing
	h.arriveOne.Do(func() { close(h.arrived) })
	select {
	case <-r.Context().Done(): // the client gave up on it
	case <-h.released:
		writeSlowDown(w)
	}
}

func writeSlowDown(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Retry-After", "0")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
}

func startFaultProxy(t *testing.T, target string, failRate float64, seed int64) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{rng: rand.New(rand.NewSource(seed)), failRate: failRate}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if h := p.hold.Load(); h != nil && h.holds(r) {
			h.serve(w, r)
			return
		}
		fault := p.pick()
		if p.down.Load() {
			fault = "reset"
		}
		switch fault {
		case "503":
			p.faults.Add(1)
			writeSlowDown(w)
		case "reset":
			p.faults.Add(1)
			_, _ = io.Copy(io.Discard, r.Body) // drain before the reset; its error changes nothing
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					if tc, ok := conn.(*net.TCPConn); ok {
						_ = tc.SetLinger(0) // RST, not FIN; a FIN is a fault too
					}
					conn.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
		case "truncate":
			p.faults.Add(1)
			rp.ServeHTTP(&truncatingWriter{ResponseWriter: w, method: r.Method}, r)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *faultProxy) pick() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rng.Float64() >= p.failRate {
		return ""
	}
	return []string{"503", "reset", "truncate"}[p.rng.Intn(3)]
}

// truncatingWriter passes on the status and headers (Content-Length included) but only
// half of a GET body, then breaks the connection.
type truncatingWriter struct {
	http.ResponseWriter
	method  string
	limit   int64
	written int64
	cut     bool
}

func (w *truncatingWriter) WriteHeader(code int) {
	if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && w.method == http.MethodGet && code < 300 && n > 1 {
		w.limit = n / 2
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *truncatingWriter) Write(b []byte) (int, error) {
	if w.limit == 0 || w.cut {
		if w.cut {
			return 0, io.ErrClosedPipe
		}
		return w.ResponseWriter.Write(b)
	}
	if w.written+int64(len(b)) > w.limit {
		b = b[:w.limit-w.written]
		_, _ = w.ResponseWriter.Write(b) // the connection is cut next anyway
		w.cut = true
		if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		return 0, io.ErrClosedPipe
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}
