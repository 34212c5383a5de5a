package http

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/file"
)

// TestHTTP2Followers proves followers on HTTP/2, whose connection cannot be hijacked:
// curl with --http2-prior-knowledge (h2c) follows a stream raw and as SSE, live, and
// gets every byte and a clean end when the stream closes; and two followers share one
// connection.
func TestHTTP2Followers(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: apt-get install curl (.ci/run does)")
	}
	ts := newTestServer(t, Config{}, file.Options{})
	subCreate(t, ts, "h2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	runCurl := func(args ...string) chan result {
		c := make(chan result, 1)
		cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "-N", "--http2-prior-knowledge", "-w", "\n%{http_version}"}, args...)...)
		go func() { out, err := cmd.Output(); c <- result{out, err} }()
		return c
	}
	raw := runCurl(ts.streamURL("h2"))
	sse := runCurl("-H", "Accept: text/event-stream", ts.streamURL("h2"))
	resEventually(t, 10*time.Second, "two HTTP/2 followers", func() (bool, string) {
		n := ts.fan.Followers()
		return n == 2, "followers"
	})
	content := []byte("over HTTP/2\n")
	subPublish(t, ts, "h2", 0, content, false)
	time.Sleep(50 * time.Millisecond) // the first bytes go out live, before the close
	subPublish(t, ts, "h2", int64(len(content)), []byte("and done"), true)
	r := <-raw
	if r.err != nil || string(r.out) != "over HTTP/2\nand done\n2" {
		t.Fatalf("raw over HTTP/2: %q, %v; want the bytes, then version 2", r.out, r.err)
	}
	s := <-sse
	if s.err != nil || !bytes.HasSuffix(s.out, []byte("\n2")) {
		t.Fatalf("SSE over HTTP/2: %q, %v", s.out, s.err)
	}
	got, ended, err := newSubSSE(bytes.NewReader(bytes.TrimSuffix(s.out, []byte("\n2"))), 0).rest()
	if err != nil || !ended || string(got) != "over HTTP/2\nand done" {
		t.Fatalf("SSE over HTTP/2: %q, ended %v, %v", got, ended, err)
	}
	if strings.Contains(string(r.out), "\r\n0\r\n") {
		t.Fatal("HTTP/1.1 chunk framing in an HTTP/2 body")
	}
}
