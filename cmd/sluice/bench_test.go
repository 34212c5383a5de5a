package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bench"
	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
)

// benchServer runs a real server in this process on a real loopback listener, wrapped
// by wrap if not nil, and returns its base URL; it stops when the test ends.
func benchServer(t *testing.T, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	store, err := file.Open(t.TempDir(), file.Options{SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := sluicehttp.NewServer(store, sluicehttp.Config{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownGrace: 5 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		store.Close()
	})
	return url
}

// runBench runs sluice bench with args (after "bench") and returns stdout, stderr and
// the error.
func runBench(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	clearEnv(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"bench"}, args...), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestBenchFanoutJSON runs "sluice bench fanout URL --json" against a real server: the
// JSON report says every follower got every line, with latencies and server figures.
func TestBenchFanoutJSON(t *testing.T) {
	url := benchServer(t, nil)
	out, stderr, err := runBench(t, "fanout", url, "--followers", "20", "--lines", "100", "--rate", "0",
		"--idle-wait", "50ms", "--json")
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a JSON report: %v\n%s", err, out)
	}
	if rep.Mode != "fanout" || rep.Followers != 20 || rep.Complete != 20 || len(rep.Incomplete) != 0 ||
		rep.Producers.Lines != 100 || rep.Latency.Count != 2000 || !rep.Server.Idle.OK || rep.Server.Idle.Followers != 20 {
		t.Errorf("report: mode %q, %d followers, %d complete, %d lines, %d latencies, idle %+v",
			rep.Mode, rep.Followers, rep.Complete, rep.Producers.Lines, rep.Latency.Count, rep.Server.Idle)
	}
	if stderr != "" {
		t.Errorf("stderr is not a terminal, yet got %q", stderr)
	}
}

// TestBenchDurable runs sluice bench in Durable Streams against a real server: fanout
// with --protocol durable-streams, SSE and long-poll followers mixed, with Sluice's
// /metrics; and ingest with --target durable-streams, whose followers are SSE by
// default there and whose server figures come from /proc alone (--server-pid, here
// this process, the server's).
func TestBenchDurable(t *testing.T) {
	url := benchServer(t, nil)
	out, stderr, err := runBench(t, "fanout", url, "--protocol", "durable-streams", "--transport", "mix",
		"--followers", "10", "--lines", "50", "--rate", "0", "--idle-wait", "50ms", "--json")
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a JSON report: %v\n%s", err, out)
	}
	if rep.Target != "sluice" || rep.Protocol != "durable-streams" || rep.Complete != 10 || rep.Latency.Count != 500 ||
		rep.Connect.Polls == 0 || rep.Server.Idle.Followers != 10 {
		t.Errorf("report: target %q, protocol %q, %d complete, %d latencies, %d polls, %v followers idle",
			rep.Target, rep.Protocol, rep.Complete, rep.Latency.Count, rep.Connect.Polls, rep.Server.Idle.Followers)
	}

	out, stderr, err = runBench(t, "ingest", url, "--target", "durable-streams", "--bytes", "64KiB",
		"--followers", "2", "--idle-wait", "10ms", "--server-pid", strconv.Itoa(os.Getpid()), "--json")
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	rep = bench.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a JSON report: %v\n%s", err, out)
	}
	if rep.Mode != "ingest" || rep.Target != "durable-streams" || rep.Transport != "sse" || rep.Complete != 2 ||
		rep.Producers.Lines != 64 || !rep.Server.Before.OK || rep.Server.Before.Metrics {
		t.Errorf("report: mode %q, target %q, transport %q, %d complete, %d lines, server before %+v",
			rep.Mode, rep.Target, rep.Transport, rep.Complete, rep.Producers.Lines, rep.Server.Before)
	}
}

