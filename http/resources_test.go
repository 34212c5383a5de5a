//go:build unix

// Resource tests: followers cost bounded memory, whatever they do, and leave nothing
// behind when they go. PROTOCOL.md, "Errors": "No request can crash the server, leak a
// goroutine, or leave a stream in a state this file does not describe."
//
// The followers here are raw TCP connections with the request written by hand and the
// response read with http.ReadResponse: they cost the client no goroutine and no
// transport, so the goroutine counts measured in this process are the server's, and the
// *net.TCPConn is at hand to reset the connection abruptly.

package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/file"
)

// TestVanishedFollowersLeaveNothing proves that followers that vanish abruptly (TCP
// reset, no FIN, no goodbye) cost nothing once gone: 1,000 raw, SSE and WebSocket
// followers of a stream being published to each get their headers and first bytes, then
// all are reset at once; the sluice_followers gauge returns to 0 and the process's
// goroutines return to their count before the followers came. ("No request can ...
// leak a goroutine.")
func TestVanishedFollowersLeaveNothing(t *testing.T) {
	const n = 1000
	resNeedFDs(t, 2*n+256)
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	addr := strings.TrimPrefix(ts.url, "http://")
	path := "/streams/resources/vanish"
	pub := resStartPublisher(t, ts.url+path, 500*time.Millisecond)
	first := string(resLogLine(nil, 0))
	resEventually(t, 10*time.Second, "the first line is stored", func() (bool, string) {
		l := resLength(t, ts.url+path)
		return l >= int64(len(first)), fmt.Sprintf("Stream-Length %d", l)
	})
	kindOf := func(i int) string {
		switch {
		case i%100 == 0:
			return "websocket" // 10 of them
		case i%2 == 0:
			return "sse"
		}
		return "raw"
	}
	follow := func(i int) (*resFollower, error) {
		f, err := resDial(addr, path, kindOf(i))
		if err != nil {
			return nil, err
		}
		return f, f.checkFirst(kindOf(i), first)
	}

	// Warm up: one follower of each kind, gone again, so that whatever the server starts
	// lazily is in the baseline.
	for i := range 3 {
		f, err := follow(i)
		if f != nil {
			f.reset()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resEventually(t, 10*time.Second, "warm-up followers gone", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == 0, fmt.Sprintf("sluice_followers %v", v)
	})
	base := resSteadyGoroutines()

	fs := resConnect(t, n, follow)
	if v := resMetric(t, ts.url, "sluice_followers"); v != n {
		t.Fatalf("sluice_followers = %v with %d followers connected", v, n)
	}
	t.Logf("goroutines: %d before the followers, %d with %d connected", base, runtime.NumGoroutine(), n)

	for _, f := range fs {
		f.reset()
	}
	resEventually(t, 15*time.Second, "sluice_followers back to 0", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == 0, fmt.Sprintf("sluice_followers %v", v)
	})
	resEventually(t, 15*time.Second, "goroutines back to the baseline", func() (bool, string) {
		g := runtime.NumGoroutine()
		return g <= base, fmt.Sprintf("%d goroutines, baseline %d", g, base)
	})
	if err := pub.finish(); err != nil {
		t.Fatalf("publisher: %v", err)
	}
}

