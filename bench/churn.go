package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ChurnConfig describes a churn run: Concurrency followers at a time connect to a stream
// being published, read a little and vanish, half with a clean close and half with a
// reset, again and again for Duration, while the server's /metrics is sampled. A server
// that leaks shows it afterwards: goroutines, memory, open files or followers that do not
// come back down.
type ChurnConfig struct {
	URL            string
	Transport      string        // sse, raw, websocket or mix (mix)
	Concurrency    int           // followers at a time (100)
	Duration       time.Duration // (1m)
	ReadBytes      int           // a follower leaves after this many stream bytes (512)
	Hold           time.Duration // or after this long (2s)
	Rate           float64       // lines/s of the stream's producer (10)
	LineSize       int           // (128)
	SourceAddrs    []string
	ConnectTimeout time.Duration // (10s)
	Settle         time.Duration // most to wait afterwards for the server to count no followers (30s)
	MetricsURL     string
	KeyPrefix      string
	Progress       io.Writer
}

// ChurnReport is what churning did.
type ChurnReport struct {
	Concurrency     int      `json:"concurrency"`
	Seconds         float64  `json:"seconds"`
	Cycles          int64    `json:"cycles"` // followers that connected, read and left
	Clean           int64    `json:"clean_closes"`
	Resets          int64    `json:"resets"`
	CyclesPerSecond float64  `json:"cycles_per_second"`
	Errors          int64    `json:"errors"`
	ErrorSamples    []string `json:"error_samples,omitempty"` // the first few
	BadData         int64    `json:"bad_data"`                // followers whose bytes were not the stream's
	Connect         Summary  `json:"connect"`
	Leaks           []string `json:"leaks,omitempty"` // what did not come back down
}

// OK reports whether every cycle worked and nothing leaked.
func (c *ChurnReport) OK() bool { return c.Errors == 0 && c.BadData == 0 && len(c.Leaks) == 0 }

func (c *ChurnReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "  churn       %d followers came and went in %.0fs (%.0f/s): %d clean closes, %d resets\n",
		c.Cycles, c.Seconds, c.CyclesPerSecond, c.Clean, c.Resets)
	fmt.Fprintf(w, "  connect     p50 %s  p99 %s  max %s\n", fms(c.Connect.P50Ms), fms(c.Connect.P99Ms), fms(c.Connect.MaxMs))
	fmt.Fprintf(w, "  errors      %d, bad data %d\n", c.Errors, c.BadData)
	for _, e := range c.ErrorSamples {
		fmt.Fprintf(w, "    e.g. %s\n", e)
	}
	for _, l := range c.Leaks {
		fmt.Fprintf(w, "  LEAK        %s\n", l)
	}
}

// churner is the shared state of a churn run.
type churner struct {
	cfg     ChurnConfig
	t       *target
	path    string
	runID   string
	conn    Histogram
	cycles  atomic.Int64
	clean   atomic.Int64
	resets  atomic.Int64
	errs    atomic.Int64
	bad     atomic.Int64
	mu      sync.Mutex
	samples []string
}

// Churn runs cfg and reports the server's state before, at its peaks, and after.
func Churn(ctx context.Context, cfg ChurnConfig) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	t, err := newTarget(cfg.URL, cfg.SourceAddrs, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	defer t.close()
	if cfg.MetricsURL == "" {
		cfg.MetricsURL = t.url("/metrics")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.Settle+5*time.Minute)
	defer cancel()
	key := cfg.KeyPrefix + "/churn"
	c := &churner{cfg: cfg, t: t, path: streamPath(key), runID: newRunID()}
	sc := &scraper{url: cfg.MetricsURL, client: t.client()}
	rep := &Report{Mode: "churn", URL: cfg.URL, Transport: cfg.Transport, Streams: 1, LineSize: cfg.LineSize,
		Rate: cfg.Rate, Started: time.Now()}
	rep.Server.Before = sc.scrape(ctx)
	if err := t.createStream(ctx, key); err != nil {
		return nil, err
	}
	p, pdone, err := c.startProducer(ctx, key)
	if err != nil {
		return nil, err
	}
	smp := startSampler(ctx, sc, time.Second)
	cr := c.churn(ctx, smp)
	<-pdone
	if p.err != nil {
		rep.Producers.Errors = append(rep.Producers.Errors, p.err.Error())
	}
	rep.Producers.Count, rep.Producers.Lines, rep.Producers.Bytes = 1, p.lines, p.bytes
	rep.Producers.RateMean, rep.Producers.RateMin, rep.Producers.MaxLagMs = p.achieved(), p.achieved(), ms(p.maxLag)
	rep.Server.After = sc.settle(ctx, rep.Server.Before, cfg.Settle)
	rep.Server.Peak = smp.finish()
	rep.Churn = cr
	cr.findLeaks(rep.Server.Before, rep.Server.After)
	return rep, nil
}

