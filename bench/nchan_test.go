package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/nginxtest"
)

// startNchan runs nginx with Nchan, configured by the shipped deploy/nchan-bench.conf
// on a free loopback port, and returns its base URL and the master's pid.
func startNchan(t *testing.T) (url string, pid int) {
	t.Helper()
	return nginxtest.StartNchan(t, "../deploy/nchan-bench.conf")
}

// TestNchanFanout drives real Nchan (nginx with the shipped deploy/nchan-bench.conf) as
// `sluice bench fanout --target nchan` does: each line POSTed as one message, 20 SSE
// followers that each get every line, in order, once, exactly the published bytes, and
// the end (Nchan's ":410" when the channel is deleted). The server's figures come from
// /proc for nginx's master and its worker: the worker's subscriber sockets count, so the
// open files rise by one per follower while they wait.
func TestNchanFanout(t *testing.T) {
	url, pid := startNchan(t)
	cfg := small(url, 0)
	cfg.Target, cfg.ServerPID, cfg.Lines, cfg.Rate = "nchan", pid, 30, 200
	reps, err := Fanout(context.Background(), cfg, []int{20}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := reps[0]
	if rep.Complete != 20 || len(rep.Incomplete) != 0 || !rep.OK() {
		t.Fatalf("%d of 20 complete; incomplete %+v; producer errors %v", rep.Complete, rep.Incomplete, rep.Producers.Errors)
	}
	if rep.Target != "nchan" || rep.Producers.Lines != 30 || rep.Producers.Bytes != 30*128 || rep.Latency.Count != 20*30 {
		t.Errorf("target %q, %d lines, %d bytes, %d latencies; want nchan, 30, 3840, 600",
			rep.Target, rep.Producers.Lines, rep.Producers.Bytes, rep.Latency.Count)
	}
	s := rep.Server
	if !s.Before.OK || !s.Idle.OK || !s.After.OK || s.Before.Metrics || s.PID != pid {
		t.Fatalf("server samples from /proc of %d: %+v", pid, s)
	}
	if s.Idle.OpenFDs < s.Before.OpenFDs+20 || s.Before.RSSBytes <= 0 || s.Delivered.CPUSeconds < s.Before.CPUSeconds {
		t.Errorf("server: open files %v before, %v idle (want 20 more); RSS %v; CPU %v → %v",
			s.Before.OpenFDs, s.Idle.OpenFDs, s.Before.RSSBytes, s.Before.CPUSeconds, s.Delivered.CPUSeconds)
	}
	var out bytes.Buffer
	rep.WriteTable(&out)
	for _, want := range []string{"(nchan)", "20 of 20 followers got every byte", "from /proc: process", "open files"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "goroutines") {
		t.Errorf("the table shows goroutines, which Nchan has not:\n%s", out.String())
	}
}

// TestNchanStreams runs streams --target nchan: 3 channels with a producer and 4 SSE
// followers each, all at once, at a rate: every follower gets its own channel's lines,
// all of them, once, and the end.
func TestNchanStreams(t *testing.T) {
	url, pid := startNchan(t)
	cfg := small(url, 4)
	cfg.Target, cfg.ServerPID, cfg.Streams, cfg.Lines, cfg.Rate = TargetNchan, pid, 3, 30, 200
	rep, err := Streams(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "streams" || rep.Complete != 12 || !rep.OK() {
		t.Fatalf("mode %q, %d of 12 complete; incomplete %+v; producer errors %v", rep.Mode, rep.Complete, rep.Incomplete, rep.Producers.Errors)
	}
	if rep.Protocol != protocolNchan || rep.Producers.Count != 3 || rep.Producers.Lines != 90 || rep.Latency.Count != 12*30 {
		t.Errorf("protocol %q, %d producers, %d lines, %d latencies; want nchan, 3, 90, 360",
			rep.Protocol, rep.Producers.Count, rep.Producers.Lines, rep.Latency.Count)
	}
}

// TestNchanVerificationCatchesFaults proves the checks hold against Nchan too: between
// the bench and nginx, a proxy drops, duplicates or changes the first write of lines to
// exactly one follower (f7), and the report names that follower, and only it, incomplete.
func TestNchanVerificationCatchesFaults(t *testing.T) {
	upstream, _ := startNchan(t)
	for _, tc := range []struct{ fault, reason string }{
		{"drop", "arrived where line|the producer sent"},
		{"dup", "arrived where line"},
		{"flip", "checksum"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + ln.Addr().String()
			proxy(t, &faultListener{Listener: ln, victim: "-f7\r\n", fault: tc.fault}, strings.TrimPrefix(upstream, "http://"))
			cfg := small(url, 12)
			cfg.Target, cfg.Rate, cfg.Lines = "nchan", 400, 40 // lines in several writes
			onlyF7Incomplete(t, cfg, tc.reason)
		})
	}
}

// proxy forwards every connection ln accepts to upstream, byte for byte, until the test
// ends. Writes to the client go through ln's connections, one per read from upstream.
func proxy(t *testing.T, ln net.Listener, upstream string) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	conns = []net.Conn{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			if !track(c) || !track(u) {
				c.Close()
				u.Close()
				return
			}
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				// Hide src's WriteTo, so that each read from upstream is one Write to dst.
				io.CopyBuffer(dst, struct{ io.Reader }{src}, make([]byte, 32<<10))
				dst.Close() // either side's end ends the exchange
				src.Close()
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
}