// TestStalledFollowerHoldsNoData proves that a follower that never reads costs the server
// no memory for what it has not taken and does not hold up the producer: followers read
// the store at their own pace, with no queue of their own, and one whose write stalls
// past Config.WriteTimeout is dropped (raw: "When the server must drop a follower
// (shutdown, slow client, deletion) it aborts the connection"). 100 MiB go through one
// chunked POST while a raw follower sits on its socket; the POST completes, the heap
// grows by far less than the data, at the end and at its peak (the stream's in-memory
// tail is bounded by file.Options.TailSize), and sluice_slow_followers_dropped_total
// counts the stalled follower, whose connection the server then ends.
func TestStalledFollowerHoldsNoData(t *testing.T) {
	const total = 100 << 20
	ts := newTestServer(t, Config{WriteTimeout: 2 * time.Second}, file.Options{SyncInterval: time.Second})
	addr := strings.TrimPrefix(ts.url, "http://")
	path := "/streams/resources/stalled"
	resCreate(t, ts.url+path)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	// From here on nothing reads conn until the server has dropped it.
	resEventually(t, 10*time.Second, "the stalled follower is registered", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == 1, fmt.Sprintf("sluice_followers %v", v)
	})

	before := resHeap()
	peak := resWatchHeap()
	defer peak()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+path, &resPattern{left: total})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked
	start := time.Now()
	resp, err := resHTTP.Do(req)
	if err != nil {
		t.Fatalf("publish of %d bytes with a stalled follower: %v", total, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	peakObjects := peak()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Stream-Length") != strconv.Itoa(total) {
		t.Fatalf("publish: %s, Stream-Length %q; want 200, %d", resp.Status, resp.Header.Get("Stream-Length"), total)
	}
	stillThere := resMetric(t, ts.url, "sluice_followers") == 1
	after := resHeap()
	t.Logf("published %d MiB in %v (follower still connected at the end: %v); heap in use %.1f MiB before, %.1f MiB after; peak heap objects %.1f MiB",
		total>>20, took.Round(time.Millisecond), stillThere, resMiB(before), resMiB(after), resMiB(peakObjects))
	if growth := int64(after) - int64(before); growth >= 32<<20 {
		t.Errorf("heap in use grew by %.1f MiB while %d MiB went to a follower that reads nothing; want < 32 MiB", resMiB(uint64(growth)), total>>20)
	}
	// The GC'd figures above could miss a queue freed when the follower was dropped
	// mid-publish; the peak during the publish cannot.
	if growth := int64(peakObjects) - int64(before); growth >= 64<<20 {
		t.Errorf("heap objects peaked %.1f MiB above the start during the publish; want < 64 MiB", resMiB(uint64(growth)))
	}

	resEventually(t, 30*time.Second, "the stalled follower is dropped", func() (bool, string) {
		d := resMetric(t, ts.url, "sluice_slow_followers_dropped_total")
		f := resMetric(t, ts.url, "sluice_followers")
		return d == 1 && f == 0, fmt.Sprintf("sluice_slow_followers_dropped_total %v, sluice_followers %v", d, f)
	})
	// The server has let go of the connection: what the kernel buffered drains, then the
	// connection ends, long before the follower could have had everything.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.Copy(io.Discard, conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the dropped follower's connection: %v after %d bytes; want its end", err, got)
	}
	if got >= total {
		t.Fatalf("the dropped follower got %d bytes; want fewer than the %d published", got, total)
	}
}

// TestWebSocketChatterIsDrained proves that the server always reads a WebSocket
// follower's socket ("It always reads from the socket, discarding client data messages,
// so pings, pongs and client chatter never pile up"): a client sends pings and data
// messages (small and 64 KiB) as fast as it can to an idle stream, for 5 s and at least
// 16 MiB (several times what the kernel buffers of a socket nobody reads hold, so a
// server that did not read would block the client); every write completes, every ping
// is answered, the heap does not grow, and no goroutines appear beyond the connection's
// few.
//
// Soak: set SLUICE_SOAK to a duration to chatter that long instead, e.g.
//
//	SLUICE_SOAK=5m go test -run WebSocketChatter -timeout 0 ./http
func TestWebSocketChatterIsDrained(t *testing.T) {
	dur := 5 * time.Second
	if v := os.Getenv("SLUICE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SLUICE_SOAK=%q: %v", v, err)
		}
		dur = d
	}
	const minBytes = 16 << 20
	const opTimeout = 10 * time.Second // a failure bound, not a speed requirement
	ts := newTestServer(t, Config{}, file.Options{})
	path := "/streams/resources/chatter"
	resCreate(t, ts.url+path)
	resWarmUpWebSocket(t, ts.url+path)
	base := resSteadyGoroutines()
	before := resHeap()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+path, &websocket.DialOptions{HTTPClient: resHTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	readDone := c.CloseRead(ctx) // reads the pongs; the idle stream sends no data

	small := []byte("client chatter")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	var written int64
	var ops [3]int
	var slowest time.Duration
	maxG := 0
	start := time.Now()
	for i := 0; time.Since(start) < dur || written < minBytes; i++ {
		op := i % 3
		opCtx, opCancel := context.WithTimeout(ctx, opTimeout)
		t0 := time.Now()
		switch op {
		case 0:
			err = c.Ping(opCtx)
		case 1:
			err = c.Write(opCtx, websocket.MessageText, small)
			written += int64(len(small))
		case 2:
			err = c.Write(opCtx, websocket.MessageBinary, big)
			written += int64(len(big))
		}
		opCancel()
		if err != nil {
			t.Fatalf("after %v and %d bytes, op %d (%s) failed: %v", time.Since(start).Round(time.Millisecond), written, i, [...]string{"ping", "small write", "64 KiB write"}[op], err)
		}
		ops[op]++
		slowest = max(slowest, time.Since(t0))
		if i%32 == 0 {
			maxG = max(maxG, runtime.NumGoroutine())
		}
	}
	elapsed := time.Since(start)
	after := resHeap()
	t.Logf("%v: %d pings, %d small and %d 64 KiB messages, %.0f MiB; slowest op %v; goroutines %d before, at most %d during; heap in use %.1f MiB before, %.1f MiB after",
		elapsed.Round(time.Millisecond), ops[0], ops[1], ops[2], resMiB(uint64(written)), slowest, base, maxG, resMiB(before), resMiB(after))
	if growth := int64(after) - int64(before); growth >= 8<<20 {
		t.Errorf("heap in use grew by %.1f MiB during the chatter; want < 8 MiB", resMiB(uint64(growth)))
	}
	// The connection's goroutines: the server's handler and its socket reader, the
	// client's CloseRead reader, and a spare for one finishing a timer or a write.
	if maxG > base+4 {
		t.Errorf("goroutines reached %d during the chatter, baseline %d; want at most baseline+4", maxG, base)
	}

	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	<-readDone.Done()
	resEventually(t, 10*time.Second, "the follower is gone", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		g := runtime.NumGoroutine()
		return v == 0 && g <= base, fmt.Sprintf("sluice_followers %v, %d goroutines, baseline %d", v, g, base)
	})
}