// setDefaults fills in the zero values of c with the defaults named in ChurnConfig, and
// checks what it was given.
func (c *ChurnConfig) setDefaults() error {
	c.Transport = cmp.Or(c.Transport, "mix")
	if c.Transport != "mix" && !contains(Transports, c.Transport) {
		return fmt.Errorf("transport %q: want sse, raw, websocket or mix", c.Transport)
	}
	c.Concurrency = cmp.Or(c.Concurrency, 100)
	c.ReadBytes = cmp.Or(c.ReadBytes, 512)
	c.LineSize = cmp.Or(c.LineSize, 128)
	c.Duration = cmp.Or(c.Duration, time.Minute)
	c.Hold = cmp.Or(c.Hold, 2*time.Second)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, 10*time.Second)
	c.Settle = cmp.Or(c.Settle, 30*time.Second)
	c.Rate = cmp.Or(c.Rate, 10)
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench/" + newRunID()
	}
	if c.LineSize < MinLineSize || c.LineSize > MaxLineSize {
		return fmt.Errorf("line size %d: want %d to %d bytes", c.LineSize, MinLineSize, MaxLineSize)
	}
	if limit, err := RaiseFileLimit(); err == nil && limit > 0 && uint64(c.Concurrency+64) > limit {
		return fmt.Errorf("%d concurrent followers need more open files than the limit of %d", c.Concurrency, limit)
	}
	return nil
}

// startProducer starts the stream's producer, which publishes for the whole run so that
// followers find bytes to read at once, and waits until it has published what one
// follower reads. done is closed when the producer has ended.
func (c *churner) startProducer(ctx context.Context, key string) (p *producer, done chan struct{}, err error) {
	deadline, _ := ctx.Deadline()
	p = &producer{key: key, lineSize: c.cfg.LineSize, rate: c.cfg.Rate, duration: c.cfg.Duration + c.cfg.Hold + time.Second}
	done = make(chan struct{})
	go func() { defer close(done); p.run(ctx, c.t, c.runID, deadline) }()
	for p.sentBytes.Load() < int64(c.cfg.ReadBytes) {
		select {
		case <-done:
			return nil, nil, fmt.Errorf("the producer stopped: %v", p.err)
		case <-ctx.Done():
			<-done
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p, done, nil
}

// churn runs Concurrency followers at a time, one cycle after another, for Duration.
func (c *churner) churn(ctx context.Context, smp *sampler) *ChurnReport {
	stopProgress := c.progress(smp)
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, c.cfg.Duration)
	var wg sync.WaitGroup
	for w := range c.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; wctx.Err() == nil; k++ {
				c.cycle(wctx, k*c.cfg.Concurrency+w, w+k)
			}
		}()
	}
	wg.Wait()
	wcancel()
	stopProgress()
	cr := &ChurnReport{Concurrency: c.cfg.Concurrency, Seconds: time.Since(start).Seconds(),
		Cycles: c.cycles.Load(), Clean: c.clean.Load(), Resets: c.resets.Load(), Errors: c.errs.Load(),
		ErrorSamples: c.samples, BadData: c.bad.Load(), Connect: c.conn.Summary()}
	cr.CyclesPerSecond = float64(cr.Cycles) / cr.Seconds
	return cr
}

// findLeaks records what did not come back down between the server's state before (b)
// and after (a) the churn.
func (cr *ChurnReport) findLeaks(b, a Sample) {
	if !b.OK || !a.OK {
		return
	}
	if a.Followers > b.Followers {
		cr.Leaks = append(cr.Leaks, fmt.Sprintf("the server counts %.0f followers, %.0f before", a.Followers, b.Followers))
	}
	// A few goroutines come and go (the scrape's connection, timers); a leak of one per
	// cycle would be thousands.
	if a.Goroutines > b.Goroutines+50 {
		cr.Leaks = append(cr.Leaks, fmt.Sprintf("%.0f goroutines, %.0f before", a.Goroutines, b.Goroutines))
	}
	if a.OpenFDs > b.OpenFDs+50 {
		cr.Leaks = append(cr.Leaks, fmt.Sprintf("%.0f open files, %.0f before", a.OpenFDs, b.OpenFDs))
	}
}

// cycle is the life of follower i: connect, read a little, vanish. Its transport (for
// mix) and way of leaving follow turn, so that every worker goes through them all.
func (c *churner) cycle(ctx context.Context, i, turn int) {
	kind := c.cfg.Transport
	if kind == "mix" {
		kind = Transports[turn%len(Transports)]
	}
	reset := turn%2 == 1
	var err error
	if kind == "websocket" {
		err = c.cycleWebSocket(ctx, i, reset)
	} else {
		err = c.cycleHTTP(ctx, i, kind, reset)
	}
	switch {
	case err == nil:
		c.cycles.Add(1)
		if reset {
			c.resets.Add(1)
		} else {
			c.clean.Add(1)
		}
	case ended(ctx): // the run ended in the middle of this cycle
	default:
		c.errs.Add(1)
		c.mu.Lock()
		if len(c.samples) < 5 {
			c.samples = append(c.samples, fmt.Sprintf("%s: %v", kind, err))
		}
		c.mu.Unlock()
	}
}

