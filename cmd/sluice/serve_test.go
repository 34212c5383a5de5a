package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/sse"
)

// bound is the failure bound of every wait in these tests: generous, never a timing
// assertion.
const bound = 15 * time.Second

// childEnv is the test's environment without PORT and SLUICE_* variables, so that only
// the flags a test passes configure its server.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") && !strings.HasPrefix(kv, "PORT=") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// proc is a sluice serve child process.
type proc struct {
	addr, url string
	log       string // the file of its stdout and stderr
	cmd       *exec.Cmd
	done      chan struct{} // closed once the process has exited and been waited for
	waitErr   error         // cmd.Wait's result, set before done is closed
}

// startSluice runs `sluice serve --addr addr --data-dir dataDir args...` and waits until
// /readyz answers 200. The process is killed when the test ends, and its log is shown if
// the test failed.
func startSluice(t *testing.T, addr, dataDir string, args ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "sluice-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(sluiceBin, append([]string{"serve", "--addr", addr, "--data-dir", dataDir}, args...)...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{addr: addr, url: "http://" + addr, log: logf.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // an error only means it has exited already
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("log of sluice on %s:\n%s", addr, b)
		}
	})
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(bound)
	for {
		select {
		case <-p.done:
			t.Fatalf("sluice exited before it was ready: %v", p.waitErr)
		default:
		}
		if resp, err := c.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice on %s not ready after %v", addr, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits for the process to exit, failing the test after d.
func (p *proc) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("sluice on %s still running after %v", p.addr, d)
	}
}

// newClient returns a client with its own connection pool, closed when the test ends.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// testContent returns n bytes of numbered lines, so that any misplaced, lost or
// duplicated run shows.
func testContent(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %06d %s\n", i, strings.Repeat(string(rune('a'+i%26)), i%50))
	}
	return b.Bytes()[:n]
}

// reply is a response with its body read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) length(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Stream-Length"))
	if err != nil {
		t.Fatalf("Stream-Length %q: %v", r.header.Get("Stream-Length"), err)
	}
	return n
}

func (r reply) closed() bool { return r.header.Get("Stream-Closed") == "true" }

// do sends a request and reads the whole response.
func do(t *testing.T, c *http.Client, method, url string, body []byte, header ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// waitLength polls HEAD until the stream's length is at least n: the server has stored
// (acknowledged) n bytes.
func waitLength(t *testing.T, c *http.Client, url string, n int) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		r := do(t, c, http.MethodHead, url, nil)
		if r.status == http.StatusOK && r.length(t) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD %s: %d %v; want length >= %d", url, r.status, r.header, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publication is a chunked POST whose body the test writes piece by piece.
type publication struct {
	w    *io.PipeWriter
	done chan reply // the response, or a reply with status 0 on a connection error
	err  error      // the connection error, set before done is sent on
}

// startPublish POSTs a body that stays open until the test closes w.
func startPublish(t *testing.T, c *http.Client, url string, header ...string) *publication {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url, pr) // unknown length: chunked
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	p := &publication{w: pw, done: make(chan reply, 1)}
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			p.err = err
			p.done <- reply{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		p.done <- reply{resp.StatusCode, resp.Header, b}
	}()
	// However the test ends, the body is cut (never ended cleanly) and the request ends.
	t.Cleanup(func() {
		pw.CloseWithError(errors.New("test over"))
		select {
		case r := <-p.done:
			p.done <- r
		case <-time.After(bound):
			t.Errorf("publish to %s did not end", url)
		}
	})
	return p
}

func (p *publication) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.w.Write(b); err != nil {
		t.Fatalf("writing the publish body: %v", err)
	}
}

// result waits for the publication's response or connection error.
func (p *publication) result(t *testing.T) (reply, error) {
	t.Helper()
	select {
	case r := <-p.done:
		p.done <- r
		return r, p.err
	case <-time.After(bound):
		t.Fatal("no response to the publish")
		return reply{}, nil
	}
}

