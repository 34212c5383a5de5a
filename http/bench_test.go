//go:build unix

package http

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/file"
)

// BenchmarkFanout measures fan-out: 1,000 followers of one stream, each on its own
// loopback socket, while one producer publishes b.N log lines of 80 bytes through one
// chunked POST, as fast as the server takes them. An op is one line; the clock stops when
// every follower has every byte and the end of the stream. Custom metrics:
// deliveries/s (lines × followers per second) and MB/s-out (stream bytes delivered to
// all followers per second, framing not counted).
//
// The followers run in this process and share its two cores with the server, so the
// figures are a floor for the server alone. Run it with
//
//	go test -run x -bench Fanout -benchtime=2000x ./http
func BenchmarkFanout(b *testing.B) {
	for _, kind := range []string{"sse", "raw"} {
		b.Run(kind, func(b *testing.B) { fanoutRun(b, kind, 1000) })
	}
}

// benchFollowers starts a server with the stream of path and n followers of it, of kind.
func benchFollowers(b *testing.B, kind, path string, n int) (*testServer, []*resFollower) {
	resNeedFDs(b, uint64(2*n+256))
	ts := newTestServer(b, Config{}, file.Options{SyncInterval: time.Second})
	addr := strings.TrimPrefix(ts.url, "http://")
	resCreate(b, ts.url+path)
	return ts, resConnect(b, n, func(int) (*resFollower, error) { return resDial(addr, path, kind) })
}

func fanoutRun(b *testing.B, kind string, followers int) {
	path := "/streams/bench/fanout"
	ts, fs := benchFollowers(b, kind, path, followers)
	total := int64(b.N) * 80
	done := make(chan error, followers)
	for _, f := range fs {
		f.conn.SetDeadline(time.Now().Add(10 * time.Minute)) // a failure bound
		go func() { done <- fanoutConsume(f, kind, total) }()
	}

	b.ResetTimer()
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, ts.url+path, &resLines{n: b.N})
	if err != nil {
		b.Fatal(err)
	}
	req.ContentLength = -1 // chunked
	resp, err := resHTTP.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("publish: %s", resp.Status)
	}
	var errs []error
	for range followers {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if len(errs) > 0 {
		b.Fatalf("%d of %d followers failed; the first: %v", len(errs), followers, errs[0])
	}
	b.ReportMetric(float64(b.N)*float64(followers)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(total)*float64(followers)/elapsed.Seconds()/1e6, "MB/s-out")
}

// fanoutConsume reads a follower's response to its end and checks it carried total bytes:
// raw, exactly total bytes then a clean end; SSE, the end event with id total.
func fanoutConsume(f *resFollower, kind string, total int64) error {
	defer f.resp.Body.Close()
	tail := &fanoutTail{}
	if _, err := io.Copy(tail, f.resp.Body); err != nil {
		return fmt.Errorf("%s follower: %w after %d bytes", kind, err, tail.n)
	}
	switch kind {
	case "raw":
		if tail.n != total {
			return fmt.Errorf("raw follower got %d bytes, want %d", tail.n, total)
		}
	case "sse":
		if end := fmt.Sprintf("\nevent: end\nid: %d\ndata: \n\n", total); !bytes.HasSuffix(tail.last, []byte(end)) {
			return fmt.Errorf("sse follower: the response ends %q, want %q", tail.last, end)
		}
	}
	return nil
}

// fanoutTail counts what is written to it and keeps the last bytes.
type fanoutTail struct {
	n    int64
	last []byte
}

func (w *fanoutTail) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.last = append(w.last, p[max(0, len(p)-64):]...)
	w.last = w.last[max(0, len(w.last)-64):]
	return len(p), nil
}

