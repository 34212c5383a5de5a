// Package bench is a load generator for a Sluice server, the engine of `sluice bench`.
// It publishes self-describing lines (a sequence number and a send time in each) and
// follows them with many cheap followers, each of which checks that it received exactly
// the bytes published, in order, none twice, and measures every line's publish→receive
// latency. Server-side figures (resident memory, CPU time, goroutines) come from the
// server's /metrics, so a run works against any deployment it can reach. It only ever
// contacts the host of the URL it is given, and every run and connection has a deadline.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// Config describes a run: Streams streams, each with one producer and Followers
// followers, all at once. Zero values get the defaults named.
type Config struct {
	URL       string // the server's base URL: http(s)://host[:port][/prefix]
	Streams   int    // streams (1)
	Followers int    // followers of each stream (1)
	Transport string // sse, raw, websocket, or mix (sse)
	LineSize  int    // bytes per line, newline included (128; at least MinLineSize)
	Rate      float64
	// Lines, Bytes and Duration limit each producer; it stops at the first reached. With
	// none given, a producer sends 200 lines.
	Lines    int64
	Bytes    int64
	Duration time.Duration

	SourceAddrs        []string      // local addresses to spread connections over
	ConnectConcurrency int           // connections being opened at once (256)
	ConnectTimeout     time.Duration // to connect and get the response head (30s)
	IdleWait           time.Duration // pause with every follower connected and idle, before publishing (2s)
	DrainTimeout       time.Duration // how long followers may lag after the producers end (60s)
	Timeout            time.Duration // bound on the whole run (the publishing time plus 10 minutes)
	MetricsURL         string        // the server's metrics (URL + /metrics for a Sluice target; else none)
	KeyPrefix          string        // streams are KeyPrefix/s0, s1... (bench/<random>)
	Progress           io.Writer     // a progress line every second, if not nil

	// Target is the kind of server: "sluice" (the default); "nchan", Nchan in nginx,
	// driven through the locations of deploy/nchan-bench.conf (nchan.go), SSE only; or
	// "durable-streams", any Durable Streams server (durable.go). Protocol is what a
	// Sluice target is spoken to in: "busl" (the default) or "durable-streams" (its
	// /v1/stream/ side); the other targets speak their own (protocol.go).
	Target   string
	Protocol string
	// ServerPID, if not 0, is the server's process on this machine: its resident memory,
	// CPU time and open files, with its children's, are read from /proc, not /metrics.
	ServerPID int
}

func (c *Config) setDefaults() error {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Streams, 1)
	def(&c.Followers, 1)
	def(&c.LineSize, 128)
	def(&c.ConnectConcurrency, 256)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&c.ConnectTimeout, 30*time.Second)
	defDur(&c.IdleWait, 2*time.Second)
	defDur(&c.DrainTimeout, time.Minute)
	var err error
	if c.Protocol, c.Transport, err = Resolve(c.Target, c.Protocol, c.Transport); err != nil {
		return err
	}
	c.Target = cmp.Or(c.Target, TargetSluice)
	if c.Lines == 0 && c.Bytes == 0 && c.Duration == 0 {
		c.Lines = 200
	}
	switch {
	case c.LineSize < MinLineSize || c.LineSize > MaxLineSize:
		return fmt.Errorf("line size %d: want %d to %d bytes", c.LineSize, MinLineSize, MaxLineSize)
	case c.Rate < 0 || c.Lines < 0 || c.Bytes < 0 || c.Duration < 0:
		return errors.New("rate, lines, bytes and duration cannot be negative")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10*time.Minute + c.publishTime()
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench/" + newRunID()
	}
	return nil
}

// publishTime is how long publishing should take at the asked rate, if it is known.
func (c *Config) publishTime() time.Duration {
	if c.Duration > 0 {
		return c.Duration
	}
	if c.Rate > 0 && c.Lines > 0 {
		return time.Duration(float64(c.Lines) / c.Rate * float64(time.Second))
	}
	return 0
}