// TestKill9KeepsAcknowledgedBytes proves "nothing acknowledged is lost; a restarted
// server serves every stream it had" against SIGKILL with the default --fsync-interval:
// every byte the server acknowledged (a publish's Stream-Length, HEAD) is there after a
// restart on the same data dir, the stream is open and resumable from HEAD's length
// with Stream-Offset, a resend from 0 has its overlap skipped, and a stream closed before
// the kill is still closed with all its bytes.
func TestKill9KeepsAcknowledgedBytes(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	srv := startSluice(t, addr, dir)
	c := newClient(t)
	url := srv.url + "/streams/kill/live"
	closedURL := srv.url + "/streams/kill/closed"
	content := testContent(256 << 10)
	finished := testContent(70_000)
	const chunk = 16 << 10

	// A finished stream, closed by the clean end of its body.
	if r := do(t, c, http.MethodPost, closedURL, finished); r.status != http.StatusOK || !r.closed() || r.length(t) != len(finished) {
		t.Fatalf("publish closed stream: %d %v", r.status, r.header)
	}

	// Four chunks in separate POSTs, each acknowledged.
	acked := 0
	for i := range 4 {
		r := do(t, c, http.MethodPost, url, content[acked:acked+chunk],
			"Stream-Offset", strconv.Itoa(acked), "Stream-Close", "false")
		if r.status != http.StatusOK || r.closed() || r.length(t) != acked+chunk {
			t.Fatalf("publish %d: %d %v %q", i, r.status, r.header, r.body)
		}
		acked = r.length(t)
	}

	// Then one long body: each chunk is acknowledged once HEAD shows it stored. The last
	// half chunk is sent but not waited for, and the server dies with the body open.
	pub := startPublish(t, c, url, "Stream-Offset", strconv.Itoa(acked), "Stream-Close", "false")
	for range 6 {
		pub.write(t, content[acked:acked+chunk])
		waitLength(t, c, url, acked+chunk)
		acked += chunk
	}
	if r := do(t, c, http.MethodHead, url, nil); r.length(t) != acked || r.closed() {
		t.Fatalf("HEAD before the kill: %v, want length %d, open", r.header, acked)
	}
	sent := acked + chunk/2
	pub.write(t, content[acked:sent])

	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.waitExit(t, bound)
	pub.w.CloseWithError(errors.New("producer saw the server die"))
	if r, err := pub.result(t); err == nil {
		t.Fatalf("publish cut by SIGKILL got a response: %d %v", r.status, r.header)
	}
	c.CloseIdleConnections()

	srv = startSluice(t, addr, dir)
	head := do(t, c, http.MethodHead, url, nil)
	if head.status != http.StatusOK || head.closed() {
		t.Fatalf("HEAD after restart: %d %v, want 200 and open", head.status, head.header)
	}
	length := head.length(t)
	if length < acked || length > sent {
		t.Fatalf("after restart length %d; acknowledged %d, sent %d", length, acked, sent)
	}
	got := do(t, c, http.MethodGet, url+"?follow=false", nil)
	if got.status != http.StatusOK || len(got.body) != length || !bytes.Equal(got.body, content[:len(got.body)]) {
		t.Fatalf("GET after restart: %d, %d bytes (length %d); a prefix of the content: %v",
			got.status, len(got.body), length, bytes.Equal(got.body, content[:min(len(got.body), len(content))]))
	}

	// Resume from HEAD's length, then resend everything from 0 and close: the overlap is
	// skipped, and each byte is stored exactly once.
	mid := length + (len(content)-length)/2
	if r := do(t, c, http.MethodPost, url, content[length:mid],
		"Stream-Offset", strconv.Itoa(length), "Stream-Close", "false"); r.status != http.StatusOK || r.length(t) != mid || r.closed() {
		t.Fatalf("resume at %d: %d %v %q", length, r.status, r.header, r.body)
	}
	if r := do(t, c, http.MethodPost, url, content); r.status != http.StatusOK || r.length(t) != len(content) || !r.closed() {
		t.Fatalf("resend from 0: %d %v %q, want 200, length %d, closed", r.status, r.header, r.body, len(content))
	}
	if got := do(t, c, http.MethodGet, url, nil); got.status != http.StatusOK || !bytes.Equal(got.body, content) {
		t.Fatalf("final stream: %d, %d bytes, equal to the content: %v", got.status, len(got.body), bytes.Equal(got.body, content))
	}

	// The stream closed before the kill.
	if r := do(t, c, http.MethodHead, closedURL, nil); r.status != http.StatusOK || !r.closed() ||
		r.length(t) != len(finished) || r.header.Get("Content-Length") != strconv.Itoa(len(finished)) {
		t.Fatalf("HEAD closed stream after restart: %d %v", r.status, r.header)
	}
	if got := do(t, c, http.MethodGet, closedURL, nil); got.status != http.StatusOK || !bytes.Equal(got.body, finished) {
		t.Fatalf("closed stream after restart: %d, %d bytes", got.status, len(got.body))
	}
	if r := do(t, c, http.MethodPost, closedURL, []byte("more"), "Stream-Offset", strconv.Itoa(len(finished))); r.status != http.StatusConflict {
		t.Fatalf("append to the closed stream after restart: %d, want 409", r.status)
	}
}

