//go:build unix

// Parked followers: a raw or SSE follower on a hijacked HTTP/1 connection that has
// caught up waits without a goroutine, and its stream's hub writes to it (see
// internal/fanout/hub.go). These tests prove that parking loses nothing and stops
// nothing that a follower with its own goroutine would have done.

package http

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/file"
)

// TestParkedFollowersGetEveryByte: 200 raw and SSE followers of an open stream wait
// with no goroutine of their own (the server's goroutines grow by a handful, not by
// hundreds), then get every byte of 256 KiB published in pieces that split multi-byte
// characters (which an SSE follower holds back until the rest comes) and cross the
// store's blocks, and the closed stream's end.
func TestParkedFollowersGetEveryByte(t *testing.T) {
	const n = 200
	resNeedFDs(t, 2*n+256)
	ts := newTestServer(t, Config{}, file.Options{})
	addr := strings.TrimPrefix(ts.url, "http://")
	const key = "park/every"
	subCreate(t, ts, key)
	content := subContent(256<<10, 11)
	kind := func(i int) string { return map[bool]string{true: "raw", false: "sse"}[i%2 == 0] }

	// The first follower parks and starts the stream's hub: in the baseline.
	first, err := resDial(addr, "/streams/"+key, "raw")
	if err != nil {
		t.Fatal(err)
	}
	defer first.conn.Close()
	base := resSteadyGoroutines()
	fs := resConnect(t, n, func(i int) (*resFollower, error) { return resDial(addr, "/streams/"+key, kind(i)) })
	resEventually(t, 10*time.Second, "every follower counted", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == n+1, fmt.Sprintf("sluice_followers %v", v)
	})
	if g := resSteadyGoroutines(); g-base > n/20 {
		t.Errorf("%d waiting followers added %d goroutines; want them parked, without one each", n, g-base)
	}

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, f := range fs {
		f.conn.SetDeadline(time.Now().Add(time.Minute)) // a failure bound
		wg.Go(func() {
			var got []byte
			var err error
			if kind(i) == "raw" {
				got, err = io.ReadAll(f.resp.Body)
			} else {
				var ended bool
				if got, ended, err = newSubSSE(f.resp.Body, 0).rest(); err == nil && !ended {
					err = errors.New("no end event")
				}
			}
			if err == nil && !bytes.Equal(got, content) {
				err = fmt.Errorf("got %d bytes, not the %d published", len(got), len(content))
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s follower %d: %w", kind(i), i, err)
			}
		})
	}
	var off int64
	chunks := subSplit(content, 12)
	for i, c := range chunks {
		subPublish(t, ts, key, off, c, i == len(chunks)-1)
		off += int64(len(c))
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%.1000v", err)
	}
}

// TestParkedFollowerVanishes: a parked raw follower whose client goes while the stream
// is quiet is noticed by its hub's probe (Config.ProbeInterval) and let go, with no
// write to find out by.
func TestParkedFollowerVanishes(t *testing.T) {
	ts := newTestServer(t, Config{ProbeInterval: 20 * time.Millisecond}, file.Options{})
	addr := strings.TrimPrefix(ts.url, "http://")
	subCreate(t, ts, "park/vanish")
	stays, err := resDial(addr, "/streams/park/vanish", "raw")
	if err != nil {
		t.Fatal(err)
	}
	defer stays.conn.Close()
	goes, err := resDial(addr, "/streams/park/vanish", "sse")
	if err != nil {
		t.Fatal(err)
	}
	resEventually(t, 10*time.Second, "two followers", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == 2, fmt.Sprintf("sluice_followers %v", v)
	})
	goes.conn.Close()
	resEventually(t, 10*time.Second, "the vanished follower let go", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == 1, fmt.Sprintf("sluice_followers %v", v)
	})
	subPublish(t, ts, "park/vanish", 0, []byte("still here\n"), true)
	if b, err := io.ReadAll(stays.resp.Body); err != nil || string(b) != "still here\n" {
		t.Fatalf("the follower that stayed read %q, %v", b, err)
	}
}

// TestStalledParkedFollower: of a stream's followers, one never reads, its socket's
// buffers small. Parked with the others, it takes what its socket takes, and is then
// unparked to finish its write under Config.WriteTimeout, and dropped; the others get
// all of 8 MiB.
func TestStalledParkedFollower(t *testing.T) {
	const n, total = 10, 8 << 20
	ts := newTestServer(t, Config{WriteTimeout: time.Second}, file.Options{})
	addr := strings.TrimPrefix(ts.url, "http://")
	const key = "park/stalled"
	subCreate(t, ts, key)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	stalled, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "GET /streams/%s HTTP/1.1\r\nHost: %s\r\n\r\n", key, addr) // and never read
	fs := resConnect(t, n, func(int) (*resFollower, error) { return resDial(addr, "/streams/"+key, "raw") })
	resEventually(t, 10*time.Second, "every follower counted", func() (bool, string) {
		v := resMetric(t, ts.url, "sluice_followers")
		return v == n+1, fmt.Sprintf("sluice_followers %v", v)
	})

	content := subContent(total, 13)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, f := range fs {
		f.conn.SetDeadline(time.Now().Add(2 * time.Minute))
		wg.Go(func() {
			got, err := io.ReadAll(f.resp.Body)
			if err == nil && !bytes.Equal(got, content) {
				err = fmt.Errorf("got %d bytes, not the %d published", len(got), len(content))
			}
			if err != nil {
				errs[i] = fmt.Errorf("follower %d: %w", i, err)
			}
		})
	}
	for off := 0; off < total; off += 64 << 10 {
		subPublish(t, ts, key, int64(off), content[off:off+64<<10], off+64<<10 == total)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%.1000v", err)
	}
	resEventually(t, 30*time.Second, "the stalled follower dropped", func() (bool, string) {
		d := resMetric(t, ts.url, "sluice_slow_followers_dropped_total")
		f := resMetric(t, ts.url, "sluice_followers")
		return d == 1 && f == 0, fmt.Sprintf("sluice_slow_followers_dropped_total %v, sluice_followers %v", d, f)
	})
	runtime.KeepAlive(stalled)
}