// TestBenchSweepChart runs a two-step fanout sweep with --chart: a table per run, the
// sweep table, and an SVG file that parses as XML with a p99 series of two points. Flags
// may come before the URL, and the URL last.
func TestBenchSweepChart(t *testing.T) {
	url := benchServer(t, nil)
	chart := filepath.Join(t.TempDir(), "fanout.svg")
	out, stderr, err := runBench(t, "fanout", "--followers", "4,8", "--lines", "20", "--rate", "0",
		"--idle-wait", "50ms", "--pause", "10ms", "--transport", "mix", "--chart", chart, url)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	for _, want := range []string{"4 of 4 followers got every byte", "8 of 8 followers got every byte", "followers  complete"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	svg, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name
		Panels  []struct {
			Lines []struct {
				Series string `xml:"data-series,attr"`
				Points string `xml:"points,attr"`
			} `xml:"polyline"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatalf("the chart is not XML: %v", err)
	}
	found := false
	for _, p := range doc.Panels {
		for _, l := range p.Lines {
			if l.Series == "p99" && len(strings.Fields(l.Points)) == 2 {
				found = true
			}
		}
	}
	if doc.XMLName.Local != "svg" || !found {
		t.Errorf("chart: root %q, p99 series with 2 points found: %v", doc.XMLName.Local, found)
	}
}

// flipListener corrupts one padding byte of every response written to a follower that
// asked for raw bytes (not SSE), keeping the length: only the bench's checksum notices.
type flipListener struct{ net.Listener }

func (l flipListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return &flipConn{Conn: c}, err
}

type flipConn struct{ net.Conn }

func (c *flipConn) Write(p []byte) (int, error) {
	if i := bytes.Index(p, []byte("abcdefghij")); i >= 0 {
		p = bytes.Clone(p)
		p[i+3] = 'X'
	}
	return c.Conn.Write(p)
}

// TestBenchExitStatus proves "the exit status is 1 if any follower did not get exactly
// the published bytes": every follower's bytes are altered on the way, the report names
// them, and the error is not a usage error (status 1, not 2).
func TestBenchExitStatus(t *testing.T) {
	url := benchServer(t, func(ln net.Listener) net.Listener { return flipListener{ln} })
	out, _, err := runBench(t, "streams", url, "--streams", "2", "--followers", "3", "--lines", "10",
		"--transport", "raw", "--idle-wait", "10ms")
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("err %v (exit %d), want a failure with exit status 1", err, exitCode(err))
	}
	if !strings.Contains(err.Error(), "6 of 6 followers incomplete") || !strings.Contains(out, "INCOMPLETE f0") {
		t.Errorf("err %v; output:\n%s", err, out)
	}
}

// TestBenchUsage checks the command line: each mistake is a usage error (exit status 2)
// that says what is wrong.
func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "expected one of"},
		{[]string{"siege", "http://x"}, `unexpected argument siege`},
		{[]string{"fanout"}, "<url>"},
		{[]string{"fanout", "http://127.0.0.1:1", "--followers", "10,x"}, "--followers"},
		{[]string{"fanout", "http://127.0.0.1:1", "--followers", "10,0"}, "--followers 0"},
		{[]string{"streams", "http://127.0.0.1:1", "--followers", "1,2"}, "--followers"},
		{[]string{"ingest", "http://127.0.0.1:1", "--bytes", "lots"}, "--bytes"},
		{[]string{"fanout", "http://127.0.0.1:1", "--transport", "carrier-pigeon"}, "transport"},
		{[]string{"fanout", "http://127.0.0.1:1", "--source-addrs", "nowhere"}, "source address"},
		{[]string{"churn", "http://127.0.0.1:1", "--followers", "3"}, "unknown flag --followers"},
		{[]string{"fanout", "http://127.0.0.1:1", "--target", "pushpin"}, `--target`},
		{[]string{"fanout", "http://127.0.0.1:1", "--target", "nchan", "--transport", "raw"}, "sse only"},
		{[]string{"ingest", "http://127.0.0.1:1", "--target", "nchan", "--transport", "raw"}, "sse only"},
		{[]string{"streams", "http://127.0.0.1:1", "--target", "nchan", "--transport", "mix"}, "sse only"},
		{[]string{"churn", "http://127.0.0.1:1", "--target", "nchan"}, "unknown flag --target"},
		{[]string{"fanout", "http://127.0.0.1:1", "--protocol", "nats"}, `--protocol "nats": want busl or durable-streams`},
		{[]string{"streams", "http://127.0.0.1:1", "--target", "nchan", "--protocol", "durable-streams"}, "--protocol"},
		{[]string{"ingest", "http://127.0.0.1:1", "--target", "durable-streams", "--protocol", "busl"}, "--protocol"},
		{[]string{"fanout", "http://127.0.0.1:1", "--protocol", "durable-streams", "--transport", "raw"}, "sse, long-poll or mix"},
		{[]string{"streams", "http://127.0.0.1:1", "--target", "durable-streams", "--transport", "websocket"}, "sse, long-poll or mix"},
		{[]string{"fanout", "http://127.0.0.1:1", "--transport", "long-poll"}, "long-poll is Durable Streams'"},
		{[]string{"churn", "http://127.0.0.1:1", "--transport", "long-poll"}, "--transport"},
	} {
		_, stderr, err := runBench(t, tc.args...)
		var u usageError
		if !errors.As(err, &u) || exitCode(err) != 2 {
			t.Errorf("%q: err %v, want a usage error", tc.args, err)
			continue
		}
		if !strings.Contains(err.Error()+stderr, tc.want) {
			t.Errorf("%q: %v / %s; want it to say %q", tc.args, err, stderr, tc.want)
		}
	}
}

// TestBenchEnv proves that sluice bench's variables are its own: SLUICE_BENCH_RATE sets
// bench's --rate, and SLUICE_CONNECT_TIMEOUT, which is the clients', leaves bench's
// --connect-timeout alone (and the reverse), in either form of duration.
func TestBenchEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("SLUICE_BENCH_RATE", "7")
	t.Setenv("SLUICE_BENCH_CONNECT_TIMEOUT", "12")
	t.Setenv("SLUICE_CONNECT_TIMEOUT", "2s")
	c, err := parseArgs(t, "bench", "fanout", "http://127.0.0.1:1")
	if err != nil || c.Bench.Fanout.Bench.Rate != 7 || c.Bench.Fanout.Bench.ConnectTimeout != seconds(12*time.Second) {
		t.Errorf("bench: %v, rate %v, connect timeout %v; want 7 and 12s", err, c.Bench.Fanout.Bench.Rate, time.Duration(c.Bench.Fanout.Bench.ConnectTimeout))
	}
	c, err = parseArgs(t, "tail", "http://127.0.0.1:1/streams/k")
	if err != nil || c.Tail.Client.ConnectTimeout != seconds(2*time.Second) {
		t.Errorf("tail: %v, connect timeout %v; want 2s", err, time.Duration(c.Tail.Client.ConnectTimeout))
	}
}

// TestSize checks --bytes: units in powers of 1024 (KiB, MiB, GiB) and of 1000 (kB, MB,
// GB); anything else is refused.
func TestSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "64KiB": 64 << 10,
		"500MB": 500e6, "1048576": 1 << 20, "1.5GiB": 3 << 29, " 2 KiB ": 2048, "": 0} {
		var s size
		if err := s.UnmarshalText([]byte(in)); err != nil || int64(s) != want {
			t.Errorf("size %q = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"-1MB", "0", "1XB", "GiB", "1e30"} {
		var s size
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("size %q accepted as %d", in, s)
		}
	}
}