// follower collects what one follower receives, until its response ends.
type follower struct {
	name string
	mu   sync.Mutex
	got  []byte
	err  error         // why it ended
	done chan struct{} // closed when it has ended
}

func newFollower(name string) *follower { return &follower{name: name, done: make(chan struct{})} }

func (f *follower) add(b []byte) {
	f.mu.Lock()
	f.got = append(f.got, b...)
	f.mu.Unlock()
}

func (f *follower) end(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	close(f.done)
}

func (f *follower) bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// waitFor waits until the follower has received n bytes.
func (f *follower) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for len(f.bytes()) < n {
		select {
		case <-f.done:
			t.Fatalf("%s follower ended after %d of %d bytes: %v", f.name, len(f.bytes()), n, f.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s follower has %d of %d bytes after %v", f.name, len(f.bytes()), n, bound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wait waits for the follower's response to end and returns why.
func (f *follower) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-f.done:
		return f.err
	case <-time.After(bound):
		t.Fatalf("%s follower still attached after %v", f.name, bound)
		return nil
	}
}

// getFollower GETs url with header and passes the open response to read in a goroutine
// that ends the follower; the response body is closed when read returns.
func getFollower(t *testing.T, c *http.Client, name, url string, read func(*follower, io.Reader) error, header ...string) *follower {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s follower: %v", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("%s follower: status %d", name, resp.StatusCode)
	}
	f := newFollower(name)
	go func() {
		defer resp.Body.Close()
		f.end(read(f, resp.Body))
	}()
	t.Cleanup(func() { resp.Body.Close(); <-f.done })
	return f
}

