// Package http serves Sluice's stream protocol (docs/protocol.md) over HTTP: producers
// publish with POST, followers read raw bytes, Server-Sent Events or WebSocket messages,
// all from a sluice.Store.
package http

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
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
	// CORSOrigins lists the origins whose pages may write (PUT, POST, DELETE) across
	// origins; "*" is every origin. Pages of any origin may read. Empty: none but the
	// server's own.
	CORSOrigins []string
	// Logger receives request logs and server errors; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the server's metrics and serves /metrics; nil means a new
	// registry with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// Index serves a page listing the streams written since the server started at /
	// and /streams/ (off: stream keys may be secret).
	Index bool
	// MaxAppend bounds the body of a Durable Streams append or create, which is stored
	// in one step and so read whole first (32 MiB; 413 beyond).
	MaxAppend int64
	// LongPollTimeout is how long a Durable Streams long-poll waits for the stream to
	// grow before it answers 204 (30s).
	LongPollTimeout time.Duration
	// MaxRead bounds the bytes of one Durable Streams catch-up response (1 MiB, and the
	// rest of a JSON message it ends in); the client reads on from where it ends.
	MaxRead int64
	// StreamTokens, if set, mints the publish and read tokens of a stream made with a
	// random key (POST /streams), answered with its key.
	StreamTokens func(key string) (publish, read string, err error)
	// TLS, if set, serves HTTPS (and HTTP/2 through ALPN) with its certificates; see
	// CertReloader.
	TLS *tls.Config
	// RateLimit and RateBurst bound the requests a second of one client address (a
	// token bucket); 0 means no limit. MaxClientRequests bounds its requests at once,
	// followers included; 0 means no limit. Beyond, 429 with Retry-After.
	RateLimit         float64
	RateBurst         int
	MaxClientRequests int
	// RequireHTTPS refuses plain HTTP (with TLS, or TrustProxy's X-Forwarded-Proto): a
	// GET or HEAD is redirected to https (without a ?token=), anything else refused
	// with 403. /health, /healthz and /readyz answer either way.
	RequireHTTPS bool
	// TrustProxy honours X-Forwarded-Proto and X-Forwarded-For from a balancer in front
	// (they are the client's own otherwise, and ignored).
	TrustProxy bool
	// Ready are the checks /readyz makes besides the shutdown: a balancer sends no
	// request to a server that fails one.
	Ready []ReadyCheck
	// MaxCompressed bounds the whole reads of closed streams compressed at once: each
	// holds an encoder (about 1 MiB for gzip, 4 MiB for zstd) for as long as its client
	// takes to download. Beyond, whole reads are answered uncompressed (32). Negative:
	// never compress.
	MaxCompressed int
	// Authorizer decides what each request may do (sluice.OpRead on a key, ...); nil
	// means sluice.AllowAll, an open server.
	Authorizer sluice.Authorizer
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
	def(&c.LongPollTimeout, 30*time.Second)
	if c.MaxAppend <= 0 {
		c.MaxAppend = 32 << 20
	}
	if c.MaxCompressed == 0 {
		c.MaxCompressed = 32
	}
	if c.MaxRead <= 0 {
		c.MaxRead = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Authorizer == nil {
		c.Authorizer = sluice.AllowAll{}
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

	// fan is the followers: it ends them on a drain, and owns those on hijacked
	// connections (internal/fanout).
	fan    *fanout.Fanout
	limits *limits    // bound each client address (limits.go); nil without limits
	recent recentKeys // for the index page (viewer.go), when Config.Index
	// compressing holds a token per compressed read under way (compress.go).
	compressing chan struct{}
}

// NewServer returns a Server for store.
func NewServer(store sluice.Store, cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{
		store: store,
		cfg:   cfg,
		log:   cfg.Logger,
		fan:   fanout.New(fanout.Config{MaxFollowers: cfg.MaxFollowers, MaxStreamFollowers: cfg.MaxStreamFollowers}),
	}
	s.compressing = make(chan struct{}, max(0, cfg.MaxCompressed))
	if cfg.RateLimit > 0 || cfg.MaxClientRequests > 0 {
		s.limits = newLimits(cfg.RateLimit, cfg.RateBurst, cfg.MaxClientRequests)
	}
	s.metrics = newMetrics(cfg.Registry, store)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "OK") })
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	metricsHandler := promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})
	s.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.authorize(w, r, "", sluice.OpMetrics) {
			metricsHandler.ServeHTTP(w, r)
		}
	})
	s.mux.HandleFunc("POST /streams", func(w http.ResponseWriter, r *http.Request) {
		if s.authorize(w, r, "", sluice.OpCreate) { // "": a key of the server's choosing
			s.createRandom(w, r)
		}
	})
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
	if s.cors(w, r) {
		http.Error(w, "forbidden: this origin may not write here (see --cors-origins)", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if probe(r.URL.Path) {
		s.mux.ServeHTTP(w, r) // a balancer's probes: never limited, over either scheme
		return
	}
	if s.cfg.RequireHTTPS && s.scheme(r) != "https" {
		s.refuseHTTP(w, r)
		return
	}

	rec := &recorder{ResponseWriter: w}
	rl := &requestLog{log: s.log.With("request_id", id), method: r.Method, path: r.URL.Path, start: time.Now(),
		route: route(r.URL.Path), requests: s.metrics.requests}
	ctx := context.WithValue(r.Context(), requestKey{}, rl)
	r = r.WithContext(sluice.WithCredentials(ctx, credentials(r)))
	if s.limits != nil {
		release, wait := s.limits.admit(s.clientAddr(r), time.Now())
		if release == nil {
			s.metrics.refused.WithLabelValues("429").Inc()
			tooMany(rec, wait)
			rl.write(rec.status(), rec.bytes)
			return
		}
		rl.release = release // a follower handed off holds its place until it ends
	}
	defer func() {
		if !rl.handedOff {
			rl.write(rec.status(), rec.bytes)
		}
	}()
	if s.cfg.Index && (r.URL.Path == "/" || r.URL.Path == "/streams/") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if s.authorize(rec, r, "", sluice.OpList) {
			s.serveIndex(rec, r) // viewer.go
		}
		return
	}
	if strings.HasPrefix(r.URL.Path, "/streams/") {
		s.stream(rec, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, durablePrefix) {
		s.durable(rec, r) // durable.go
		return
	}
	if !cleanPath(r.URL.Path) {
		// ServeMux would redirect to the cleaned path: the protocol wants a 400.
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
	op, ok := streamOp(r)
	if ok && !s.authorize(w, r, key, op) {
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

// scheme is the scheme the client used: https over TLS, or as the balancer in front
// says (TrustProxy).
func (s *Server) scheme(r *http.Request) string {
	if r.TLS != nil || (s.cfg.TrustProxy && r.Header.Get("X-Forwarded-Proto") == "https") {
		return "https"
	}
	return "http"
}

// route names the route of path in sluice_requests_total: a few values, whatever the
// path.
func route(path string) string {
	switch {
	case strings.HasPrefix(path, "/streams/"):
		return "streams"
	case strings.HasPrefix(path, durablePrefix):
		return "durable"
	case path == "/streams":
		return "create"
	case path == "/":
		return "index"
	case path == "/metrics":
		return "metrics"
	case strings.HasPrefix(path, "/_sluice/"):
		return "assets"
	}
	return "other"
}

// probe reports whether path is a balancer's health or readiness probe.
func probe(path string) bool { return path == "/health" || path == "/healthz" || path == "/readyz" }

// refuseHTTP answers a request over plain HTTP when HTTPS is required: a redirect to the
// same URL over https, without its token (which must not travel again), or 403.
func (s *Server) refuseHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "forbidden: use https", http.StatusForbidden)
		return
	}
	u := *r.URL
	q := u.Query()
	q.Del("token")
	u.Scheme, u.Host, u.RawQuery = "https", r.Host, q.Encode()
	http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
}

// streamOp is the operation a request on /streams/{key} asks for, if its method has
// one: a DELETE closes the stream, or purges it with ?purge=true.
func streamOp(r *http.Request) (sluice.Op, bool) {
	del := sluice.OpClose
	if r.URL.Query().Get("purge") == "true" {
		del = sluice.OpPurge
	}
	return methodOp(r, del)
}

// methodOp is the operation of the request's method, with del for a DELETE. A POST that
// closes the stream publishes too (its body is the stream's last bytes).
func methodOp(r *http.Request, del sluice.Op) (sluice.Op, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return sluice.OpRead, true
	case http.MethodPut:
		return sluice.OpCreate, true
	case http.MethodPost:
		return sluice.OpPublish, true
	case http.MethodDelete:
		return del, true
	}
	return "", false
}

