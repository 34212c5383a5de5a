package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
	"github.com/sluicehq/sluice/metrics"
)

const serveUsage = `Usage: sluice serve [flags]

Runs the Sluice server with streams stored under --data-dir on local disk.

Examples:
  sluice serve
  sluice serve --addr :9000 --data-dir /var/lib/sluice --fsync-interval 0
  SLUICE_ADDR=127.0.0.1:8080 SLUICE_MAX_STREAM_SIZE=1073741824 sluice serve
  sluice serve --nats nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222
      (cluster mode: streams in NATS JetStream, shared by every instance; docs/cluster.md)

Flags:
`

// serveConfig is what sluice serve is told by flags and environment.
type serveConfig struct {
	addr, dataDir, debugAddr, corsOrigins, logFormat string
	logLevel                                         slog.Level
	fsyncInterval                                    time.Duration
	tailSize                                         int
	maxStreamSize                                    int64
	maxOpenStreams                                   int
	http                                             sluicehttp.Config
	archive                                          archiveConfig
	nats                                             natsConfig
}

func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage); printDefaults(stderr, fs) }
	defaultAddr := ":8080"
	if port := os.Getenv("PORT"); port != "" { // busl's, and Heroku's, convention
		defaultAddr = ":" + port
	}
	fs.StringVar(&c.addr, "addr", defaultAddr, "`address` to listen on (:$PORT when PORT is set)")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "`directory` holding the streams")
	fs.DurationVar(&c.fsyncInterval, "fsync-interval", time.Second, "longest `time` acknowledged bytes wait for fsync; 0 fsyncs each write before acknowledging it (closes are always fsynced first)")
	fs.IntVar(&c.tailSize, "tail-size", 1<<20, "`bytes` of each followed stream kept in memory for its followers")
	fs.Int64Var(&c.maxStreamSize, "max-stream-size", 0, "largest stream in `bytes` (413 beyond); 0 for no limit")
	fs.IntVar(&c.maxOpenStreams, "max-open-streams", 0, "most open streams (503 beyond); 0 for no limit")
	fs.IntVar(&c.http.MaxFollowers, "max-followers", 0, "most followers in all (503 beyond); 0 for no limit")
	fs.IntVar(&c.http.MaxStreamFollowers, "max-stream-followers", 0, "most followers of one stream (503 beyond); 0 for no limit")
	fs.DurationVar(&c.http.SSEKeepalive, "sse-keepalive", 15*time.Second, "`interval` of keepalive comments to idle SSE followers")
	fs.DurationVar(&c.http.SSERetry, "sse-retry", time.Second, "reconnection `delay` sent to SSE followers")
	fs.DurationVar(&c.http.WSPingInterval, "ws-ping", 30*time.Second, "`interval` of WebSocket pings; a follower that misses the next is dropped")
	fs.DurationVar(&c.http.WriteTimeout, "write-timeout", 30*time.Second, "longest `time` one write to a follower may take before it is dropped as stalled")
	fs.DurationVar(&c.http.ReadTimeout, "read-timeout", 5*time.Minute, "longest `time` a publish body may go without bytes (400, bytes kept, stream open)")
	fs.DurationVar(&c.http.LongPollTimeout, "long-poll-timeout", 30*time.Second, "longest `time` a Durable Streams long-poll waits for bytes before it answers 204")
	fs.Int64Var(&c.http.MaxAppend, "max-append", 32<<20, "largest Durable Streams append or create body in `bytes`, read whole before it is stored (413 beyond)")
	fs.DurationVar(&c.http.ShutdownGrace, "shutdown-grace", 25*time.Second, "longest `time` a graceful shutdown may take")
	fs.StringVar(&c.corsOrigins, "cors-origins", "*", "comma-separated `origins` allowed by CORS")
	fs.BoolVar(&c.http.Index, "index", false, "serve a page of the streams written since start at / and /streams/ (off: stream keys may be secret)")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "`address` of a debug listener with /debug/pprof/ and /metrics; off when empty")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	archiveFlags(fs, &c.archive)
	natsFlags(fs, &c.nats)
	return fs, c
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := serveFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var h slog.Handler
	switch c.logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel})
	case "json":
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: c.logLevel})
	default:
		return usageError{fmt.Errorf("--log-format %q: want text or json", c.logFormat)}
	}
	log := slog.New(h)
	if c.nats.urls != "" {
		return serveCluster(ctx, c, log)
	}
	archive, err := c.archive.open(c.dataDir)
	if err != nil {
		return err
	}
	store, err := file.Open(c.dataDir, file.Options{
		SyncInterval:   c.fsyncInterval,
		MaxStreamSize:  c.maxStreamSize,
		MaxOpenStreams: c.maxOpenStreams,
		TailSize:       c.tailSize,
		Logger:         log,
		Archive:        archive,
	})
	if err != nil {
		return err
	}
	defer store.Close()
	return serveStore(ctx, c, store, archive, sluice.ArchiverOptions{}, log, "data_dir", c.dataDir)
}

// serveStore serves store over HTTP until ctx ends, with what the local and the cluster
// mode share: metrics, the Archiver (when there is an archive, tuned by ao), CORS, the
// listeners. attrs describe the store in the log.
func serveStore(ctx context.Context, c *serveConfig, store sluice.ArchivableStore, archive sluice.Archive, ao sluice.ArchiverOptions, log *slog.Logger, attrs ...any) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if archive != nil {
		ao.Retention, ao.Logger, ao.Metrics = c.archive.retention, log, metrics.NewArchiver(reg)
		stop := runArchiver(sluice.NewArchiver(store, archive, ao), log)
		defer stop() // before the store closes
	}
	c.http.Logger, c.http.Registry = log, reg
	if c.corsOrigins != "*" {
		c.http.CORSOrigins = strings.Split(c.corsOrigins, ",")
	}
	srv := sluicehttp.NewServer(store, c.http)
	ln, err := sluicehttp.Listen(ctx, c.addr)
	if err != nil {
		return err
	}
	if c.debugAddr != "" {
		stopDebug, err := serveDebug(c.debugAddr, reg, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopDebug()
	}
	log.Info("serving", append(append([]any{"addr", ln.Addr().String()}, attrs...), "version", version)...)
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