// ended reports whether ctx is done or past its deadline: a dial bounded by the deadline
// can fail an instant before the context says so.
func ended(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(dl)
}

// check counts a follower whose bytes were not the stream's: one that reads from offset
// 0 must see lines 0, 1, 2... whole, whatever moment it left.
func (c *churner) check(v *verifier) {
	if v.problem != "" {
		c.bad.Add(1)
	}
}

func (c *churner) cycleHTTP(ctx context.Context, i int, kind string, reset bool) error {
	conn, tcp, err := c.t.dial(ctx, i)
	if err != nil {
		return err
	}
	defer conn.Close()
	if reset && tcp != nil {
		tcp.SetLinger(0)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	start := time.Now()
	conn.SetDeadline(start.Add(c.cfg.ConnectTimeout))
	resp, err := getHead(conn, c.t, c.path, requestID(c.runID, fmt.Sprintf("c%d", i)), kind)
	if err != nil {
		return err
	}
	c.conn.Record(time.Since(start))
	conn.SetDeadline(time.Now().Add(c.cfg.Hold))
	var v verifier
	buf := make([]byte, 1<<10)
	var sse *sseReader
	if kind == "sse" {
		sse = newSSEReader(&v, ProtocolBusl)
	}
	for v.n < int64(c.cfg.ReadBytes) {
		n, err := resp.Body.Read(buf)
		if sse != nil {
			feedSSE(sse, buf[:n])
		} else {
			v.consume(buf[:n], time.Now())
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break // held long enough
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", v.n, err)
		}
	}
	c.check(&v)
	if !reset {
		// Closing a socket with unread bytes sends a reset: take what has arrived, so
		// that the close is a FIN.
		conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		io.Copy(io.Discard, conn)
	}
	return nil
}

// feedSSE splits p into lines for r; a line cut at the end of p is passed as a piece.
func feedSSE(r *sseReader, p []byte) {
	now := time.Now()
	for len(p) > 0 {
		i := indexNewline(p)
		if i < 0 {
			r.line(p, false, now)
			return
		}
		r.line(p[:i+1], true, now)
		p = p[i+1:]
	}
}

func (c *churner) cycleWebSocket(ctx context.Context, i int, reset bool) error {
	var tcp *net.TCPConn
	d := c.t.netDialer(i)
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if tc, ok := conn.(*net.TCPConn); ok {
			tcp = tc
		}
		return conn, err
	}}
	defer tr.CloseIdleConnections()
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, c.t.url(c.path), &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr},
		HTTPHeader: http.Header{"Request-Id": {requestID(c.runID, fmt.Sprintf("c%d", i))}, "User-Agent": {"sluice-bench"}}})
	if err != nil {
		return err
	}
	defer ws.CloseNow()
	c.conn.Record(time.Since(start))
	rctx, rcancel := context.WithTimeout(ctx, c.cfg.Hold)
	defer rcancel()
	var v verifier
	buf := make([]byte, 1<<10)
	for v.n < int64(c.cfg.ReadBytes) && rctx.Err() == nil {
		_, msg, err := ws.Reader(rctx)
		if err != nil {
			if rctx.Err() != nil && ctx.Err() == nil {
				break // held long enough
			}
			return fmt.Errorf("after %d bytes: %w", v.n, err)
		}
		for {
			n, err := msg.Read(buf)
			v.consume(buf[:n], time.Now())
			if err == io.EOF {
				break
			}
			if err != nil {
				if rctx.Err() != nil && ctx.Err() == nil {
					break // held long enough
				}
				return fmt.Errorf("after %d bytes: %w", v.n, err)
			}
		}
	}
	c.check(&v)
	if reset && tcp != nil {
		tcp.SetLinger(0)
		return ws.CloseNow()
	}
	ws.Close(websocket.StatusNormalClosure, "bye") // the close handshake; the server may answer it or close first
	return nil
}

// progress writes a status line every second until stopped.
func (c *churner) progress(smp *sampler) (stop func()) {
	return statusLine(c.cfg.Progress, func() string {
		s := smp.latest()
		return fmt.Sprintf("churning  %d cycles, %d errors  server %s RSS, %.0f goroutines, %.0f followers",
			c.cycles.Load(), c.errs.Load(), mib(s.RSSBytes), s.Goroutines, s.Followers)
	})
}
