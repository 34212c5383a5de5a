package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
	"github.com/sluicehq/sluice/internal/nettest"
)

// clTimeout bounds every wait of the client tests; it is a failure bound, not a pace.
const clTimeout = 20 * time.Second

// clServer is a real server on a real listener over a file store in dir, which can be
// stopped and started again on the same address with the same store, as after a restart.
type clServer struct {
	t      *testing.T
	dir    string
	addr   string // host:port
	url    string // http://host:port
	srv    *sluicehttp.Server
	store  *file.Store
	cancel context.CancelFunc
	done   chan error
}

// startClServer starts a server on addr ("127.0.0.1:0" for any port) over the store in
// dir; it is stopped when the test ends.
func startClServer(t *testing.T, addr, dir string) *clServer {
	t.Helper()
	s := &clServer{t: t, dir: dir}
	s.start(addr)
	t.Cleanup(s.stop)
	return s
}

func (s *clServer) start(addr string) {
	s.t.Helper()
	store, err := file.Open(s.dir, file.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	var ln net.Listener
	for deadline := time.Now().Add(clTimeout); ; { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		store.Close()
		s.t.Fatal(err)
	}
	s.addr, s.url, s.store = ln.Addr().String(), "http://"+ln.Addr().String(), store
	s.srv = sluicehttp.NewServer(store, sluicehttp.Config{Logger: slog.New(slog.DiscardHandler), ShutdownGrace: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ctx, ln) }()
}

// stop shuts the server down gracefully and closes its store; it may be called twice.
func (s *clServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		s.t.Errorf("Serve: %v", err)
	}
	if err := s.store.Close(); err != nil {
		s.t.Errorf("store.Close: %v", err)
	}
	http.DefaultClient.CloseIdleConnections() // the tests' own requests
}

// restart stops the server and starts a new one on the same address and store.
func (s *clServer) restart() {
	s.t.Helper()
	s.stop()
	s.start(s.addr)
}

// clProxy is a TCP proxy to target that can cut each connection after a random number
// of bytes (both directions together), as a flaky network does, mid-request or
// mid-response. It counts the connections it accepted and those it cut.
type clProxy struct {
	ln       net.Listener
	url      string
	target   string
	budget   func() int64 // bytes a connection may carry before it is cut; <= 0: never
	accepted atomic.Int64
	cut      atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// startClProxy starts a proxy to target (host:port); it is closed when the test ends.
func startClProxy(t *testing.T, target string, budget func() int64) *clProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &clProxy{ln: ln, url: "http://" + ln.Addr().String(), target: target, budget: budget, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *clProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.pipe(c)
	}
}

// track registers c so that close can end it; it reports false once the proxy is closed.
func (p *clProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *clProxy) pipe(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(server) {
		client.Close()
		return
	}
	var left atomic.Int64
	left.Store(p.budget())
	limited := left.Load() > 0
	var once sync.Once
	end := func() { once.Do(func() { client.Close(); server.Close() }) }
	copyHalf := func(dst, src net.Conn) {
		defer end()
		buf := make([]byte, 16<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && limited {
				if rest := left.Add(-int64(n)); rest < 0 {
					dst.Write(buf[:max(0, int64(n)+rest)])
					p.cut.Add(1)
					return
				}
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); copyHalf(server, client) }()
	copyHalf(client, server)
}

func (p *clProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// clContent returns n random bytes, of every value.
func clContent(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// clWriteAll writes b to w in random pieces of 1 byte to 64 KiB, failing the test if a
// Write fails.
func clWriteAll(t *testing.T, w io.Writer, b []byte, seed uint64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, seed))
	for len(b) > 0 {
		n := min(len(b), 1+rnd.IntN(64<<10))
		if rnd.IntN(4) == 0 {
			n = min(len(b), 1+rnd.IntN(100)) // small writes too, like lines of a log
		}
		if k, err := w.Write(b[:n]); err != nil || k != n {
			t.Fatalf("Write: %d, %v; want %d, nil", k, err, n)
		}
		b = b[n:]
	}
}

// clStored reads the whole stream at url with plain net/http, checking that it is
// closed, and returns its bytes.
func clStored(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Stream-Closed") != "true" {
		t.Fatalf("GET %s: %s, Stream-Closed %q; want 200 and a closed stream", url, resp.Status, resp.Header.Get("Stream-Closed"))
	}
	return b
}

// clEqual stops the test unless got equals want, saying where they differ.
func clEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: got %d bytes, want %d; first difference at byte %d: got %q, want %q",
		what, len(got), len(want), i, got[i:min(len(got), i+16)], want[i:min(len(want), i+16)])
}

// clEmptyDir fails the test if dir holds any file.
func clEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		t.Fatalf("%s holds %d files (%s); want none", dir, len(ents), ents[0].Name())
	}
}