// TestSIGTERMDrains proves PROTOCOL.md "Shutdown" on the real binary: on SIGTERM the
// server answers /readyz with 503 (or no longer accepts), aborts raw followers so that
// they resume, ends SSE followers without `event: end` and WebSocket followers with
// close code 1012 so that they reconnect, stops reading an open publish with every
// received byte stored (503 with Stream-Length, or a cut connection), and exits 0 within
// the grace period. After a restart every byte any follower saw and every byte the
// publisher was told is stored, and the stream is open and resumable.
func TestSIGTERMDrains(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	srv := startSluice(t, addr, dir, "--shutdown-grace", "10s")
	c := newClient(t)
	path := "/streams/drain/live"
	url := srv.url + path
	content := testContent(96 << 10)
	first, sent := 10_000, 40_000

	if r := do(t, c, http.MethodPut, url, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d", r.status)
	}
	pub := startPublish(t, c, url, "Stream-Close", "false")
	pub.write(t, content[:first])

	raw := getFollower(t, c, "raw", url, func(f *follower, r io.Reader) error {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			f.add(buf[:n])
			if err != nil {
				return err
			}
		}
	})
	var sawEnd bool
	var retry time.Duration
	sseF := getFollower(t, c, "SSE", url, func(f *follower, r io.Reader) error {
		d := sse.NewDecoder(r)
		defer func() { retry, _ = d.Retry() }()
		n := 0
		for {
			ev, err := d.Next()
			if err != nil {
				return err
			}
			if ev.Type == "end" {
				sawEnd = true
				continue
			}
			b, err := ev.Bytes()
			if err != nil {
				return err
			}
			if n += len(b); ev.ID != strconv.Itoa(n) {
				return fmt.Errorf("event id %s after %d bytes", ev.ID, n)
			}
			f.add(b)
		}
	}, "Accept", "text/event-stream")

	ctx, cancel := context.WithTimeout(context.Background(), 2*bound)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+path, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("WebSocket follower: %v", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	wsF := newFollower("WebSocket")
	go func() {
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				wsF.end(err)
				return
			}
			wsF.add(b)
		}
	}()
	t.Cleanup(func() { ws.CloseNow(); <-wsF.done })

	followers := []*follower{raw, sseF, wsF}
	for _, f := range followers {
		f.waitFor(t, first)
	}
	pub.write(t, content[first:sent])
	for _, f := range followers {
		f.waitFor(t, sent)
	}

	sigterm := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Raw: aborted, not a clean end (which would mean "stream closed").
	if err := raw.wait(t); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("raw follower ended with %v, want an aborted response", err)
	}
	// The drain has begun (it aborted the raw follower): not ready any more.
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := probe.Get(srv.url + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz while draining: %d, want 503 or a closed listener", resp.StatusCode)
		}
	}
	// SSE: ended without `event: end`, so that the browser reconnects after its retry.
	sseErr := sseF.wait(t)
	if sawEnd {
		t.Errorf("SSE follower got `event: end` from a shutdown (its stream is open); ended with %v", sseErr)
	}
	if retry != time.Second {
		t.Errorf("SSE retry = %v, want the default 1s", retry)
	}
	// WebSocket: close code 1012, service restart.
	if err := wsF.wait(t); websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Errorf("WebSocket follower ended with %v (status %d), want close code 1012", err, websocket.CloseStatus(err))
	}
	for _, f := range followers {
		if got := f.bytes(); !bytes.Equal(got, content[:sent]) {
			t.Errorf("%s follower got %d bytes, equal to what was published: %v", f.name, len(got), bytes.Equal(got, content[:min(len(got), sent)]))
		}
	}
	// The publisher: 503 with every received byte stored, or a cut connection.
	told := 0
	r, err := pub.result(t)
	t.Logf("publish cut by shutdown: status %d, Stream-Length %q, connection error %v", r.status, r.header.Get("Stream-Length"), err)
	if err == nil {
		if r.status != http.StatusServiceUnavailable || r.closed() {
			t.Errorf("publish cut by shutdown: %d %v %q, want 503, open", r.status, r.header, r.body)
		}
		if told = r.length(t); told != sent {
			t.Errorf("publish cut by shutdown: Stream-Length %d, want %d (all received bytes)", told, sent)
		}
	}
	// Exit status 0, within the grace period (a failure bound, not a timing claim).
	srv.waitExit(t, 10*time.Second-time.Since(sigterm))
	if srv.waitErr != nil {
		t.Errorf("sluice exited with %v after SIGTERM, want status 0", srv.waitErr)
	}
	c.CloseIdleConnections()

	srv = startSluice(t, addr, dir)
	head := do(t, c, http.MethodHead, url, nil)
	if head.status != http.StatusOK || head.closed() {
		t.Fatalf("HEAD after restart: %d %v, want 200, open", head.status, head.header)
	}
	length := head.length(t)
	if length < sent || length < told {
		t.Fatalf("after restart length %d; followers saw %d, publisher was told %d", length, sent, told)
	}
	if got := do(t, c, http.MethodGet, url+"?follow=false", nil); !bytes.Equal(got.body, content[:length]) {
		t.Fatalf("after restart the stream holds %d bytes, want content[:%d]", len(got.body), length)
	}
	if r := do(t, c, http.MethodPost, url, content[length:], "Stream-Offset", strconv.Itoa(length)); r.status != http.StatusOK || !r.closed() || r.length(t) != len(content) {
		t.Fatalf("resumed publish at %d: %d %v %q", length, r.status, r.header, r.body)
	}
	if got := do(t, c, http.MethodGet, url, nil); !bytes.Equal(got.body, content) {
		t.Fatalf("final stream: %d bytes, want the %d published", len(got.body), len(content))
	}
}

