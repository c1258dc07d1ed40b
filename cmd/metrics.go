package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/metrics"
)

func metricsCommand() *cli.Command {
	return &cli.Command{
		Name:  "metrics",
		Usage: "serve Prometheus metrics of the repository (window, newest WAL, gaps, backups, drills) over HTTP",
		Description: "Listens on --listen (default 127.0.0.1:9863) and serves /metrics: what pgb status says of each\n" +
			"repository, as metrics (docs/metrics.md lists them, with example alert rules). The repository is\n" +
			"read at most once every --interval, in the background, when a scrape asks and the last read is\n" +
			"older: scrapes get the figures of the last read that finished at once (only the first waits).\n" +
			"A repository that cannot be read is pgb_repository_up 0, with the figures of the last read that\n" +
			"worked. SIGTERM or SIGINT stop it (exit 0).\n\n" +
			"For cron and node_exporter's textfile collector instead: pgb status --prom FILE.",
		Flags: append(flags(config.KeyPGData),
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9863", Usage: "serve on `ADDR` (host:port; :9863 for every interface; 9187 is postgres_exporter's, often on the same host)"},
			&cli.DurationFlag{Name: "interval", Value: time.Minute, Usage: "read the repository at most once per `DURATION`"},
			&cli.DurationFlag{Name: "read-timeout", Value: 5 * time.Minute, Usage: "give up a read of the repository after `DURATION` (pgb_repository_up 0)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			if c.Duration("interval") <= 0 || c.Duration("read-timeout") <= 0 {
				return usagef("--interval and --read-timeout must be positive durations, e.g. 1m")
			}
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("--listen %s: %w", c.String("listen"), err)
			}
			envs := e.selected()
			s := &metricsSource{n: len(envs), interval: c.Duration("interval"), timeout: c.Duration("read-timeout"), ctx: c.Context, now: time.Now,
				readOne: func(ctx context.Context, i int) metrics.Repo {
					r, label, err := envs[i].gatherStatus(ctx, nil, 8*24*time.Hour)
					if err != nil {
						envs[i].log.Warn("metrics: the repository could not be read", "repo", label, "err", err)
					}
					return envs[i].metricsOf(r, label, err)
				}}
			return serveMetrics(c.Context, ln, s, e)
		}),
	}
}

// metricsSource reads every selected repository's status in the background, at most
// once per interval: a scrape never waits for a read, but for the first one (as long as
// its request lasts), and gets the figures of the last read that finished.
type metricsSource struct {
	n        int                                           // repositories
	readOne  func(ctx context.Context, i int) metrics.Repo // reads repository i
	interval time.Duration
	timeout  time.Duration
	ctx      context.Context // the server's: a read outlives the scrape that started it
	now      func() time.Time

	mu      sync.Mutex
	last    time.Time      // when the last read started
	repo    []metrics.Repo // the last read's figures; nil before the first
	running chan struct{}  // closed when the read under way ends; nil: none
	wg      sync.WaitGroup
}

// repos returns the last figures read, starting a read when they are older than the
// interval; before the first read finishes it waits for it until ctx ends.
func (s *metricsSource) repos(ctx context.Context) []metrics.Repo {
	s.mu.Lock()
	if s.running == nil && (s.last.IsZero() || s.now().Sub(s.last) >= s.interval) {
		s.last, s.running = s.now(), make(chan struct{})
		s.wg.Add(1)
		go s.read(s.running)
	}
	running, out := s.running, s.repo
	if running != nil && out != nil && s.now().Sub(s.last) > s.hungAfter() {
		// A read that outlived every timeout (a store that ignores them: a hung
		// mount): the last figures, as stale, and the repository down.
		hung := make([]metrics.Repo, len(out))
		for i, m := range out {
			m.Err, m.Stale = fmt.Errorf("the read of the repository started %s ago has not ended", s.now().Sub(s.last).Round(time.Second)), m.Report != nil
			hung[i] = m
		}
		out = hung
	}
	s.mu.Unlock()
	if out != nil || running == nil {
		return out
	}
	select {
	case <-running:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repo == nil {
		return nil // still reading: no series yet (pgb_repository_up comes with the first read)
	}
	return s.repo
}

// hungAfter is how long a read may take before the repositories count as down: each
// repository's read is bounded by timeout, and a minute more.
func (s *metricsSource) hungAfter() time.Duration { return time.Duration(s.n)*s.timeout + time.Minute }

// read reads every repository, one at a time, and publishes the figures.
func (s *metricsSource) read(done chan struct{}) {
	defer s.wg.Done()
	s.mu.Lock()
	prev := s.repo
	s.mu.Unlock()
	out := make([]metrics.Repo, s.n)
	for i := range out {
		ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		m := s.readOne(ctx, i)
		cancel()
		if m.Err != nil {
			if i < len(prev) && prev[i].Report != nil {
				// Keep the last figures read: their timestamps tell their age.
				m.Report, m.Gathered, m.URL, m.Stale = prev[i].Report, prev[i].Gathered, prev[i].URL, true
			}
		}
		out[i] = m
	}
	s.mu.Lock()
	s.repo, s.running = out, nil
	s.mu.Unlock()
	close(done)
}

// serveMetrics serves /metrics on ln until ctx ends (a signal: exit 0).
func serveMetrics(ctx context.Context, ln net.Listener, s *metricsSource, e *env) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...)
		var b bytes.Buffer
		if err := metrics.Encode(&b, format, s.repos(r.Context())); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", string(format))
		_, _ = w.Write(b.Bytes()) // a client that went away is its own problem
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = fmt.Fprintln(w, "pgb metrics: see /metrics") // as above
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	e.log.Info("metrics: serving", "addr", "http://"+ln.Addr().String()+"/metrics")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return fmt.Errorf("metrics: shutting down: %w", err)
	}
	// A read under way ends with ctx, unless the store ignores it: then pgb exits
	// without it rather than hang until systemd kills it.
	ended := make(chan struct{})
	go func() { s.wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		e.log.Warn("metrics: a read of the repository did not end; exiting without it")
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil // stopped by a signal: done (exit 0)
}