// clLogs is a slog handler that counts records by message, so that a test can check
// that the failure it staged did happen.
type clLogs struct {
	mu   sync.Mutex
	msgs map[string]int
}

func newClLogs() *clLogs { return &clLogs{msgs: map[string]int{}} }

func (l *clLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *clLogs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *clLogs) WithGroup(string) slog.Handler            { return l }
func (l *clLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[r.Message]++
	return nil
}

func (l *clLogs) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs[msg]
}

// clClose closes w within clTimeout and returns its error.
func clClose(t *testing.T, w *Writer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clTimeout)
	defer cancel()
	return w.CloseContext(ctx)
}

// TestWriterDelivers proves that the Writer publishes exactly the bytes written (random
// content in random write sizes, from single bytes to 64 KiB), closes the stream, reports
// every byte acknowledged, never reports more acknowledged than written, removes its
// spool, and refuses writes after Close.
func TestWriterDelivers(t *testing.T) {
	ts := newTestServer(t, file.Options{SyncInterval: time.Second})
	want := clContent(3<<20+777, 1)
	spool := t.TempDir()
	var progress []int64
	bad := ""
	w, err := NewWriter(ts.url+"/streams/deliver", WriterOptions{SpoolDir: spool, OnProgress: func(written, acked int64) {
		if acked > written && bad == "" {
			bad = strconv.FormatInt(acked, 10) + " acknowledged of " + strconv.FormatInt(written, 10) + " written"
		}
		progress = append(progress, acked)
	}})
	if err != nil {
		t.Fatal(err)
	}
	clEmptyDir(t, spool) // the spool is unlinked as soon as it is open
	clWriteAll(t, w, want, 1)
	if err := clClose(t, w); err != nil {
		t.Fatalf("Close: %v", err)
	}
	clEqual(t, "stored stream", clStored(t, ts.url+"/streams/deliver"), want)
	if got := w.Acked(); got != int64(len(want)) {
		t.Errorf("Acked() = %d, want %d", got, len(want))
	}
	if bad != "" {
		t.Errorf("OnProgress reported %s", bad)
	}
	if len(progress) == 0 || progress[len(progress)-1] != int64(len(want)) {
		t.Errorf("OnProgress reports %v; want the last to be %d", progress, len(want))
	}
	clEmptyDir(t, spool)
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v, want the first's result (nil)", err)
	}
}

// TestWriterEmpty proves that closing a Writer that wrote nothing still creates and
// closes the stream ("Close closes the stream").
func TestWriterEmpty(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	w, err := NewWriter(ts.url+"/streams/empty", WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := clClose(t, w); err != nil {
		t.Fatalf("Close: %v", err)
	}
	resp, err := http.Head(ts.url + "/streams/empty")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Stream-Closed") != "true" || resp.Header.Get("Stream-Length") != "0" {
		t.Fatalf("HEAD: %s, Stream-Length %q, Stream-Closed %q; want an empty closed stream",
			resp.Status, resp.Header.Get("Stream-Length"), resp.Header.Get("Stream-Closed"))
	}
}

// TestWriterServerDown proves "Writes never block on the network": with nothing
// listening at the URL, every Write returns; when a server comes up at that address, the
// spooled bytes are delivered and Close succeeds.
func TestWriterServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	want := clContent(1<<20, 2)
	w, err := NewWriter("http://"+addr+"/streams/down", WriterOptions{MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		clWriteAll(t, w, want, 2)
	}()
	select {
	case <-wrote:
	case <-time.After(clTimeout):
		t.Fatal("Write blocked while the server was down")
	}
	if w.Acked() != 0 {
		t.Fatalf("Acked() = %d with no server", w.Acked())
	}
	s := startClServer(t, addr, t.TempDir())
	if err := clClose(t, w); err != nil {
		t.Fatalf("Close: %v", err)
	}
	clEqual(t, "stored stream", clStored(t, s.url+"/streams/down"), want)
}

// TestWriterServerRestart proves resumption "from the server's Stream-Length (HEAD) after
// any failure": the server is stopped (its publishes cut short) and restarted on the same
// address and store twice while the Writer publishes; the stream holds every byte once.
func TestWriterServerRestart(t *testing.T) {
	s := startClServer(t, "127.0.0.1:0", t.TempDir())
	want := clContent(2<<20, 3)
	logs := newClLogs()
	w, err := NewWriter(s.url+"/streams/restart", WriterOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	// Each part reaches the server; then the next part is written and the server restarts
	// at once, while it is being published (a publish body stays open up to a second).
	parts := [][]byte{want[:500_000], want[500_000:1_200_000], want[1_200_000:1_700_000], want[1_700_000:]}
	written := 0
	for i, part := range parts {
		clWriteAll(t, w, part, uint64(i))
		written += len(part)
		if i == 0 || i == len(parts)-1 {
			continue
		}
		s.restart()
		for deadline := time.Now().Add(clTimeout); w.Acked() < int64(written); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Acked() = %d, stuck below %d", w.Acked(), written)
			}
		}
	}
	if err := clClose(t, w); err != nil {
		t.Fatalf("Close: %v", err)
	}
	clEqual(t, "stored stream", clStored(t, s.url+"/streams/restart"), want)
	if n := logs.count("publish failed; retrying"); n < 2 {
		t.Errorf("%d failed publishes; the restarts did not interrupt the Writer, the test proves nothing", n)
	}
}