func newRunID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run is the state of one Run.
type run struct {
	cfg      Config
	id       string
	t        *target
	sc       *scraper
	smp      *sampler
	lat      Histogram // publish→receive, all followers
	conn     Histogram // connect times
	fs       []follower
	ps       []*producer
	phase    atomic.Value // string, for the progress line
	finished []time.Time  // when each follower stopped reading
}

// Run runs cfg against the server and reports what it saw. An error means the run could
// not be carried out; followers that did not get every byte are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := cfg.Streams * cfg.Followers
	if limit, err := RaiseFileLimit(); err == nil && limit > 0 && uint64(n+cfg.Streams+64) > limit {
		return nil, fmt.Errorf("%d followers and %d producers need more open files than the limit of %d: run several bench processes", n, cfg.Streams, limit)
	}
	t, err := newTarget(cfg.URL, cfg.SourceAddrs, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	defer t.close()
	t.proto = cfg.Protocol
	if cfg.MetricsURL == "" && cfg.Target == TargetSluice {
		cfg.MetricsURL = t.url("/metrics")
	}
	if cfg.ServerPID != 0 {
		if _, err := procSample(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("server pid: %w", err)
		}
	}
	r := &run{cfg: cfg, id: newRunID(), t: t, fs: make([]follower, n), finished: make([]time.Time, n)}
	r.sc = &scraper{url: cfg.MetricsURL, client: t.client(), pid: cfg.ServerPID}
	for i := range r.fs {
		f := &r.fs[i]
		f.id, f.stream, f.kind = i, i%cfg.Streams, cfg.Transport
		if ts := protocolTransports[cfg.Protocol]; cfg.Transport == "mix" {
			f.kind = ts[i%len(ts)]
		}
		f.v.lat = &r.lat
	}
	for k := range cfg.Streams {
		r.ps = append(r.ps, &producer{stream: k, key: fmt.Sprintf("%s/s%d", cfg.KeyPrefix, k),
			lineSize: cfg.LineSize, rate: cfg.Rate, maxLines: cfg.Lines, maxBytes: cfg.Bytes, duration: cfg.Duration})
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	return r.execute(ctx, runCtx, cancel)
}

// execute carries out the run: it creates the streams, connects every follower, lets
// them idle, publishes, and reports once the followers have caught up (or DrainTimeout
// passed) and the server has settled.
func (r *run) execute(parent, ctx context.Context, cancel context.CancelFunc) (*Report, error) {
	cfg := r.cfg
	rep := &Report{Mode: "streams", URL: cfg.URL, Target: cfg.Target, Protocol: cfg.Protocol,
		Transport: cfg.Transport, Streams: cfg.Streams, FollowersPerStream: cfg.Followers, Followers: len(r.fs),
		LineSize: cfg.LineSize, Rate: cfg.Rate, Started: time.Now()}
	rep.Server.PID = cfg.ServerPID
	r.phase.Store("starting")
	rep.Server.Before = r.sc.scrape(ctx)
	if err := r.createStreams(ctx); err != nil {
		return nil, err
	}
	r.t.close() // the creates' idle connections, which would count in the server's figures
	r.smp = startSampler(ctx, r.sc, time.Second)
	stopProgress := r.progress()
	defer stopProgress()

	var done sync.WaitGroup
	rep.Connect.WallSeconds = r.connectAll(ctx, &done)
	if !backoff.Sleep(ctx, cfg.IdleWait) {
		cancel()
		done.Wait()
		r.smp.finish()
		return nil, fmt.Errorf("interrupted while connecting: %w", ctx.Err())
	}
	rep.Server.Idle = r.sc.scrape(ctx)
	pubStart := r.publish(ctx, cancel, &done, rep)
	r.phase.Store("settling")

	// The server's state once it has seen every follower go.
	actx, acancel := context.WithTimeout(parent, 20*time.Second)
	defer acancel()
	rep.Server.Delivered = r.sc.scrape(actx)
	rep.Server.After = r.sc.settle(actx, rep.Server.Before, 15*time.Second)
	r.smp.add(rep.Server.Idle)
	r.smp.add(rep.Server.Delivered)
	rep.Server.Peak = r.smp.finish()
	r.summarize(rep, pubStart)
	return rep, nil
}

// connectAll connects every follower, ConnectConcurrency at a time, and returns the
// seconds it took once all are connected (or failed); each then reads on its own, and
// done is marked when it ends.
func (r *run) connectAll(ctx context.Context, done *sync.WaitGroup) float64 {
	r.phase.Store("connecting")
	deadline, _ := ctx.Deadline()
	var connected sync.WaitGroup
	sem := make(chan struct{}, r.cfg.ConnectConcurrency)
	start := time.Now()
	for i := range r.fs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			r.fs[i].err = ctx.Err()
			continue
		}
		connected.Add(1)
		done.Add(1)
		go r.follow(ctx, i, sem, deadline, &connected, done)
	}
	connected.Wait()
	return time.Since(start).Seconds()
}