// TestIdleFollowersCostLittle measures what an idle follower costs the server, and proves
// it is not a copy of what it was sent ("a follower costs no copy of the stream", file
// package doc): 2,000 SSE followers of an open stream get 1 MiB published to it, catch
// up, then sit idle; the heap per follower must stay under 64 KiB, far below what a
// follower keeping its own copy would hold. The figures are logged; only that loose bound
// is asserted.
//
// Under the race detector, which makes every byte the SSE encoder looks at some 30 times
// dearer, 64 KiB is published instead, and the bound is a quarter of it.
func TestIdleFollowersCostLittle(t *testing.T) {
	const n = 2000
	size, bound := 1<<20, 64<<10
	if resRaceEnabled() {
		size, bound = 64<<10, 16<<10
	}
	resNeedFDs(t, 2*n+256)
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	addr := strings.TrimPrefix(ts.url, "http://")
	path := "/streams/resources/idle"
	resCreate(t, ts.url+path)
	// Warm up: a follower that reads what there is (nothing) and ends.
	f, err := resDial(addr, path+"?follow=false", "sse")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, f.resp.Body)
	f.conn.Close()
	resEventually(t, 10*time.Second, "warm-up follower gone", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == 0, fmt.Sprintf("sluice_followers %v", v)
	})
	baseG := resSteadyGoroutines()
	baseHeap, baseStack := resHeapStack()

	fs := resConnect(t, n, func(int) (*resFollower, error) {
		f, err := resDial(addr, path, "sse")
		if err != nil {
			return nil, err
		}
		line, err := f.body().ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "retry: ") {
			err = fmt.Errorf("first line %q, want retry: ...", line)
		}
		f.conn.SetDeadline(time.Now().Add(2 * time.Minute)) // a failure bound
		return f, err
	})
	if v := resMetric(t, ts.url, "sluice_followers"); v != n {
		t.Fatalf("sluice_followers = %v with %d followers connected", v, n)
	}

	// Every follower reads, as a live client would, until the event that ends the data;
	// then the client keeps only its connection.
	marker := fmt.Sprintf("\nid: %d\n", size)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() {
			if got, err := resReadUntil(f.body(), make([]byte, 32<<10), marker); err != nil {
				errs[i] = fmt.Errorf("follower %d: %v after %d bytes, before the event with id %d", i, err, got, size)
			}
			f.br, f.resp, f.bb = nil, nil, nil
		})
	}
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, ts.url+path, bytes.NewReader(resLogLines(size)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Stream-Close", "false")
	resp, err := resHTTP.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("publish: %s", resp.Status)
		}
	}
	if err != nil {
		for _, f := range fs {
			f.conn.Close()
		}
		wg.Wait()
		t.Fatal(err)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("followers did not catch up: %.500v", err)
	}
	t.Logf("%d followers caught up on %d KiB in %v", n, size>>10, time.Since(start).Round(time.Millisecond))

	g := resSteadyGoroutines()
	heap, stack := resHeapStack()
	perHeap := (float64(heap) - float64(baseHeap)) / n
	t.Logf("%d idle SSE followers: heap in use %+.1f MiB (%.0f B each), stacks %+.1f MiB (%.0f B each), goroutines %+d (%.2f each)",
		n, (float64(heap)-float64(baseHeap))/(1<<20), perHeap, (float64(stack)-float64(baseStack))/(1<<20),
		(float64(stack)-float64(baseStack))/n, g-baseG, float64(g-baseG)/n)
	if perHeap >= float64(bound) {
		t.Errorf("an idle follower costs %.0f bytes of heap; want < %d KiB", perHeap, bound>>10)
	}
	if g-baseG > n/100 {
		t.Errorf("%d idle followers added %d goroutines; want them parked, without one each", n, g-baseG)
	}
	if v := resMetric(t, ts.url, "sluice_followers"); v != n {
		t.Errorf("sluice_followers = %v after the followers went idle; want %d", v, n)
	}
}