// TestWriterFlakyNetwork proves that a reconnect never loses or repeats a byte: between
// the Writer and the server, a proxy cuts every connection after a random number of
// bytes, mid-request or mid-response.
func TestWriterFlakyNetwork(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	rnd := rand.New(rand.NewPCG(4, 4))
	var mu sync.Mutex
	p := startClProxy(t, strings.TrimPrefix(ts.url, "http://"), func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return 2<<10 + rnd.Int64N(200<<10)
	})
	want := clContent(2<<20, 4)
	w, err := NewWriter(p.url+"/streams/flaky", WriterOptions{MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	clWriteAll(t, w, want, 4)
	if err := clClose(t, w); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if p.cut.Load() < 5 {
		t.Fatalf("the proxy cut only %d connections; the test proves nothing", p.cut.Load())
	}
	clEqual(t, "stored stream", clStored(t, ts.url+"/streams/flaky"), want)
}

// TestWriterBackoff proves "exponential backoff and jitter" (no hot loop against a dead
// server): in 2 s against a server that drops every connection, a Writer with the
// default backoff (100 ms doubling, with jitter) makes a handful of attempts, not
// hundreds; and Close, bounded by its deadline, reports ErrNotDelivered.
func TestWriterBackoff(t *testing.T) {
	url, accepted := nettest.Refuser(t)
	w, err := NewWriter(url+"/streams/dead", WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// Counting attempts in a window needs the window to pass: sleeping is the point here.
	time.Sleep(2 * time.Second)
	n := accepted.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = w.CloseContext(ctx)
	// Expected ~6: delays up to 0.1, 0.2, 0.4, 0.8, 1.6 s. Without backoff: thousands.
	if n < 2 || n > 25 {
		t.Errorf("%d connection attempts in 2 s; want 2 to 25", n)
	}
	if !errors.Is(err, ErrNotDelivered) {
		t.Errorf("Close: %v; want ErrNotDelivered", err)
	}
}

// TestWriterMaxAttempts proves "MaxAttempts: consecutive failed attempts before giving
// up": against a server that drops every connection, exactly that many are made, and
// Close reports ErrNotDelivered with the cause, without the URL's query string (it may
// hold a secret).
func TestWriterMaxAttempts(t *testing.T) {
	url, accepted := nettest.Refuser(t)
	spool := t.TempDir()
	w, err := NewWriter(url+"/streams/dead?token=s3cret", WriterOptions{MaxAttempts: 3, MinBackoff: time.Millisecond, SpoolDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	err = clClose(t, w)
	if !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), "giving up after 3") {
		t.Errorf("Close: %v; want ErrNotDelivered after 3 attempts", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Close: %v; the secret is in the message", err)
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connection attempts, want 3", n)
	}
	clEmptyDir(t, spool)
}

// TestRedact proves that URLs are logged "without their query strings (they may hold
// secrets)", nor passwords.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:1/streams/a?token=x&b=2":  "http://h:1/streams/a",
		"https://u:pw@h/streams/a#frag":     "https://u:xxxxx@h/streams/a",
		"http://h/streams/a?":               "http://h/streams/a",
		"http://h/streams/a":                "http://h/streams/a",
		"http://h/%zz?token=x":              "http://h/%zz", // unparsable: cut by hand
		"http://h/streams/a%2Fb?token=x#yz": "http://h/streams/a%2Fb",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// clCounter puts a request-counting front on ts's handler and returns its URL and the
// count of requests by method.
func clCounter(t *testing.T, ts *testServer) (url string, count func(method string) int) {
	var mu sync.Mutex
	counts := map[string]int{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.Method]++
		mu.Unlock()
		ts.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL, func(method string) int {
		mu.Lock()
		defer mu.Unlock()
		return counts[method]
	}
}

// clPublish publishes body at off to url with plain net/http, closing the stream at its end
// if closeAtEnd.
func clPublish(t *testing.T, url string, off int64, body []byte, closeAtEnd bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Stream-Offset", strconv.FormatInt(off, 10))
	req.Header.Set("Stream-Close", strconv.FormatBool(closeAtEnd))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", resp.Status)
	}
}

// TestWriterPermanentErrors proves "never retrying a permanent 4xx": a refused publish is
// sent once, Close reports ErrNotDelivered wrapping an error that says why (and that
// errors.Is matches the sluice error), and the spool is removed even so.
func TestWriterPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
		opts file.Options
		// before runs before the Writer writes; between after the first bytes are acked.
		before, between func(t *testing.T, ts *testServer, url string)
		want            error  // what errors.Is must find, besides ErrNotDelivered
		text            string // what the message must say
	}{
		{name: "400 bad key", key: "bad%20key", text: "400"},
		{name: "413 too large", key: "big", opts: file.Options{MaxStreamSize: 10}, want: sluice.ErrTooLarge},
		{name: "409 mismatch", key: "other", want: sluice.ErrMismatch, before: func(t *testing.T, ts *testServer, url string) {
			clPublish(t, url, 0, []byte("someone else's bytes"), false)
		}},
		{name: "409 closed", key: "closed", want: sluice.ErrClosed, before: func(t *testing.T, ts *testServer, url string) {
			clPublish(t, url, 0, nil, true)
		}},
		{name: "closed with more bytes", key: "more", want: sluice.ErrMismatch, text: "more than the 22 written", before: func(t *testing.T, ts *testServer, url string) {
			// The writer's bytes are a prefix of the closed stream: the server accepts
			// them (200), but the stream is not what the writer wrote.
			clPublish(t, url, 0, []byte("the writer's own bytes, and more"), true)
		}},
		{name: "409 gap", key: "lost", want: sluice.ErrGap, text: "lost data", between: func(t *testing.T, ts *testServer, url string) {
			// The server loses the acknowledged bytes: the next publish leaves a gap.
			req, _ := http.NewRequest(http.MethodDelete, url+"?purge=true", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, tc.opts)
			front, count := clCounter(t, ts)
			url := front + "/streams/" + tc.key
			if tc.before != nil {
				tc.before(t, ts, url)
			}
			spool := t.TempDir()
			w, err := NewWriter(url, WriterOptions{SpoolDir: spool, MinBackoff: time.Millisecond, MaxAttempts: 5})
			if err != nil {
				t.Fatal(err)
			}
			posts := count("POST")
			if tc.between != nil {
				w.Write([]byte("first"))
				for deadline := time.Now().Add(clTimeout); w.Acked() < 5; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("Acked() = %d, stuck below 5", w.Acked())
					}
				}
				tc.between(t, ts, url)
				posts = count("POST")
			}
			w.Write([]byte("the writer's own bytes"))
			err = clClose(t, w)
			if !errors.Is(err, ErrNotDelivered) || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Close: %v; want ErrNotDelivered and %v, saying %q", err, tc.want, tc.text)
			}
			if n := count("POST") - posts; n != 1 {
				t.Errorf("%d publishes after the refusal began, want 1 (no retry)", n)
			}
			if n := count("HEAD"); n != 0 {
				t.Errorf("%d HEAD requests, want none (no retry)", n)
			}
			clEmptyDir(t, spool)
		})
	}
}

