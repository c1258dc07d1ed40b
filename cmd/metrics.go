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
		Description: "Listens on --listen (default 127.0.0.1:9187) and serves /metrics: what pgb status says of each\n" +
			"repository, as metrics (docs/metrics.md lists them, with example alert rules). The repository is\n" +
			"read at most once every --interval, when a scrape asks and the last read is older; scrapes in\n" +
			"between get that read's figures. A repository that cannot be read is pgb_repository_up 0, with\n" +
			"the figures of the last read that worked. SIGTERM or SIGINT stop it (exit 0).\n\n" +
			"For cron and node_exporter's textfile collector instead: pgb status --prom FILE.",
		Flags: append(flags(config.KeyPGData),
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9187", Usage: "serve on `ADDR` (host:port; :9187 for every interface)"},
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
			s := &metricsSource{envs: e.selected(), interval: c.Duration("interval"), timeout: c.Duration("read-timeout"), ctx: c.Context}
			return serveMetrics(c.Context, ln, s, e)
		}),
	}
}

// metricsSource reads every selected repository's status, at most once per interval,
// one read at a time.
type metricsSource struct {
	envs     []*env
	interval time.Duration
	timeout  time.Duration
	ctx      context.Context

	mu   sync.Mutex
	last time.Time
	repo []metrics.Repo
}

func (s *metricsSource) repos() []metrics.Repo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() && time.Since(s.last) < s.interval {
		return s.repo
	}
	s.last = time.Now()
	out := make([]metrics.Repo, len(s.envs))
	for i, e := range s.envs {
		ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		r, err := e.gatherStatus(ctx, nil, 8*24*time.Hour)
		cancel()
		m := e.metricsOf(r, err)
		if err != nil {
			e.log.Warn("metrics: the repository could not be read", "repo", e.cfg.Repo, "err", err)
			if i < len(s.repo) && s.repo[i].Report != nil {
				// Keep the last figures that were read: their timestamps tell their age.
				m.Report, m.Gathered, m.URL = s.repo[i].Report, s.repo[i].Gathered, s.repo[i].URL
			}
		}
		out[i] = m
	}
	s.repo = out
	return out
}

// serveMetrics serves /metrics on ln until ctx ends (a signal: exit 0).
func serveMetrics(ctx context.Context, ln net.Listener, s *metricsSource, e *env) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...)
		var b bytes.Buffer
		if err := metrics.Encode(&b, format, s.repos()); err != nil {
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
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil // stopped by a signal: done (exit 0)
}