// BenchmarkDelivery measures the delivery loop itself: 1,000 caught-up followers of one
// stream, each on its own loopback socket, and a producer that publishes one 80-byte line
// and waits until every follower has it before the next, so that each line is one write
// per follower, as at 20 lines/s in `sluice bench fanout`. An op is one line; custom
// metrics: ns/delivery and allocs/delivery (the whole process's allocations, followers'
// reads included, over lines × followers). Run it with
//
//	go test -run x -bench Delivery -benchtime=500x ./http
func BenchmarkDelivery(b *testing.B) {
	for _, kind := range []string{"sse", "raw"} {
		b.Run(kind, func(b *testing.B) { deliveryRun(b, kind, 1000) })
	}
}

func deliveryRun(b *testing.B, kind string, followers int) {
	path := "/streams/bench/delivery"
	ts, fs := benchFollowers(b, kind, path, followers)
	got := make(chan struct{}, 2*followers) // one per line per follower
	done := make(chan error, followers)
	for _, f := range fs {
		f.conn.SetDeadline(time.Now().Add(10 * time.Minute)) // a failure bound
		go func() { done <- deliveryConsume(f, kind, got) }()
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, ts.url+path, pr)
	if err != nil {
		b.Fatal(err)
	}
	published := make(chan error, 1)
	go func() {
		resp, err := resHTTP.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("publish: %s", resp.Status)
			}
		}
		published <- err
	}()
	line := append(bytes.Repeat([]byte("x"), 79), '\n')
	publish := func() {
		if _, err := pw.Write(line); err != nil {
			b.Fatal(err)
		}
		for range followers {
			<-got
		}
	}
	publish() // the first line, before the clock: every follower is caught up after it
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		publish()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * float64(followers)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
	pw.Close()
	if err := <-published; err != nil {
		b.Fatal(err)
	}
	for range followers {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// deliveryConsume reads a follower's response to its end and tells got of each line it
// completes: raw, each '\n'; SSE, each event's end ("\n\n"), the first (retry:) aside.
func deliveryConsume(f *resFollower, kind string, got chan<- struct{}) error {
	defer f.resp.Body.Close()
	buf := make([]byte, 4096)
	skip, last := 0, byte(0)
	if kind == "sse" {
		skip = 1
	}
	for {
		n, err := f.resp.Body.Read(buf)
		for _, c := range buf[:n] {
			end := c == '\n' && (kind == "raw" || last == '\n')
			last = c
			if kind == "sse" && end {
				last = 0 // "\n\n\n" is one end
			}
			switch {
			case !end:
			case skip > 0:
				skip--
			default:
				got <- struct{}{}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s follower: %w", kind, err)
		}
	}
}

// BenchmarkCompressedRead measures whole reads of a closed 64 MiB log (logReader's:
// timestamps, progress lines, ANSI colours, NULs, invalid UTF-8, binary runs) over
// loopback, uncompressed and in each coding. An op is one read of the whole stream; MB/s
// is of the stream's bytes, and ratio is the stream's size over the bytes on the wire.
// The client discards what it gets without decoding, so the figures are the server's
// (which shares the machine's cores with it). Run it with
//
//	go test -run x -bench CompressedRead -benchtime=10x ./http
func BenchmarkCompressedRead(b *testing.B) {
	const size = 64 << 20
	ts := newTestServer(b, Config{}, file.Options{SyncInterval: time.Second})
	zPublish(b, ts, "bench/log", newLogReader(size, 10))
	for _, enc := range []string{"identity", "gzip", "zstd"} {
		b.Run(enc, func(b *testing.B) {
			b.SetBytes(size)
			var wire int64
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, ts.streamURL("bench/log"), nil)
				req.Header.Set("Accept-Encoding", enc) // set: Go's transport neither adds gzip nor decodes
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %s, %v after %d bytes", enc, resp.Status, err, n)
				}
				if got := resp.Header.Get("Content-Encoding"); got != strings.TrimPrefix(enc, "identity") {
					b.Fatalf("Content-Encoding %q, want %s", got, enc)
				}
				wire += n
			}
			b.ReportMetric(float64(size)*float64(b.N)/float64(wire), "ratio")
		})
	}
}
