package bench

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkComplete asserts a report in which every follower got every line.
func checkComplete(t *testing.T, rep *Report, followers int, lines int64, lineSize int) {
	t.Helper()
	if rep.Complete != followers || len(rep.Incomplete) != 0 || !rep.OK() {
		t.Fatalf("%d of %d complete; incomplete: %+v; producer errors: %v", rep.Complete, followers, rep.Incomplete, rep.Producers.Errors)
	}
	p := rep.Producers
	if p.Lines != lines || p.Bytes != lines*int64(lineSize) {
		t.Errorf("producers sent %d lines, %d bytes; want %d, %d", p.Lines, p.Bytes, lines, lines*int64(lineSize))
	}
	if rep.Latency.Count != uint64(followers)*uint64(lines/int64(rep.Streams)) {
		t.Errorf("%d latencies recorded, want one per line per follower: %d", rep.Latency.Count, followers*int(lines)/rep.Streams)
	}
	if rep.Latency.P50Ms <= 0 || rep.Latency.P50Ms > rep.Latency.P99Ms || rep.Latency.P99Ms > rep.Latency.MaxMs {
		t.Errorf("latency percentiles out of order: %+v", rep.Latency)
	}
	if rep.Connect.OK != followers || rep.Connect.Failed != 0 || rep.Connect.Time.Count != uint64(followers) {
		t.Errorf("connect: %+v", rep.Connect)
	}
	s := rep.Server
	if !s.Before.OK || !s.Idle.OK || !s.After.OK || s.Before.Goroutines == 0 || s.After.RSSBytes == 0 {
		t.Fatalf("server samples missing: %+v", s)
	}
	if s.Idle.Followers != float64(followers) || s.Peak.Followers < float64(followers) || s.After.Followers != 0 {
		t.Errorf("server followers: idle %v, peak %v, after %v; want %d, %d, 0", s.Idle.Followers, s.Peak.Followers, s.After.Followers, followers, followers)
	}
}