// ---- helpers ----

// resRaceEnabled reports whether this test binary was built with -race.
func resRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// resHTTP is the tests' HTTP client: no kept-alive connections, so none of its goroutines
// outlive a request.
var resHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}

// resNeedFDs makes sure this process may open n files, raising the soft limit to the
// hard one if need be: each in-process connection costs two.
func resNeedFDs(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("this test needs %d open files; the hard limit is %d", n, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raising the open-file limit to %d: %v", lim.Max, err)
	}
}

// resFollower is a follower on a plain TCP connection.
type resFollower struct {
	conn *net.TCPConn
	br   *bufio.Reader
	resp *http.Response
	bb   *bufio.Reader // over the body, once asked for
}

// resWSKey is a valid Sec-WebSocket-Key (16 bytes, base64).
var resWSKey = base64.StdEncoding.EncodeToString([]byte("sluice-resources"))

// resDial connects a follower of path over transport kind (raw, sse or websocket) and
// reads its response head: 200, or 101 for a WebSocket. The connection has a 30 s
// deadline, a failure bound for what the caller reads next.
func resDial(addr, path, kind string) (*resFollower, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, addr)
	want := http.StatusOK
	switch kind {
	case "sse":
		req.WriteString("Accept: text/event-stream\r\n")
	case "websocket":
		want = http.StatusSwitchingProtocols
		fmt.Fprintf(&req, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n", resWSKey)
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(tc, req.String()); err != nil {
		tc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(tc, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("GET %s (%s): %w", path, kind, err)
	}
	if resp.StatusCode != want {
		tc.Close()
		return nil, fmt.Errorf("GET %s (%s): %s, want %d", path, kind, resp.Status, want)
	}
	if kind == "sse" && resp.Header.Get("Content-Type") != "text/event-stream" {
		tc.Close()
		return nil, fmt.Errorf("GET %s (sse): Content-Type %q", path, resp.Header.Get("Content-Type"))
	}
	return &resFollower{conn: tc, br: br, resp: resp}, nil
}

// body returns a line reader over the response body.
func (f *resFollower) body() *bufio.Reader {
	if f.bb == nil {
		f.bb = bufio.NewReaderSize(f.resp.Body, 256)
	}
	return f.bb
}

// checkFirst reads the start of the follower's data and checks it is the stream's first
// line, in the transport's framing.
func (f *resFollower) checkFirst(kind, line string) error {
	var got string
	switch kind {
	case "raw":
		b := make([]byte, len(line))
		if _, err := io.ReadFull(f.resp.Body, b); err != nil {
			return fmt.Errorf("raw follower: %w", err)
		}
		got = string(b)
	case "sse":
		// retry: N, a blank line, id: N, then the first data line.
		var lines []string
		for range 4 {
			l, err := f.body().ReadString('\n')
			if err != nil {
				return fmt.Errorf("sse follower: %w after %q", err, lines)
			}
			lines = append(lines, l)
		}
		if !strings.HasPrefix(lines[0], "retry: ") || lines[1] != "\n" || !strings.HasPrefix(lines[2], "id: ") {
			return fmt.Errorf("sse follower: the response starts %q", lines)
		}
		got, _ = strings.CutPrefix(lines[3], "data: ")
		line = strings.TrimSuffix(line, "\n")
		got = strings.TrimSuffix(got, "\n")
	case "websocket":
		var hdr [2]byte
		if _, err := io.ReadFull(f.br, hdr[:]); err != nil {
			return fmt.Errorf("websocket follower: %w", err)
		}
		if hdr[0] != 0x82 || hdr[1]&0x80 != 0 {
			return fmt.Errorf("websocket follower: frame header %x, want an unmasked final binary frame", hdr)
		}
		size := uint64(hdr[1] & 0x7f)
		switch size {
		case 126, 127:
			ext := make([]byte, map[uint64]int{126: 2, 127: 8}[size])
			if _, err := io.ReadFull(f.br, ext); err != nil {
				return fmt.Errorf("websocket follower: %w", err)
			}
			if size = uint64(ext[0]); len(ext) == 2 {
				size = uint64(binary.BigEndian.Uint16(ext))
			} else {
				size = binary.BigEndian.Uint64(ext)
			}
		}
		b := make([]byte, min(size, uint64(len(line))))
		if _, err := io.ReadFull(f.br, b); err != nil {
			return fmt.Errorf("websocket follower: %w", err)
		}
		got = string(b)
	}
	if got != line {
		return fmt.Errorf("%s follower: first data %q, want %q", kind, got, line)
	}
	return nil
}

// reset drops the connection abruptly: the peer gets a TCP RST, no FIN.
func (f *resFollower) reset() {
	f.conn.SetLinger(0)
	f.conn.Close()
}

// resConnect runs connect for 0..n-1 on a few workers and returns the followers it made;
// the test fails if any failed. Every connection is closed when the test ends.
func resConnect(t testing.TB, n int, connect func(i int) (*resFollower, error)) []*resFollower {
	t.Helper()
	fs := make([]*resFollower, n)
	t.Cleanup(func() {
		for _, f := range fs {
			if f != nil {
				f.conn.Close()
			}
		}
	})
	resParallel(t, n, func(i int) error {
		var err error
		fs[i], err = connect(i)
		return err
	})
	return fs
}

// resParallel runs fn for 0..n-1 on a few workers; the test fails if any call failed.
func resParallel(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			if failed++; first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d failed; the first: %v", failed, n, first)
	}
}

// resReadUntil reads r until marker has gone by, and returns how many bytes it read.
func resReadUntil(r io.Reader, buf []byte, marker string) (int64, error) {
	var total int64
	keep := 0 // the end of the previous read, where a marker may begin
	for {
		n, err := r.Read(buf[keep:])
		total += int64(n)
		if bytes.Contains(buf[:keep+n], []byte(marker)) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		k := min(len(marker)-1, keep+n)
		copy(buf, buf[keep+n-k:keep+n])
		keep = k
	}
}

// resMetric scrapes /metrics and returns the sum of metric name over all its label sets.
func resMetric(t testing.TB, baseURL, name string) float64 {
	t.Helper()
	resp, err := resHTTP.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			t.Fatalf("metrics: malformed sample %q", sc.Text())
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("metrics: %q: %v", sc.Text(), err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("metrics: no %s", name)
	}
	return sum
}

// resEventually polls cond until it holds, failing the test with cond's last detail
// after within.
func resEventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, within, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resSteadyGoroutines returns the goroutine count once it has held still for a moment
// (goroutines of finished requests exit shortly after their responses), or after 2 s.
func resSteadyGoroutines() int {
	g, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(2 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if now := runtime.NumGoroutine(); now == g {
			same++
		} else {
			g, same = now, 0
		}
	}
	return g
}

// resHeap returns the bytes of heap in use after a full collection.
func resHeap() uint64 {
	h, _ := resHeapStack()
	return h
}

// resHeapStack returns the bytes of heap and of goroutine stacks in use after a full
// collection; twice, since sync.Pool keeps what it held through one.
func resHeapStack() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

// resWatchHeap samples the bytes of heap objects (live and not yet swept) every few
// milliseconds, without stopping the world, until the returned function is first called;
// that returns the peak, and so do later calls.
func resWatchHeap() func() uint64 {
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			rtmetrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return sync.OnceValue(func() uint64 { close(stop); return <-done })
}

func resMiB(b uint64) float64 { return float64(b) / (1 << 20) }

// resCreate creates an open stream with PUT.
func resCreate(t testing.TB, url string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, nil)
	resp, err := resHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

// resLength returns a stream's Stream-Length from HEAD.
func resLength(t testing.TB, url string) int64 {
	t.Helper()
	resp, err := resHTTP.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, _ := strconv.ParseInt(resp.Header.Get("Stream-Length"), 10, 64)
	return n
}

// resWarmUpWebSocket follows url once over WebSocket and goes, so that what the server
// and the client library set up once is in the baseline.
func resWarmUpWebSocket(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http"), &websocket.DialOptions{HTTPClient: resHTTP})
	if err != nil {
		t.Fatal(err)
	}
	done := c.CloseRead(ctx)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	<-done.Done()
}

// resLogLine appends an 80-byte log line numbered i.
func resLogLine(dst []byte, i int) []byte {
	start := len(dst)
	dst = fmt.Appendf(dst, "2024-05-01T12:00:00Z app[web.1]: GET /api/items/%d 200 12ms ok ", i)
	for len(dst)-start < 79 {
		dst = append(dst, '.')
	}
	return append(dst[:start+79], '\n')
}

// resLogLines returns size bytes of log lines.
func resLogLines(size int) []byte {
	b := make([]byte, 0, size+80)
	for i := 0; len(b) < size; i++ {
		b = resLogLine(b, i)
	}
	return b[:size]
}

// resLines reads as n 80-byte log lines, generated as they are read.
type resLines struct {
	n, i int
	line []byte // the rest of the current line
	buf  [80]byte
}

func (r *resLines) Read(p []byte) (int, error) {
	w := 0
	for w < len(p) {
		if len(r.line) == 0 {
			if r.i == r.n {
				break
			}
			r.line = resLogLine(r.buf[:0], r.i)
			r.i++
		}
		k := copy(p[w:], r.line)
		r.line, w = r.line[k:], w+k
	}
	if w == 0 {
		return 0, io.EOF
	}
	return w, nil
}

// resPattern reads as left bytes of a repeating pattern, at most 32 KiB a read.
type resPattern struct{ left int }

var resPatternChunk = bytes.Repeat([]byte("sluice resource test, 32 KiB a chunk...\n"), 32<<10/40+1)[:32<<10]

func (r *resPattern) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.left)], resPatternChunk)
	r.left -= n
	return n, nil
}

