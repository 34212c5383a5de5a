package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/sluicehq/sluice/bench"
)

// benchCmd is sluice bench: one command a mode.
type benchCmd struct {
	Fanout  benchFanoutCmd  `cmd:"" help:"One stream, --followers N (a list is a sweep: 1000,5000,10000, with --chart)."`
	Streams benchStreamsCmd `cmd:"" help:"--streams K streams with --followers F each, all at once."`
	Ingest  benchIngestCmd  `cmd:"" help:"One producer as fast as the server takes it, --followers F that must keep up."`
	Churn   benchChurnCmd   `cmd:"" help:"Followers connect, read a little and vanish (clean close or reset) for --duration; server goroutines and memory before and after."`
}

func (benchCmd) Help() string {
	return `Loads the Sluice server at URL (http(s)://host[:port]) and reports what it carries. Every follower checks that it got exactly the published bytes, in order, once, and the stream's end. Server figures come from URL/metrics, or for a server on this machine from /proc (--server-pid). It contacts no other host, and stops by itself (--timeout bounds the whole run).

fanout, streams and ingest speak busl's protocol to Sluice (/streams/{key}: one chunked POST a stream), or with --protocol durable-streams its Durable Streams side (/v1/stream/{key}). For comparison they also load other servers: --target durable-streams, any Durable Streams server (streams at URL/v1/stream/{key}), and --target nchan, Nchan in nginx (deploy/nchan-bench.conf). Those take each line as a request of its own (a POST, answered before the next), and have no /metrics: give --server-pid.

` + benchExitStatus + `

Examples:
  sluice bench fanout http://127.0.0.1:8080 --followers 1000,5000,10000 --rate 20 --lines 200 --source-addrs 4 --chart fanout.svg
  sluice bench streams http://127.0.0.1:8080 --streams 1000 --followers 10
  sluice bench ingest http://127.0.0.1:8080 --bytes 1GiB
  sluice bench churn http://127.0.0.1:8080 --duration 10m --json > churn.json
  sluice bench fanout http://127.0.0.1:8080 --protocol durable-streams --transport long-poll
  sluice bench fanout http://127.0.0.1:4437 --target durable-streams --server-pid $(pgrep -n node) --followers 1000
  sluice bench streams http://127.0.0.1:8081 --target nchan --server-pid $(cat nginx.pid) --streams 100`
}

const benchExitStatus = `Exit status:
  0    every follower got exactly the published bytes (churn: and nothing leaked)
  1    a follower did not, or the run could not be carried out
  2    bad flags or arguments`

// benchFlags are the flags of every mode of sluice bench. Their defaults are the mode's,
// set by its embed tag.
type benchFlags struct {
	URL            string  `arg:"" help:"The server: http(s)://host[:port]."`
	Transport      string  `default:"${transport}" predictor:"transport" placeholder:"TRANSPORT" help:"Follower transport: sse, raw, websocket or mix (of the three) in busl's protocol; sse, long-poll or mix (of both) in Durable Streams; sse on Nchan."`
	LineSize       int     `default:"${line_size}" placeholder:"BYTES" help:"Bytes per published line, newline included."`
	Rate           float64 `default:"${rate}" placeholder:"LINES" help:"Lines per second each producer writes; 0 for as fast as the server takes them."`
	SourceAddrs    string  `placeholder:"N" help:"Spread connections over N loopback addresses 127.0.0.2.. (or a comma-separated list of local IPs)."`
	ConnectTimeout seconds `default:"30s" placeholder:"TIME" help:"Longest time to connect one follower and get its response head."`
	MetricsURL     string  `name:"metrics-url" placeholder:"URL" help:"URL of the server's Prometheus metrics (default URL/metrics for --target sluice, none for the others)."`
	KeyPrefix      string  `placeholder:"PREFIX" help:"Streams are PREFIX/...; default bench/<random>."`
	JSON           bool    `name:"json" help:"Print the report as JSON (a list of reports for a sweep)."`
	Quiet          bool    `help:"No progress line on a terminal."`
	CPUProfile     string  `placeholder:"FILE" help:"Write a CPU profile of the bench itself to FILE, to tell its own cost from the server's."`

	sources []string // SourceAddrs, expanded by validate
}