// publish runs every producer at once, then gives the followers DrainTimeout to catch
// up before it cuts them (cancel). It returns when publishing started, and records the
// delivery time and the bench's own CPU time in rep.
func (r *run) publish(ctx context.Context, cancel context.CancelFunc, done *sync.WaitGroup, rep *Report) time.Time {
	r.phase.Store("publishing")
	deadline, _ := ctx.Deadline()
	pubStart, cpuStart := time.Now(), selfCPU()
	var producing sync.WaitGroup
	for _, p := range r.ps {
		producing.Add(1)
		go func() { defer producing.Done(); p.run(ctx, r.t, r.id, deadline) }()
	}
	producing.Wait()
	r.phase.Store("draining")
	if !waitTimeout(done, r.cfg.DrainTimeout) {
		cancel() // cut the followers that still wait
		done.Wait()
	}
	rep.DeliverySeconds = time.Since(pubStart).Seconds()
	rep.Bench = BenchCost{Cores: runtime.NumCPU(), CPUDeliverySeconds: (selfCPU() - cpuStart).Seconds()}
	return pubStart
}

// follow connects follower i and reads until its stream ends.
func (r *run) follow(ctx context.Context, i int, sem chan struct{}, deadline time.Time, connected, done *sync.WaitGroup) {
	defer done.Done()
	f := &r.fs[i]
	path := r.t.subPath(r.ps[f.stream].key)
	o, err := f.open(ctx, r.t, path, r.id, deadline)
	<-sem
	if err != nil {
		f.err = err
		connected.Done()
		return
	}
	r.conn.Record(f.connect)
	connected.Done()
	stop := context.AfterFunc(ctx, o.close)
	f.err = o.read(f)
	stop()
	o.close()
	r.finished[i] = time.Now()
}

// createStreams creates every stream, a few at a time, so followers can connect first.
// Nchan creates a channel at its first message, and its subscribers wait for it.
func (r *run) createStreams(ctx context.Context) error {
	if r.t.proto == protocolNchan {
		return nil
	}
	sem := make(chan struct{}, 16)
	errs := make([]error, len(r.ps))
	var wg sync.WaitGroup
	for i, p := range r.ps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = r.t.createStream(ctx, p.key)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// progress writes a status line every second until stopped.
func (r *run) progress() (stop func()) {
	return statusLine(r.cfg.Progress, func() string {
		var lines int64
		for _, p := range r.ps {
			lines += p.sentLines.Load()
		}
		smp := r.smp.latest()
		return fmt.Sprintf("%-10s connected %d/%d  published %d lines  received %d  p99 %.1fms  server %s RSS, %.0f goroutines",
			r.phase.Load(), r.conn.Count(), len(r.fs), lines, r.lat.Count(), ms(r.lat.Quantile(0.99)),
			mib(smp.RSSBytes), smp.Goroutines)
	})
}

// statusLine rewrites line() in place on w every second until stopped, then clears it;
// with no w it does nothing.
func statusLine(w io.Writer, line func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
			fmt.Fprint(w, "\r\033[K"+line())
		}
	}()
	return func() { close(quit); <-ended }
}

// waitTimeout waits for wg for at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}