// authorize asks the Authorizer whether the request may do op on key, and answers
// 401 or 403 if not: every route passes through it before it touches the store.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, key string, op sluice.Op) bool {
	err := s.cfg.Authorizer.Authorize(r.Context(), key, op)
	if err == nil {
		return true
	}
	s.fail(w, r, err)
	return false
}

// credentials reads what the request presented: a bearer token (Authorization, or
// ?token= for EventSource and WebSocket, which cannot set headers), or HTTP Basic,
// whose password is taken for a token too (busltee puts it in its URL's user-info).
func credentials(r *http.Request) sluice.Credentials {
	var c sluice.Credentials
	if user, pass, ok := r.BasicAuth(); ok {
		c.User, c.Password, c.Token = user, pass, pass
	}
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		c.Token = strings.TrimSpace(v[7:])
	}
	if c.Token == "" {
		c.Token = r.URL.Query().Get("token")
	}
	return c
}

// readyz answers whether the server can serve: not shutting down, and every check of
// Config.Ready passing (the store can write, NATS and JetStream answer, the archive
// is reachable), each within 2 s. /health stays liveness only.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.fan.Draining().Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var failed []string
	for _, c := range s.cfg.Ready {
		if err := c.Check(ctx); err != nil {
			s.log.Warn("not ready", "check", c.Name, "err", err)
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		http.Error(w, "not ready: "+strings.Join(failed, ", "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// ReadyCheck is a condition of readiness (/readyz): Check fails while it does not hold.
type ReadyCheck struct {
	Name  string // for the answer and the log: "store", "nats", "archive"
	Check func(ctx context.Context) error
}

// EndFollowers ends the followers that the stream of key has now, as if the server
// drained for them alone: for a capability revoked, or a stream that must go. Their
// clients may reconnect (and be refused).
func (s *Server) EndFollowers(key string) { s.fan.End(key) }

// Drain begins a graceful shutdown: /readyz answers 503, followers are ended so that they
// reconnect (SSE cleanly, raw by an aborted response, WebSocket with a close frame), and
// publish bodies stop being read, with every byte received so far stored.
func (s *Server) Drain() { s.fan.Drain() }

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
		// HTTP/1.1, HTTP/2 over TLS (ALPN), and HTTP/2 in the clear for clients that
		// speak it from the start (h2c, curl --http2-prior-knowledge).
		Protocols: new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	if s.cfg.TLS != nil {
		tc := s.cfg.TLS.Clone()
		tc.NextProtos = []string{"h2", "http/1.1"}
		srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
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
	if err != nil {
		// HTTP/2 followers are requests of srv: those stalled in a write end only when
		// their connection closes, and the Fanout waits for them below.
		srv.Close()
	}
	// Followers on hijacked connections are the Fanout's: http.Server.Shutdown neither
	// waits for them nor closes them. After the grace, every connection is closed, a
	// follower's in the middle of a stalled write too.
	if ferr := s.fan.Shutdown(grace); err == nil {
		err = ferr
	}
	if err != nil {
		s.log.Warn("shutdown grace period over, connections closed", "err", err)
		srv.Close()
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

// corsExposed are the response headers a page of another origin may read.
const corsExposed = "Stream-Offset, Stream-Length, Stream-Closed, Stream-Conflict, Request-Id, Content-Range, Location, " +
	"Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, ETag, " +
	"Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq"

// corsAllowed are the request headers a page of another origin may send.
const corsAllowed = "Stream-Offset, Stream-Close, Last-Event-ID, Range, Request-Id, Content-Type, Accept, " +
	"Authorization, If-None-Match, Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed, Stream-Forked-From, " +
	"Stream-Fork-Offset, Stream-Fork-Sub-Offset, Producer-Id, Producer-Epoch, Producer-Seq"

// cors answers cross-origin requests: pages of any origin may read (an EventSource on
// another site), but only those of the origins in CORSOrigins (or the server's own)
// may write, so that a page a user opens cannot publish to, close or purge the streams
// of a server inside their network. A preflight for a write from another origin gets
// no allowance, and a write that comes without one (a plain form POST) is refused: it
// reports whether to refuse the request. OPTIONS preflights are answered by ServeHTTP.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) (refuse bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	writes := s.writeOrigin(origin, r)
	h := w.Header()
	h.Add("Vary", "Origin")
	if writes {
		h.Set("Access-Control-Allow-Origin", origin)
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	h.Set("Access-Control-Expose-Headers", corsExposed)
	switch r.Method {
	case http.MethodOptions:
		methods := "GET, HEAD, OPTIONS"
		if writes {
			methods += ", PUT, POST, DELETE"
		}
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", corsAllowed)
		h.Set("Access-Control-Max-Age", "86400")
	case http.MethodGet, http.MethodHead:
	default:
		return !writes
	}
	return false
}

// writeOrigin reports whether pages of origin may write: it is listed in CORSOrigins,
// "*" is, or it is the server's own origin.
func (s *Server) writeOrigin(origin string, r *http.Request) bool {
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || o == origin {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && u.Host == r.Host
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

// requestLog writes a request's log line when it ends: when its handler returns, or,
// for a follower handed off to a goroutine of its own, when the follower ends, so that
// the line tells the bytes it was sent and how long it followed.
type requestLog struct {
	log          *slog.Logger
	method, path string
	start        time.Time
	handedOff    bool
	release      func() // gives back the client's place among its requests at once (limits.go)
	route        string // for sluice_requests_total
	requests     *prometheus.CounterVec
}

type requestKey struct{}

// requestOf returns the log of the request whose context is ctx.
func requestOf(ctx context.Context) *requestLog {
	if rl, ok := ctx.Value(requestKey{}).(*requestLog); ok {
		return rl
	}
	return &requestLog{log: slog.Default(), start: time.Now()}
}

// handOff takes the log line from the handler: the follower calls done when it ends.
func (rl *requestLog) handOff() (done func(status int, bytes int64, attrs ...any)) {
	rl.handedOff = true
	return func(status int, bytes int64, attrs ...any) { rl.write(status, bytes, attrs...) }
}

func (rl *requestLog) write(status int, bytes int64, attrs ...any) {
	if rl.release != nil {
		rl.release()
	}
	if rl.requests != nil {
		rl.requests.WithLabelValues(rl.route, strconv.Itoa(status)).Inc()
	}
	rl.log.Info("request", append([]any{"method", rl.method, "path", rl.path, "status", status,
		"bytes", bytes, "duration", time.Since(rl.start)}, attrs...)...)
}

// logger returns the request's logger, which names its Request-Id.
func logger(ctx context.Context) *slog.Logger { return requestOf(ctx).log }