// TestConflictHeader proves that a 409 unwraps to the sluice error its Stream-Conflict
// header names, whatever its reason says, and to none of them without the header: the
// reason is text for people, never matched. Each server's reason names another error.
func TestConflictHeader(t *testing.T) {
	conflicts := []error{sluice.ErrGap, sluice.ErrMismatch, sluice.ErrClosed}
	for _, tc := range []struct {
		name   string
		header string // Stream-Conflict; "" for none
		reason string
		want   error // nil: none of conflicts
	}{
		{"gap", "gap", sluice.ErrClosed.Error(), sluice.ErrGap},
		{"mismatch", "mismatch", sluice.ErrGap.Error(), sluice.ErrMismatch},
		{"closed", "closed", sluice.ErrMismatch.Error(), sluice.ErrClosed},
		{"no header", "", sluice.ErrGap.Error() + "; " + sluice.ErrMismatch.Error() + "; " + sluice.ErrClosed.Error(), nil},
		{"unknown cause", "frozen", sluice.ErrClosed.Error(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tc.header != "" {
					w.Header().Set("Stream-Conflict", tc.header)
				}
				http.Error(w, tc.reason, http.StatusConflict)
			}))
			defer srv.Close()
			w, err := NewWriter(srv.URL+"/streams/c", WriterOptions{MinBackoff: time.Millisecond, MaxAttempts: 5})
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("bytes"))
			err = clClose(t, w)
			if !errors.Is(err, ErrNotDelivered) {
				t.Fatalf("Close: %v; want ErrNotDelivered", err)
			}
			for _, c := range conflicts {
				if want := c == tc.want; errors.Is(err, c) != want {
					t.Errorf("Close: %v; errors.Is(err, %q) = %v, want %v", err, c, !want, want)
				}
			}
		})
	}
}