// TestFanoutComplete runs 20 SSE followers of one stream with 100 lines published as
// fast as possible, against a real server: every follower complete, one latency per
// line per follower, and the server's figures read from its /metrics.
func TestFanoutComplete(t *testing.T) {
	url := startServer(t, nil)
	reps, err := Fanout(context.Background(), small(url, 0), []int{20}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := reps[0]
	if rep.Mode != "fanout" || rep.Followers != 20 || rep.Streams != 1 {
		t.Errorf("report shape: mode %q, %d followers, %d streams", rep.Mode, rep.Followers, rep.Streams)
	}
	checkComplete(t, rep, 20, 100, 128)
	var out bytes.Buffer
	rep.WriteTable(&out)
	for _, want := range []string{"20 of 20 followers got every byte", "p99", "per idle follower", "goroutines"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestStreamsMixedTransports runs 3 streams × 6 followers, SSE, raw and WebSocket mixed,
// each producer at a rate: all complete, and the rate kept.
func TestStreamsMixedTransports(t *testing.T) {
	url := startServer(t, nil)
	cfg := small(url, 6)
	cfg.Streams, cfg.Transport, cfg.Rate, cfg.Lines, cfg.LineSize = 3, "mix", 200, 60, 100
	rep, err := Streams(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, rep, 18, 180, 100)
	// A producer never sends a line before its time, so it never beats the asked rate.
	if rep.Producers.RateMin <= 0 || rep.Producers.RateMean > 200*1.001 {
		t.Errorf("producers kept %.1f lines/s on average, %.1f at worst; asked 200", rep.Producers.RateMean, rep.Producers.RateMin)
	}
}

// TestIngestKeepsUp publishes 4 MiB as fast as the server takes it to 2 raw followers:
// both complete, throughput in and out reported.
func TestIngestKeepsUp(t *testing.T) {
	url := startServer(t, nil)
	cfg := small(url, 2)
	cfg.Lines, cfg.Bytes = 0, 4<<20
	rep, err := Ingest(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, rep, 2, 4096, 1024)
	if rep.Throughput.InMBps <= 0 || rep.Throughput.OutMBps <= 0 {
		t.Errorf("throughput %+v", rep.Throughput)
	}
}

// faultListener hands out connections that corrupt what the server writes to one
// follower, found by its Request-Id: the first write that carries line padding is
// dropped, written twice, or has one byte changed. Dropping or repeating a whole write
// keeps HTTP chunking intact (the server writes one chunk per write), so only the bench's
// own checks can notice.
type faultListener struct {
	net.Listener
	victim string // e.g. "-f7\r\n", the end of the Request-Id header line
	fault  string // drop, dup or flip
}

func (l *faultListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, l: l}, nil
}

type faultConn struct {
	net.Conn
	l      *faultListener
	mu     sync.Mutex
	req    []byte
	victim bool
	done   bool
}

func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if len(c.req) < 8<<10 {
		c.req = append(c.req, p[:n]...)
		c.victim = bytes.Contains(c.req, []byte(c.l.victim))
	}
	c.mu.Unlock()
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	hit := c.victim && !c.done && bytes.Contains(p, []byte("abcdefghij"))
	c.done = c.done || hit
	c.mu.Unlock()
	if !hit {
		return c.Conn.Write(p)
	}
	switch c.l.fault {
	case "drop":
		return len(p), nil
	case "dup":
		if _, err := c.Conn.Write(p); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	default: // flip: one padding letter, same length
		q := bytes.Clone(p)
		q[bytes.Index(q, []byte("abcdefghij"))+4] = 'E'
		return c.Conn.Write(q)
	}
}

// TestVerificationCatchesFaults proves the verification can fail: the server's bytes to
// exactly one follower (f7) are dropped, duplicated or changed on the way, and the report
// names that follower, and only it, incomplete, with the reason; in busl's protocol and
// in Durable Streams (where a long-poll answer dropped whole would leave f7 waiting for
// it until the run's end).
func TestVerificationCatchesFaults(t *testing.T) {
	for _, tc := range []struct{ protocol, transport, fault, reason string }{
		{"busl", "raw", "drop", "arrived where line|the producer sent"}, // the latter if the write held every line
		{"busl", "raw", "dup", "arrived where line"},
		{"busl", "sse", "drop", "arrived where line|after 0 bytes"},
		{"busl", "sse", "dup", "arrived where line"},
		{"busl", "raw", "flip", "checksum"},
		{"busl", "sse", "flip", "checksum"},
		{"busl", "websocket", "flip", "checksum"},
		{"durable-streams", "sse", "drop", "arrived where line|the producer sent"},
		{"durable-streams", "sse", "dup", "arrived where line"},
		{"durable-streams", "sse", "flip", "checksum"},
		{"durable-streams", "long-poll", "dup", "arrived where line"},
		{"durable-streams", "long-poll", "flip", "checksum"},
	} {
		t.Run(tc.protocol+"-"+tc.transport+"-"+tc.fault, func(t *testing.T) {
			url := startServer(t, func(ln net.Listener) net.Listener {
				return &faultListener{Listener: ln, victim: "-f7\r\n", fault: tc.fault}
			})
			cfg := small(url, 12)
			cfg.Protocol, cfg.Transport, cfg.Rate, cfg.Lines = tc.protocol, tc.transport, 400, 40 // lines in several writes
			rep := onlyF7Incomplete(t, cfg, tc.reason)
			var out bytes.Buffer
			rep.WriteTable(&out)
			if !strings.Contains(out.String(), "INCOMPLETE f7") {
				t.Errorf("the table does not name f7:\n%s", out.String())
			}
		})
	}
}

// onlyF7Incomplete runs streams with cfg, in which a fault hits the bytes of follower
// f7 alone, and checks that the report names f7, and only it, incomplete, with a reason
// that matches the regular expression reason.
func onlyF7Incomplete(t *testing.T, cfg Config, reason string) *Report {
	t.Helper()
	rep, err := Streams(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Complete != rep.Followers-1 || len(rep.Incomplete) != 1 {
		t.Fatalf("%d complete, incomplete %+v; want exactly f7 incomplete", rep.Complete, rep.Incomplete)
	}
	inc := rep.Incomplete[0]
	if inc.Name != "f7" || !regexp.MustCompile(reason).MatchString(inc.Reason) {
		t.Errorf("incomplete %+v, want f7 with %q", inc, reason)
	}
	t.Logf("f7: %s", inc.Reason)
	return rep
}

// TestRunBounded checks that a run stops by itself: followers of a stream whose
// producer never ends are cut at the run's timeout and reported incomplete.
func TestRunBounded(t *testing.T) {
	url := startServer(t, nil)
	cfg := small(url, 3)
	cfg.Lines, cfg.Duration, cfg.Rate = 0, time.Hour, 10
	cfg.Timeout = 2 * time.Second
	start := time.Now()
	rep, err := Streams(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the run took %v with a 2s timeout", d)
	}
	if rep.Complete != 0 || len(rep.Incomplete) != 3 || len(rep.Producers.Errors) != 1 {
		t.Errorf("complete %d, incomplete %d, producer errors %v; want 0, 3, 1", rep.Complete, len(rep.Incomplete), rep.Producers.Errors)
	}
}
