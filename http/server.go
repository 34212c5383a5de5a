// Package http serves Sluice's stream protocol (see PROTOCOL.md) over HTTP: producers
// publish with POST, followers read raw bytes, Server-Sent Events or WebSocket messages,
// all from a sluice.Store.
package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
)

// Config tunes a Server. Zero values mean the defaults named on each field.
type Config struct {
	// SSEKeepalive is how often an idle SSE follower gets a ":keepalive" comment (15s).
	SSEKeepalive time.Duration
	// SSERetry is the reconnection delay sent to SSE followers (1s).
	SSERetry time.Duration
	// WSPingInterval is how often WebSocket followers are pinged; one that does not answer
	// within another interval is dropped (30s).
	WSPingInterval time.Duration
	// WriteTimeout bounds one write to a follower, so a stalled one is dropped without
	// cutting long streams short (30s).
	WriteTimeout time.Duration
	// ReadTimeout bounds the wait for the next bytes of a publish body (5m).
	ReadTimeout time.Duration
	// ProbeInterval is how often an idle raw or SSE follower's connection is checked, so
	// that one that vanished frees its resources without waiting for the stream (5s).
	ProbeInterval time.Duration
	// ShutdownGrace bounds a graceful shutdown (25s).
	ShutdownGrace time.Duration
	// MaxFollowers and MaxStreamFollowers bound followers in all and per stream; 0 means
	// no limit.
	MaxFollowers, MaxStreamFollowers int
	// CORSOrigins lists the origins allowed by CORS; empty means "*".
	CORSOrigins []string
	// Logger receives request logs and server errors; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the server's metrics and serves /metrics; nil means a new
	// registry with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// Index serves a page listing the streams written since the server started at /
	// and /streams/ (off: stream keys may be secret).
	Index bool
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.SSEKeepalive, 15*time.Second)
	def(&c.SSERetry, time.Second)
	def(&c.WSPingInterval, 30*time.Second)
	def(&c.WriteTimeout, 30*time.Second)
	def(&c.ReadTimeout, 5*time.Minute)
	def(&c.ShutdownGrace, 25*time.Second)
	def(&c.ProbeInterval, 5*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	}
}

// Server is the HTTP face of a store. It is an http.Handler; Serve runs it on a listener
// with the timeouts and the graceful shutdown the protocol asks for.
type Server struct {
	store   sluice.Store
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux

	// drain is cancelled when shutdown begins: followers end so that they reconnect
	// elsewhere, publishers stop reading with every received byte stored.
	drain     context.Context
	stopDrain context.CancelFunc
	// hijacked counts WebSocket followers, which http.Server.Shutdown neither waits for
	// nor closes; kill ends them when the grace period is over.
	hijacked sync.WaitGroup
	kill     context.Context
	stopKill context.CancelFunc

	turns turns // caught-up followers waiting for their stream to grow (turns.go)

	followers      atomic.Int64
	mu             sync.Mutex
	streamFollowed map[string]int
	recent         recentKeys // for the index page (viewer.go), when Config.Index
}

// NewServer returns a Server for store.
func NewServer(store sluice.Store, cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{
		store:          store,
		cfg:            cfg,
		log:            cfg.Logger,
		streamFollowed: make(map[string]int),
	}
	s.drain, s.stopDrain = context.WithCancel(context.Background())
	s.kill, s.stopKill = context.WithCancel(context.Background())
	s.turns.stop = s.drain.Done()
	s.metrics = newMetrics(cfg.Registry, store)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "OK") })
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	s.mux.HandleFunc("POST /streams", s.createRandom)
	s.mux.HandleFunc("GET /_sluice/{file}", s.serveViewerAsset)
	return s
}

// ServeHTTP routes a request. Stream paths are routed by hand, not by ServeMux, which
// would clean "..", "//" and "%2F" into a redirect or another stream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Request-Id")
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("Request-Id", id)
	s.cors(w, r)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rec := &recorder{ResponseWriter: w}
	start := time.Now()
	log := s.log.With("request_id", id)
	r = r.WithContext(withLogger(r.Context(), log))
	defer func() {
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status(),
			"bytes", rec.bytes, "duration", time.Since(start))
	}()
	if s.cfg.Index && (r.URL.Path == "/" || r.URL.Path == "/streams/") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.serveIndex(rec, r) // viewer.go
		return
	}
	if strings.HasPrefix(r.URL.Path, "/streams/") {
		s.stream(rec, r)
		return
	}
	if !cleanPath(r.URL.Path) {
		// ServeMux would redirect to the cleaned path: PROTOCOL.md wants a 400.
		http.Error(rec, fmt.Sprintf("bad request: path %q has an empty, . or .. segment", r.URL.Path), http.StatusBadRequest)
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// cleanPath reports whether path has no empty, "." or ".." segment.
func cleanPath(path string) bool {
	return !strings.Contains(path, "//") && !strings.Contains(path, "/./") && !strings.Contains(path, "/../") &&
		!strings.HasSuffix(path, "/.") && !strings.HasSuffix(path, "/..")
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	key, err := streamKey(r.URL.Path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.Index && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
		s.recent.note(key)
	}
	switch r.Method {
	case http.MethodGet:
		s.subscribe(w, r, key)
	case http.MethodHead:
		s.head(w, r, key)
	case http.MethodPut:
		s.create(w, r, key)
	case http.MethodPost:
		s.publish(w, r, key)
	case http.MethodDelete:
		s.delete(w, r, key)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.drain.Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Drain begins a graceful shutdown: /readyz answers 503, followers are ended so that they
// reconnect (SSE cleanly, raw by an aborted response, WebSocket with a close frame), and
// publish bodies stop being read, with every byte received so far stored.
func (s *Server) Drain() { s.stopDrain() }

// Serve serves on ln until ctx is done, then drains and shuts down within the grace
// period, forcing connections closed after it. The http.Server it runs has no global
// WriteTimeout, which would cut long streams: followers have per-write deadlines instead.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Drain()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.Drain()
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(grace)
	hijackedDone := make(chan struct{})
	go func() { s.hijacked.Wait(); close(hijackedDone) }()
	select {
	case <-hijackedDone:
	case <-grace.Done():
		err = grace.Err()
	}
	if err != nil {
		s.log.Warn("shutdown grace period over, closing connections", "err", err)
		srv.Close()
		s.stopKill()
		<-hijackedDone
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Listen opens a TCP listener with keepalive probes, so vanished peers are noticed.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: 30 * time.Second}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// cors answers for every origin allowed, exposing the Stream-* headers; OPTIONS
// preflights are answered by ServeHTTP.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	allowed := len(s.cfg.CORSOrigins) == 0
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || o == origin {
			allowed = true
		}
	}
	if !allowed {
		return
	}
	h := w.Header()
	if len(s.cfg.CORSOrigins) == 0 || (len(s.cfg.CORSOrigins) == 1 && s.cfg.CORSOrigins[0] == "*") {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	h.Set("Access-Control-Expose-Headers", "Stream-Offset, Stream-Length, Stream-Closed, Stream-Conflict, Request-Id, Content-Range, Location")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Stream-Offset, Stream-Close, Last-Event-ID, Range, Request-Id, Content-Type, Accept")
		h.Set("Access-Control-Max-Age", "86400")
	}
}

// validRequestID accepts a client's Request-Id if it is short printable ASCII, so that it
// is safe to log and to echo.
func validRequestID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder remembers the status and size of a response for the request log. Unwrap lets
// http.ResponseController and WebSocket upgrades reach the connection beneath.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

type loggerKey struct{}

func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

func logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
