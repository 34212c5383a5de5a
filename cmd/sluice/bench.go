package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bench"
)

const benchUsage = `Usage: sluice bench fanout|streams|ingest|churn URL [flags]

Loads the Sluice server at URL (http(s)://host[:port]) and reports what it carries.
Every follower checks that it got exactly the published bytes, in order, once; the
exit status is 1 if any did not. Server figures come from URL/metrics, or for a server
on this machine from /proc (--server-pid). It contacts no other host, and stops by
itself (--timeout bounds the whole run).

  fanout   one stream, --followers N (a list is a sweep: 1000,5000,10000, with --chart);
           --target nchan loads Nchan instead, for comparison (deploy/nchan-bench.conf)
  streams  --streams K streams with --followers F each, all at once
  ingest   one producer as fast as the server takes it, --followers F that must keep up
  churn    followers connect, read a little and vanish (clean close or reset) for
           --duration, --concurrency at a time; server goroutines and memory before/after

Examples:
  sluice bench fanout http://127.0.0.1:8080 --followers 1000,5000,10000 --rate 20 --lines 200 --source-addrs 4 --chart fanout.svg
  sluice bench streams http://127.0.0.1:8080 --streams 1000 --followers 10
  sluice bench ingest http://127.0.0.1:8080 --bytes 1GiB
  sluice bench churn http://127.0.0.1:8080 --duration 10m --json > churn.json
  sluice bench fanout http://127.0.0.1:8081 --target nchan --server-pid $(cat nginx.pid) --followers 1000

Flags:
`

// benchOptions is what sluice bench is told by flags and environment.
type benchOptions struct {
	cfg         bench.Config
	churn       bench.ChurnConfig
	followers   string // fanout: a list
	sourceAddrs string
	bytes       string
	chart       string
	json, quiet bool
	cpuProfile  string
	pause       time.Duration
}

