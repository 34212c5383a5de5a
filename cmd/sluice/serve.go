package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
	"github.com/sluicehq/sluice/metrics"
)

// serveCmd is sluice serve: the server, with streams under --data-dir on local disk, or
// in NATS JetStream with --nats (cluster mode).
type serveCmd struct {
	Addr               string        `default:"${default_addr}" placeholder:"ADDRESS" help:"Address to listen on (:$$PORT when PORT is set)."`
	DataDir            string        `default:"./data" placeholder:"DIR" predictor:"dir" help:"Directory holding the streams."`
	FsyncInterval      time.Duration `default:"1s" placeholder:"TIME" help:"Longest time acknowledged bytes wait for fsync; 0 fsyncs each write before acknowledging it (closes are always fsynced first)."`
	TailSize           int           `default:"1048576" placeholder:"BYTES" help:"Bytes of each followed stream kept in memory for its followers."`
	MaxStreamSize      int64         `default:"0" placeholder:"BYTES" help:"Largest stream in bytes (413 beyond); 0 for no limit."`
	MaxOpenStreams     int           `default:"0" placeholder:"N" help:"Most open streams (503 beyond); 0 for no limit."`
	MaxFollowers       int           `default:"0" placeholder:"N" help:"Most followers in all (503 beyond); 0 for no limit."`
	MaxStreamFollowers int           `default:"0" placeholder:"N" help:"Most followers of one stream (503 beyond); 0 for no limit."`
	SSEKeepalive       time.Duration `name:"sse-keepalive" default:"15s" placeholder:"TIME" help:"Interval of keepalive comments to idle SSE followers."`
	SSERetry           time.Duration `name:"sse-retry" default:"1s" placeholder:"TIME" help:"Reconnection delay sent to SSE followers."`
	WSPing             time.Duration `name:"ws-ping" default:"30s" placeholder:"TIME" help:"Interval of WebSocket pings; a follower that misses the next is dropped."`
	WriteTimeout       time.Duration `default:"30s" placeholder:"TIME" help:"Longest time one write to a follower may take before it is dropped as stalled."`
	ReadTimeout        time.Duration `default:"5m" placeholder:"TIME" help:"Longest time a publish body may go without bytes (400, bytes kept, stream open)."`
	LongPollTimeout    time.Duration `default:"30s" placeholder:"TIME" help:"Longest time a Durable Streams long-poll waits for bytes before it answers 204."`
	MaxAppend          int64         `default:"33554432" placeholder:"BYTES" help:"Largest Durable Streams append or create body in bytes, read whole before it is stored (413 beyond)."`
	MaxCompressed      int           `default:"32" placeholder:"N" help:"Most whole reads of closed streams compressed at once (gzip or zstd, as the client accepts); beyond, they are answered uncompressed; 0 never compresses."`
	ShutdownGrace      time.Duration `default:"25s" placeholder:"TIME" help:"Longest time a graceful shutdown may take."`
	IdleClose          time.Duration `default:"0s" placeholder:"TIME" help:"Close (and so archive) the open streams nobody wrote to for this long, as busl expired them after 1h; 0 keeps them open. A producer that stays silent longer has its next write refused."`
	Index              bool          `help:"Serve a page of the streams written since start at / and /streams/ (off: stream keys may be secret)."`
	DebugAddr          string        `placeholder:"ADDRESS" help:"Address of a debug listener with /debug/pprof/ and /metrics; off when empty."`
	LogFormat          string        `default:"text" enum:"text,json" placeholder:"FORMAT" help:"Log format: text or json."`
	LogLevel           slog.Level    `default:"info" placeholder:"LEVEL" help:"Log level: debug, info, warn or error."`

	Security securityFlags `embed:"" group:"Security"`
	Archive  archiveFlags  `embed:"" group:"Archive"`
	Nats     natsFlags     `embed:"" group:"Cluster mode (NATS JetStream)"`
}

func (serveCmd) Help() string {
	return `Runs the Sluice server with streams stored under --data-dir on local disk, or in NATS JetStream with --nats (cluster mode: streams shared by every instance; docs/cluster.md).

Exit status:
  0    after a graceful shutdown (SIGTERM or SIGINT)
  1    an error: the data directory cannot be used, the address is taken, ...
  2    a bad flag or environment value

Examples:
  sluice serve
  sluice serve --addr :9000 --data-dir /var/lib/sluice --fsync-interval 0
  SLUICE_ADDR=127.0.0.1:8080 SLUICE_MAX_STREAM_SIZE=1073741824 sluice serve
  sluice serve --nats nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222`
}