// benchTransports and benchProtocols are the values of --transport and --protocol, for
// completion (bench.Resolve checks them).
var (
	benchTransports = []string{"sse", "raw", "websocket", "long-poll", "mix"}
	benchProtocols  = []string{bench.ProtocolBusl, bench.ProtocolDurable}
)

// validate checks the flags with the server and protocol of the run (--target and
// --protocol), and the counts of --followers, and expands --source-addrs.
func (b *benchFlags) validate(target, protocol string, followers ...int) (err error) {
	for _, n := range followers {
		if n <= 0 {
			return fmt.Errorf("--followers %d: want 1 or more", n)
		}
	}
	if _, _, err := bench.Resolve(target, protocol, b.Transport); err != nil {
		return fmt.Errorf("--%w", err) // the error starts with the flag's name
	}
	b.sources, err = bench.SourceAddrs(b.SourceAddrs)
	return err
}

// start begins a run of any mode: the CPU profile (until stop is called) and the
// configuration the modes share, with a progress line on a terminal.
func (b *benchFlags) start(con *console) (cfg bench.Config, stop func(), err error) {
	stop = func() {}
	if b.CPUProfile != "" {
		f, err := os.Create(b.CPUProfile)
		if err != nil {
			return cfg, nil, fmt.Errorf("--cpu-profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return cfg, nil, fmt.Errorf("--cpu-profile: %w", err)
		}
		stop = func() { pprof.StopCPUProfile(); f.Close() }
	}
	cfg = bench.Config{URL: b.URL, Transport: b.Transport, LineSize: b.LineSize, Rate: b.Rate,
		SourceAddrs: b.sources, ConnectTimeout: time.Duration(b.ConnectTimeout), MetricsURL: b.MetricsURL,
		KeyPrefix: b.KeyPrefix}
	if !b.Quiet && isTerminal(con.stderr) {
		cfg.Progress = con.stderr
	}
	return cfg, stop, nil
}

// output prints the reports and fails if any follower was incomplete.
func (b *benchFlags) output(stdout io.Writer, reps []*bench.Report, sweep bool) error {
	if b.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var v any = reps[0]
		if sweep {
			v = reps
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		for _, r := range reps {
			r.WriteTable(stdout)
			fmt.Fprintln(stdout)
		}
		if sweep {
			bench.WriteSweepTable(stdout, reps)
		}
	}
	for _, r := range reps {
		if !r.OK() {
			return fmt.Errorf("bench %s: %d of %d followers incomplete, %d producer errors", r.Mode,
				len(r.Incomplete), r.Followers, len(r.Producers.Errors))
		}
	}
	return nil
}

// benchRunFlags are the flags of the modes that publish and follow (all but churn).
type benchRunFlags struct {
	Target             string        `default:"sluice" enum:"sluice,nchan,durable-streams" placeholder:"SERVER" help:"The server at URL: sluice; durable-streams, any Durable Streams server (streams at URL/v1/stream/{key}, each line POSTed as a message, SSE or long-poll followers); or nchan, Nchan in nginx as in deploy/nchan-bench.conf (each line POSTed as a message to /pub/{key}, SSE followers of /sub/{key}). Only sluice has /metrics."`
	Protocol           string        `predictor:"protocol" placeholder:"PROTOCOL" help:"What --target sluice is spoken to in: busl (/streams/{key}, a stream's lines in one chunked POST; the default) or durable-streams (/v1/stream/{key}, as --target durable-streams, with Sluice's /metrics). The other targets speak their own."`
	ServerPID          int           `placeholder:"PID" help:"Read the server's RSS, CPU time and open files from /proc for process PID and its children (a server on this machine, such as nginx's master) instead of /metrics: the only server figures of --target nchan and durable-streams."`
	Bytes              size          `default:"${bytes=}" placeholder:"SIZE" help:"Stop each producer after this size: 1GiB, 500MB (KiB, MiB, GiB are powers of 1024; kB, MB, GB of 1000)."`
	Lines              int64         `placeholder:"N" help:"Stop each producer after this many lines (200 if no --lines, --bytes or --duration)."`
	Duration           time.Duration `placeholder:"TIME" help:"Stop each producer after this time."`
	ConnectConcurrency int           `default:"256" placeholder:"N" help:"Connections being opened at once."`
	IdleWait           time.Duration `default:"2s" placeholder:"TIME" help:"Pause with all followers connected and idle, for the idle memory figure."`
	DrainTimeout       time.Duration `default:"1m" placeholder:"TIME" help:"Most time followers may lag after the producers end."`
	Timeout            time.Duration `placeholder:"TIME" help:"Bound on the whole run (default: the publishing time plus 10m)."`
}

// apply sets the run flags in cfg.
func (r *benchRunFlags) apply(cfg *bench.Config) {
	cfg.Target, cfg.Protocol = r.Target, r.Protocol
	cfg.ServerPID, cfg.Bytes, cfg.Lines, cfg.Duration = r.ServerPID, int64(r.Bytes), r.Lines, r.Duration
	cfg.ConnectConcurrency, cfg.IdleWait, cfg.DrainTimeout, cfg.Timeout = r.ConnectConcurrency, r.IdleWait, r.DrainTimeout, r.Timeout
}

// benchFanoutCmd is sluice bench fanout.
type benchFanoutCmd struct {
	Bench     benchFlags    `embed:"" set:"transport=sse" set:"line_size=128" set:"rate=20"`
	Limits    benchRunFlags `embed:""`
	Followers []int         `default:"100" sep:"," placeholder:"N" help:"Followers of the stream; a comma-separated list runs a sweep."`
	Chart     string        `placeholder:"FILE" help:"Write an SVG file of latency and memory against followers."`
	Pause     time.Duration `default:"5s" placeholder:"TIME" help:"Pause between the runs of a sweep."`
}

func (benchFanoutCmd) Help() string { return benchExitStatus }

func (c *benchFanoutCmd) Validate() error {
	return c.Bench.validate(c.Limits.Target, c.Limits.Protocol, c.Followers...)
}

func (c *benchFanoutCmd) Run(ctx context.Context, con *console) error {
	cfg, stop, err := c.Bench.start(con)
	if err != nil {
		return err
	}
	defer stop()
	c.Limits.apply(&cfg)
	cfg.Followers = c.Followers[0]
	reps, err := bench.Fanout(ctx, cfg, c.Followers, c.Pause)
	if len(reps) == 0 {
		return err
	}
	if c.Chart != "" {
		if err := writeChartFile(c.Chart, reps); err != nil {
			return err
		}
	}
	if oerr := c.Bench.output(con.stdout, reps, len(c.Followers) > 1); oerr != nil {
		return oerr
	}
	return err
}

// benchStreamsCmd is sluice bench streams.
type benchStreamsCmd struct {
	Bench     benchFlags    `embed:"" set:"transport=sse" set:"line_size=128" set:"rate=20"`
	Limits    benchRunFlags `embed:""`
	Followers int           `default:"10" placeholder:"N" help:"Followers of each stream."`
	Streams   int           `default:"100" placeholder:"N" help:"Streams, each with its producer and --followers followers."`
}

func (benchStreamsCmd) Help() string { return benchExitStatus }

func (c *benchStreamsCmd) Validate() error {
	return c.Bench.validate(c.Limits.Target, c.Limits.Protocol, c.Followers)
}

func (c *benchStreamsCmd) Run(ctx context.Context, con *console) error {
	return runOne(ctx, con, &c.Bench, &c.Limits, func(cfg bench.Config) (*bench.Report, error) {
		cfg.Streams, cfg.Followers = c.Streams, c.Followers
		return bench.Streams(ctx, cfg)
	})
}

// benchIngestCmd is sluice bench ingest. Its --transport is raw by default, or sse where
// the protocol has no raw followers (bench.Ingest).
type benchIngestCmd struct {
	Bench     benchFlags    `embed:"" set:"transport=" set:"line_size=1024" set:"rate=0"`
	Limits    benchRunFlags `embed:"" set:"bytes=1GiB"`
	Followers int           `default:"1" placeholder:"N" help:"Followers of the stream, which must keep up."`
}

func (benchIngestCmd) Help() string {
	return `The producer sends its lines as fast as the server takes them: in busl's protocol as one chunked POST, in 64 KiB writes; to Nchan and in Durable Streams each line is one POST, sent once the one before is answered, so there the figure is of requests per second as much as of bytes. Followers are raw by default (--transport), sse where the protocol has no raw ones.

` + benchExitStatus
}

func (c *benchIngestCmd) Validate() error {
	return c.Bench.validate(c.Limits.Target, c.Limits.Protocol, c.Followers)
}

func (c *benchIngestCmd) Run(ctx context.Context, con *console) error {
	return runOne(ctx, con, &c.Bench, &c.Limits, func(cfg bench.Config) (*bench.Report, error) {
		cfg.Followers = c.Followers
		return bench.Ingest(ctx, cfg)
	})
}

// runOne runs a mode that makes one report, and prints it.
func runOne(ctx context.Context, con *console, b *benchFlags, r *benchRunFlags, mode func(bench.Config) (*bench.Report, error)) error {
	cfg, stop, err := b.start(con)
	if err != nil {
		return err
	}
	defer stop()
	r.apply(&cfg)
	rep, err := mode(cfg)
	if rep == nil {
		return err
	}
	if oerr := b.output(con.stdout, []*bench.Report{rep}, false); oerr != nil {
		return oerr
	}
	return err
}

// benchChurnCmd is sluice bench churn.
type benchChurnCmd struct {
	Bench       benchFlags    `embed:"" set:"transport=mix" set:"line_size=128" set:"rate=10"`
	Concurrency int           `default:"100" placeholder:"N" help:"Followers connected at a time."`
	Duration    time.Duration `default:"1m" placeholder:"TIME" help:"How long to churn."`
	ReadBytes   int           `default:"512" placeholder:"BYTES" help:"A follower leaves after this many bytes."`
	Hold        time.Duration `default:"2s" placeholder:"TIME" help:"Or after this time."`
	Settle      time.Duration `default:"30s" placeholder:"TIME" help:"Most time to wait afterwards for the server to drop every follower."`
}

func (benchChurnCmd) Help() string { return benchExitStatus }

func (c *benchChurnCmd) Validate() error {
	return c.Bench.validate(bench.TargetSluice, bench.ProtocolBusl)
}

func (c *benchChurnCmd) Run(ctx context.Context, con *console) error {
	cfg, stop, err := c.Bench.start(con)
	if err != nil {
		return err
	}
	defer stop()
	rep, err := bench.Churn(ctx, bench.ChurnConfig{URL: cfg.URL, Transport: cfg.Transport, LineSize: cfg.LineSize,
		Rate: cfg.Rate, SourceAddrs: cfg.SourceAddrs, ConnectTimeout: cfg.ConnectTimeout, MetricsURL: cfg.MetricsURL,
		KeyPrefix: cfg.KeyPrefix, Progress: cfg.Progress, Concurrency: c.Concurrency, Duration: c.Duration,
		ReadBytes: c.ReadBytes, Hold: c.Hold, Settle: c.Settle})
	if err != nil {
		return err
	}
	return c.Bench.output(con.stdout, []*bench.Report{rep}, false)
}

func writeChartFile(name string, reps []*bench.Report) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := bench.WriteChart(f, reps); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// size is a flag of a byte count with an optional unit, as go-humanize reads them:
// 1GiB, 500MB, 1048576. An empty value is 0: no limit.
type size int64

func (s *size) UnmarshalText(b []byte) error {
	v := strings.TrimSpace(string(b))
	if v == "" {
		*s = 0
		return nil
	}
	n, err := humanize.ParseBytes(v)
	switch {
	case err != nil:
		return fmt.Errorf("want a size (1GiB, 500MB, 1048576): %w", err)
	case n == 0 || n > 1<<62:
		return fmt.Errorf("%q: want a size from 1 byte to 4 EiB", v)
	}
	*s = size(n)
	return nil
}