// resPublisher is a producer writing one log line at a time into one chunked POST.
type resPublisher struct {
	stop   chan struct{}
	wrote  chan struct{}
	result chan error
	once   sync.Once
	err    error
}

// resStartPublisher starts publishing a line to url every interval until finish, which
// the test's cleanup calls if the test has not.
func resStartPublisher(t testing.TB, url string, every time.Duration) *resPublisher {
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	p := &resPublisher{stop: make(chan struct{}), wrote: make(chan struct{}), result: make(chan error, 1)}
	go func() {
		resp, err := resHTTP.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("publish: %s", resp.Status)
			}
		}
		pr.CloseWithError(errors.New("request over"))
		p.result <- err
	}()
	go func() {
		defer close(p.wrote)
		tick := time.NewTicker(every)
		defer tick.Stop()
		var buf []byte
		for i := 0; ; i++ {
			buf = resLogLine(buf[:0], i)
			if _, err := pw.Write(buf); err != nil {
				return
			}
			select {
			case <-p.stop:
				pw.Close()
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { p.finish() })
	return p
}

// finish ends the body, which closes the stream, and returns the publish's outcome.
func (p *resPublisher) finish() error {
	p.once.Do(func() {
		close(p.stop)
		<-p.wrote
		p.err = <-p.result
	})
	return p.err
}

// Producers that have sent a burst and then pause (a build between steps) must not each
// pin a large read buffer for as long as they are idle: the 256 KiB publish buffer goes back
// to its pool when the producer has paused. 200 producers each send 300 KiB, then a line,
// then wait; the heap per idle producer must stay far below 256 KiB.
func TestIdleProducersCostLittle(t *testing.T) {
	const n, burst, bound = 200, 300 << 10, 64 << 10
	resNeedFDs(t, 2*n+256)
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	addr := strings.TrimPrefix(ts.url, "http://")
	baseHeap := resHeap()

	data := resLogLines(burst)
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	resParallel(t, n, func(i int) error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conns[i] = c
		line := "and a line after the burst\n"
		_, err = fmt.Fprintf(c, "POST /streams/resources/producer-%d HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n",
			i, addr, len(data), data, len(line), line)
		return err
	})
	want := int64(burst + len("and a line after the burst\n"))
	resEventually(t, 30*time.Second, "every producer's bytes stored", func() (bool, string) {
		for i := range n {
			if got := resLength(t, fmt.Sprintf("%s/streams/resources/producer-%d", ts.url, i)); got != want {
				return false, fmt.Sprintf("producer %d: Stream-Length %d, want %d", i, got, want)
			}
		}
		return true, ""
	})
	perHeap := (float64(resHeap()) - float64(baseHeap)) / n
	t.Logf("%d idle producers: %.0f B of heap each", n, perHeap)
	if perHeap >= bound {
		t.Errorf("an idle producer costs %.0f bytes of heap; want < %d KiB", perHeap, bound>>10)
	}
	// The publishes were live all along: each ends now and is answered.
	resParallel(t, n, func(i int) error {
		if _, err := io.WriteString(conns[i], "0\r\n\r\n"); err != nil {
			return err
		}
		conns[i].SetReadDeadline(time.Now().Add(30 * time.Second)) // a failure bound
		resp, err := http.ReadResponse(bufio.NewReader(conns[i]), nil)
		if err != nil {
			return fmt.Errorf("producer %d: %w", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Stream-Length") != strconv.FormatInt(want, 10) {
			return fmt.Errorf("producer %d: %s, Stream-Length %s; want 200 and %d", i, resp.Status, resp.Header.Get("Stream-Length"), want)
		}
		return nil
	})
}

// TestShutdownClosesStalledFollowers proves "Shutdown keeps its promise": after the
// grace period, raw and SSE followers stalled in a write (their clients read nothing),
// and one on HTTP/2 (h2c), which is a request of the http.Server, not hijacked, are
// closed too, so that Serve returns within the grace, not a write timeout later.
// The write timeout here is a minute; the grace a quarter of a second.
func TestShutdownClosesStalledFollowers(t *testing.T) {
	ts := newTestServer(t, Config{WriteTimeout: time.Minute, ShutdownGrace: 250 * time.Millisecond}, file.Options{SyncInterval: time.Second})
	addr := strings.TrimPrefix(ts.url, "http://")
	path := "/streams/resources/stalled-at-shutdown"
	resCreate(t, ts.url+path)
	var fs []*resFollower
	for _, kind := range []string{"raw", "sse"} {
		f, err := resDial(addr, path, kind)
		if err != nil {
			t.Fatal(err)
		}
		defer f.conn.Close()
		f.conn.SetDeadline(time.Time{})
		fs = append(fs, f) // nothing reads it from here on
	}
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &h2}}
	h2resp, err := h2c.Get(ts.url + path)
	if err != nil || h2resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/2 follower: %v %v", h2resp, err)
	}
	defer h2resp.Body.Close() // nothing reads it before the shutdown
	const total = 32 << 20    // far more than both sockets' buffers hold
	req, _ := http.NewRequest(http.MethodPost, ts.url+path+"?", &resPattern{left: total})
	req.Header.Set("Stream-Close", "false")
	req.ContentLength = -1
	resp, err := resHTTP.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %v %v", resp, err)
	}
	resp.Body.Close()
	// Both followers are stuck in a write once what they were sent stops growing.
	var last float64
	resEventually(t, 20*time.Second, "both followers stall", func() (bool, string) {
		sent := resMetric(t, ts.url, "sluice_sent_bytes_total")
		steady := sent == last && sent > 0
		last = sent
		time.Sleep(100 * time.Millisecond)
		return steady, fmt.Sprintf("sluice_sent_bytes_total %v", sent)
	})
	if last >= 3*total {
		t.Fatalf("followers were sent %v bytes: they did not stall", last)
	}
	start := time.Now()
	ts.stop()
	took := time.Since(start)
	t.Logf("Serve returned %v after the shutdown began", took)
	if took > 20*time.Second {
		t.Fatalf("Serve returned %v after the shutdown began, with a grace of 250ms", took)
	}
	for _, f := range fs {
		f.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := io.Copy(io.Discard, f.conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("a stalled follower's connection after shutdown: %v after %d bytes, want its end", err, n)
		}
	}
	if n, err := io.Copy(io.Discard, h2resp.Body); err == nil || n >= total {
		t.Errorf("the stalled HTTP/2 follower got %d bytes and a clean end (%v), want its stream cut", n, err)
	}
}