func benchFlags(mode string, stderr io.Writer) (*flag.FlagSet, *benchOptions) {
	o := &benchOptions{}
	c := &o.cfg
	fs := flag.NewFlagSet("bench "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); printDefaults(stderr, fs) }
	transport, followers, lineSize, rate := "sse", "100", 128, 20.0
	switch mode {
	case "streams":
		followers = "10"
	case "ingest":
		transport, followers, lineSize, rate = "raw", "1", 1024, 0
	case "churn":
		transport, rate = "mix", 10
	}
	fs.StringVar(&c.Transport, "transport", transport, "follower `transport`: sse, raw, websocket or mix")
	fs.IntVar(&c.LineSize, "line-size", lineSize, "`bytes` per published line, newline included")
	fs.Float64Var(&c.Rate, "rate", rate, "`lines` per second each producer writes; 0 for as fast as the server takes them")
	fs.StringVar(&o.sourceAddrs, "source-addrs", "", "spread connections over `N` loopback addresses 127.0.0.2.. (or a comma-separated list of local IPs)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 30*time.Second, "longest `time` to connect one follower and get its response head")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "`URL` of the server's Prometheus metrics (default URL/metrics)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "", "streams are `prefix`/...; default bench/<random>")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON (a list of reports for a sweep)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on a terminal")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the bench itself to `file`, to tell its own cost from the server's")
	if mode == "churn" {
		ch := &o.churn
		fs.IntVar(&ch.Concurrency, "concurrency", 100, "followers connected at a time")
		fs.DurationVar(&ch.Duration, "duration", time.Minute, "how long to churn")
		fs.IntVar(&ch.ReadBytes, "read-bytes", 512, "a follower leaves after this many `bytes`")
		fs.DurationVar(&ch.Hold, "hold", 2*time.Second, "or after this `time`")
		fs.DurationVar(&ch.Settle, "settle", 30*time.Second, "most `time` to wait afterwards for the server to drop every follower")
		return fs, o
	}
	fs.StringVar(&o.followers, "followers", followers, "followers of each stream (fanout: a comma-separated list runs a sweep)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "read the server's RSS, CPU time and open files from /proc for process `PID` and its children (a server on this machine, such as nginx's master) instead of /metrics")
	fs.StringVar(&o.bytes, "bytes", "", "stop each producer after this `size` (1GiB, 500MB, ...)")
	fs.Int64Var(&c.Lines, "lines", 0, "stop each producer after this many `lines` (200 if no --lines, --bytes or --duration)")
	fs.DurationVar(&c.Duration, "duration", 0, "stop each producer after this `time`")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 256, "`connections` being opened at once")
	fs.DurationVar(&c.IdleWait, "idle-wait", 2*time.Second, "`pause` with all followers connected and idle, for the idle memory figure")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", time.Minute, "most `time` followers may lag after the producers end")
	fs.DurationVar(&c.Timeout, "timeout", 0, "bound on the whole run (default: the publishing time plus 10m)")
	switch mode {
	case "streams":
		fs.IntVar(&c.Streams, "streams", 100, "streams, each with its producer and --followers followers")
	case "fanout":
		fs.StringVar(&o.chart, "chart", "", "write an SVG `file` of latency and memory against followers")
		fs.StringVar(&c.Target, "target", "sluice", "the `server` at URL: sluice, or nchan (Nchan in nginx as in deploy/nchan-bench.conf: each line POSTed as a message to /pub/{key}, SSE followers of /sub/{key})")
		fs.DurationVar(&o.pause, "pause", 5*time.Second, "`pause` between the runs of a sweep")
	}
	if mode == "ingest" {
		fs.Lookup("bytes").DefValue = "1GiB"
		o.bytes = "1GiB"
	}
	return fs, o
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(stdout, benchUsage)
			return flag.ErrHelp
		}
		fmt.Fprint(stderr, benchUsage)
		return usageError{errors.New("bench: no mode given (fanout, streams, ingest or churn)")}
	}
	mode, rest := args[0], args[1:]
	switch mode {
	case "fanout", "streams", "ingest", "churn":
	default:
		fmt.Fprint(stderr, benchUsage)
		return usageError{fmt.Errorf("bench: unknown mode %q (want fanout, streams, ingest or churn)", mode)}
	}
	fs, o := benchFlags(mode, stderr)
	// The URL comes right after the mode, or last.
	var url string
	switch {
	case len(rest) > 0 && !strings.HasPrefix(rest[0], "-"):
		url, rest = rest[0], rest[1:]
	case len(rest) > 0 && strings.Contains(rest[len(rest)-1], "://"):
		url, rest = rest[len(rest)-1], rest[:len(rest)-1]
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if url == "" {
		return usageError{errors.New("bench: no URL given")}
	}
	if t := o.cfg.Transport; t != "mix" && !slices.Contains(bench.Transports, t) {
		return usageError{fmt.Errorf("--transport %q: want sse, raw, websocket or mix", t)}
	}
	switch t := o.cfg.Target; {
	case t != "" && t != "sluice" && t != "nchan":
		return usageError{fmt.Errorf("--target %q: want sluice or nchan", t)}
	case t == "nchan" && o.cfg.Transport != "sse":
		return usageError{fmt.Errorf("--target nchan: --transport %q; Nchan is followed with sse only", o.cfg.Transport)}
	}
	sources, err := bench.SourceAddrs(o.sourceAddrs)
	if err != nil {
		return usageError{err}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var progress io.Writer
	if f, ok := stderr.(*os.File); ok && !o.quiet && benchTerminal(f) {
		progress = stderr
	}
	if mode == "churn" {
		ch := o.churn
		ch.URL, ch.Transport, ch.LineSize, ch.Rate = url, o.cfg.Transport, o.cfg.LineSize, o.cfg.Rate
		ch.SourceAddrs, ch.ConnectTimeout, ch.MetricsURL, ch.KeyPrefix, ch.Progress = sources, o.cfg.ConnectTimeout, o.cfg.MetricsURL, o.cfg.KeyPrefix, progress
		rep, err := bench.Churn(ctx, ch)
		if err != nil {
			return err
		}
		return o.output(stdout, []*bench.Report{rep}, false)
	}
	c := o.cfg
	c.URL, c.SourceAddrs, c.Progress = url, sources, progress
	if o.bytes != "" {
		if c.Bytes, err = parseSize(o.bytes); err != nil {
			return usageError{fmt.Errorf("--bytes: %w", err)}
		}
	}
	ns, err := parseCounts(o.followers)
	if err != nil {
		return usageError{fmt.Errorf("--followers: %w", err)}
	}
	if mode != "fanout" && len(ns) != 1 {
		return usageError{errors.New("--followers: a list is for fanout sweeps only")}
	}
	c.Followers = ns[0]
	var reps []*bench.Report
	switch mode {
	case "fanout":
		reps, err = bench.Fanout(ctx, c, ns, o.pause)
	case "streams":
		var rep *bench.Report
		rep, err = bench.Streams(ctx, c)
		reps = append(reps, rep)
	case "ingest":
		var rep *bench.Report
		rep, err = bench.Ingest(ctx, c)
		reps = append(reps, rep)
	}
	if err != nil && (len(reps) == 0 || reps[0] == nil) {
		return err
	}
	if o.chart != "" {
		if err := writeChartFile(o.chart, reps); err != nil {
			return err
		}
	}
	if oerr := o.output(stdout, reps, len(ns) > 1); oerr != nil {
		return oerr
	}
	return err
}

// output prints the reports and fails if any follower was incomplete.
func (o *benchOptions) output(stdout io.Writer, reps []*bench.Report, sweep bool) error {
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var err error
		if sweep {
			err = enc.Encode(reps)
		} else {
			err = enc.Encode(reps[0])
		}
		if err != nil {
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

// parseCounts parses a comma-separated list of positive counts.
func parseCounts(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// parseSize parses a byte count with an optional unit: 1GiB, 500MB, 64k, 1048576.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"k", 1 << 10}, {"K", 1 << 10},
		{"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return int64(v * mult), nil
}

// benchTerminal reports whether f is a character device, such as a terminal.
func benchTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