// defaultAddr is --addr's default: :8080, or :$PORT when PORT is set, as busl (and
// Heroku) have it.
func defaultAddr() string {
	if port := os.Getenv("PORT"); port != "" {
		return ":" + port
	}
	return ":8080"
}

func (c *serveCmd) Run(ctx context.Context, con *console) error {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	var log *slog.Logger
	if c.LogFormat == "json" {
		log = slog.New(slog.NewJSONHandler(con.stderr, opts))
	} else {
		log = slog.New(slog.NewTextHandler(con.stderr, opts))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	metrics.RegisterBuildInfo(reg, moduleVersion())
	if c.Nats.URLs != "" {
		return serveCluster(ctx, c, reg, log)
	}
	archive, err := c.Archive.open(c.DataDir)
	if err != nil {
		return err
	}
	store, err := file.Open(c.DataDir, file.Options{
		SyncInterval:   c.FsyncInterval,
		MaxStreamSize:  c.MaxStreamSize,
		MaxOpenStreams: c.MaxOpenStreams,
		TailSize:       c.TailSize,
		IdleClose:      c.IdleClose,
		ArchiveMaxAge:  c.Archive.MaxAge,
		Logger:         log,
		Archive:        archive,
		Metrics:        metrics.NewStore(reg),
	})
	if err != nil {
		return err
	}
	defer store.Close()
	metrics.RegisterDiskBytes(reg, store.DiskBytes)
	return serveStore(ctx, c, store, archive, sluice.ArchiverOptions{}, reg, log, "data_dir", c.DataDir)
}

// httpConfig is the HTTP server's configuration from the flags, and the CertReloader of
// its certificate when it serves TLS.
func (c *serveCmd) httpConfig(log *slog.Logger, reg *prometheus.Registry) (sluicehttp.Config, *sluicehttp.CertReloader, error) {
	hc := sluicehttp.Config{
		MaxFollowers:       c.MaxFollowers,
		MaxStreamFollowers: c.MaxStreamFollowers,
		SSEKeepalive:       c.SSEKeepalive,
		SSERetry:           c.SSERetry,
		WSPingInterval:     c.WSPing,
		WriteTimeout:       c.WriteTimeout,
		ReadTimeout:        c.ReadTimeout,
		LongPollTimeout:    c.LongPollTimeout,
		MaxAppend:          c.MaxAppend,
		MaxCompressed:      cmp.Or(c.MaxCompressed, -1), // the flag's 0 is the Config's "never"
		ShutdownGrace:      c.ShutdownGrace,
		Index:              c.Index,
		Logger:             log,
		Registry:           reg,
	}
	cr, err := c.Security.configure(&hc)
	return hc, cr, err
}

// readier is what /readyz asks of the store and the archive (sluicehttp.ReadyCheck).
type readier interface {
	Ready(ctx context.Context) error
}

// serveStore serves store over HTTP until ctx ends, with what the local and the cluster
// mode share: the Archiver (when there is an archive, tuned by ao), the readiness
// checks, access control, the listeners. attrs describe the store in the log.
func serveStore(ctx context.Context, c *serveCmd, store sluice.ArchivableStore, archive sluice.Archive, ao sluice.ArchiverOptions, reg *prometheus.Registry, log *slog.Logger, attrs ...any) error {
	hc, certs, err := c.httpConfig(log, reg)
	if err != nil {
		return err
	}
	for name, r := range map[string]any{"store": store, "archive": archive} {
		if r, ok := r.(readier); ok {
			hc.Ready = append(hc.Ready, sluicehttp.ReadyCheck{Name: name, Check: r.Ready})
		}
	}
	if archive != nil {
		ao.Retention, ao.Logger, ao.Metrics = c.Archive.Retention, log, metrics.NewArchiver(reg)
		stop := runArchiver(sluice.NewArchiver(store, archive, ao), log)
		defer stop() // before the store closes
	}
	if certs != nil {
		defer reloadOnHUP(ctx, certs, log)()
	}
	srv := sluicehttp.NewServer(store, hc)
	ln, err := sluicehttp.Listen(ctx, c.Addr)
	if err != nil {
		return err
	}
	if c.DebugAddr != "" {
		stopDebug, err := serveDebug(c.DebugAddr, reg, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopDebug()
	}
	log.Info("serving", append(append([]any{"addr", ln.Addr().String(), "tls", certs != nil}, attrs...), "version", moduleVersion())...)
	warnIfOpen(log, &hc, ln.Addr())
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

// serveDebug serves pprof and metrics on their own listener, off the public port.
func serveDebug(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	ln, err := sluicehttp.Listen(context.Background(), addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug listener", "err", err)
		}
	}()
	log.Info("debug listener", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}