// listeningPorts returns the TCP ports process pid listens on, from /proc (Linux).
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	sockets := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			sockets[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue // no IPv6
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !sockets[f[9]] { // 0A: LISTEN; f[9]: inode
				continue
			}
			port, err := strconv.ParseUint(f[1][strings.LastIndexByte(f[1], ':')+1:], 16, 16)
			if err != nil {
				t.Fatalf("%s: %q: %v", table, line, err)
			}
			ports = append(ports, int(port))
		}
	}
	slices.Sort(ports)
	return ports
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDebugListener proves --debug-addr serves /debug/pprof/ and /metrics (the server's
// own registry) on its own listener, off the public port, and that it is off by default:
// the process then listens on the public port only, and that has no /debug/pprof/.
func TestDebugListener(t *testing.T) {
	c := newClient(t)

	plainAddr := freeAddr(t)
	plain := startSluice(t, plainAddr, t.TempDir())
	if got := listeningPorts(t, plain.cmd.Process.Pid); !slices.Equal(got, []int{port(t, plainAddr)}) {
		t.Errorf("without --debug-addr sluice listens on %v, want only %d", got, port(t, plainAddr))
	}
	if r := do(t, c, http.MethodGet, plain.url+"/debug/pprof/", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the public port: %d, want 404", r.status)
	}

	addr, debugAddr := freeAddr(t), freeAddr(t)
	srv := startSluice(t, addr, t.TempDir(), "--debug-addr", debugAddr)
	want := []int{port(t, addr), port(t, debugAddr)}
	slices.Sort(want)
	if got := listeningPorts(t, srv.cmd.Process.Pid); !slices.Equal(got, want) {
		t.Errorf("with --debug-addr sluice listens on %v, want %v", got, want)
	}
	if r := do(t, c, http.MethodGet, srv.url+"/debug/pprof/", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the public port: %d, want 404", r.status)
	}
	debug := "http://" + debugAddr
	if r := do(t, c, http.MethodGet, debug+"/debug/pprof/", nil); r.status != http.StatusOK || !bytes.Contains(r.body, []byte("goroutine")) {
		t.Errorf("GET /debug/pprof/ on the debug port: %d %.200q", r.status, r.body)
	}
	if r := do(t, c, http.MethodGet, debug+"/debug/pprof/goroutine?debug=1", nil); r.status != http.StatusOK || !bytes.Contains(r.body, []byte("goroutine profile:")) {
		t.Errorf("goroutine profile on the debug port: %d %.200q", r.status, r.body)
	}
	if r := do(t, c, http.MethodPost, srv.url+"/streams/debug/metrics", []byte("12345")); r.status != http.StatusOK {
		t.Fatalf("publish: %d", r.status)
	}
	r := do(t, c, http.MethodGet, debug+"/metrics", nil)
	for _, m := range []string{"go_goroutines ", "process_open_fds ", "sluice_published_bytes_total 5\n",
		`sluice_build_info{version="`, "sluice_disk_bytes 5\n", "sluice_fsync_seconds_count "} {
		if !bytes.Contains(r.body, []byte(m)) {
			t.Errorf("debug /metrics (%d) lacks %q", r.status, m)
		}
	}
}

// TestMaxCompressedFlag: a whole read of a closed stream is gzipped for a client that
// accepts it, unless --max-compressed 0 turns compression off.
func TestMaxCompressedFlag(t *testing.T) {
	c := newClient(t)
	for _, tc := range []struct {
		args     []string
		encoding string
	}{{nil, "gzip"}, {[]string{"--max-compressed", "0"}, ""}} {
		srv := startSluice(t, freeAddr(t), t.TempDir(), tc.args...)
		body := bytes.Repeat([]byte("a line of a build log\n"), 1000)
		if r := do(t, c, http.MethodPost, srv.url+"/streams/z", body, "Stream-Close", "true"); r.status/100 != 2 {
			t.Fatalf("publish: %d", r.status)
		}
		r := do(t, c, http.MethodGet, srv.url+"/streams/z", nil, "Accept-Encoding", "gzip")
		if got := r.header.Get("Content-Encoding"); got != tc.encoding {
			t.Errorf("sluice serve %v: Content-Encoding %q, want %q", tc.args, got, tc.encoding)
		}
	}
}
