package client

import (
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// clRead reads r to its end in a goroutine, returning a channel that gets the bytes and
// the error that ended the reading. The test waits for it; on timeout it closes r.
func clRead(r *Reader) <-chan clReadResult {
	c := make(chan clReadResult, 1)
	go func() {
		b, err := io.ReadAll(r)
		c <- clReadResult{b, err}
	}()
	return c
}

type clReadResult struct {
	b   []byte
	err error
}

// clWait waits for a clRead result within clTimeout.
func clWait(t *testing.T, r *Reader, c <-chan clReadResult) clReadResult {
	t.Helper()
	select {
	case res := <-c:
		return res
	case <-time.After(clTimeout):
		r.Close()
		<-c
		t.Fatalf("the Reader did not reach the end within %v (offset %d)", clTimeout, r.Offset())
		return clReadResult{}
	}
}

// clPublishPieces publishes b, the bytes at offset base, to url in pieces of random
// sizes, each its own request with Stream-Offset, leaving the stream open.
func clPublishPieces(t *testing.T, url string, base int, b []byte, seed uint64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, seed))
	for off := 0; off < len(b); {
		n := min(len(b)-off, 1+rnd.IntN(256<<10))
		clPublish(t, url, int64(base+off), b[off:off+n], false)
		off += n
	}
}

// TestReaderFollows proves that a Reader follows an open stream as it grows, sees every
// byte once and in order, and returns io.EOF only when the stream is closed ("returning
// io.EOF only when the stream is closed"), with Offset at the stream's length.
func TestReaderFollows(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	url := ts.url + "/streams/follow"
	want := clContent(1<<20, 10)
	clPublish(t, url, 0, want[:1000], false)
	r := NewReader(url, ReaderOptions{})
	defer r.Close()
	got := clRead(r)
	// The reader has caught up with the first bytes before more come: it must wait.
	for deadline := time.Now().Add(clTimeout); r.Offset() < 1000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Offset() = %d, stuck below 1000", r.Offset())
		}
	}
	clPublishPieces(t, url, 1000, want[1000:], 10)
	clPublish(t, url, int64(len(want)), nil, true)
	res := clWait(t, r, got)
	if res.err != nil {
		t.Fatalf("ReadAll: %v", res.err)
	}
	clEqual(t, "read", res.b, want)
	if r.Offset() != int64(len(want)) {
		t.Errorf("Offset() = %d, want %d", r.Offset(), len(want))
	}
}

// TestReaderFlakyNetwork proves that the Reader "transparently resumes by offset after a
// dropped connection": through a proxy that cuts every connection after a random number
// of bytes, it reads a growing stream exactly, once.
func TestReaderFlakyNetwork(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	rnd := rand.New(rand.NewPCG(11, 11))
	var mu sync.Mutex
	p := startClProxy(t, strings.TrimPrefix(ts.url, "http://"), func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return 1<<10 + rnd.Int64N(100<<10)
	})
	want := clContent(2<<20, 11)
	clPublish(t, ts.url+"/streams/flaky", 0, want[:len(want)/2], false)
	r := NewReader(p.url+"/streams/flaky", ReaderOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	defer r.Close()
	got := clRead(r)
	clPublishPieces(t, ts.url+"/streams/flaky", len(want)/2, want[len(want)/2:], 11)
	clPublish(t, ts.url+"/streams/flaky", int64(len(want)), nil, true)
	res := clWait(t, r, got)
	if res.err != nil {
		t.Fatalf("ReadAll: %v", res.err)
	}
	if p.cut.Load() < 5 {
		t.Fatalf("the proxy cut only %d connections; the test proves nothing", p.cut.Load())
	}
	clEqual(t, "read", res.b, want)
}

// TestReaderServerRestart proves resumption "after a server restart": the server aborts
// raw followers when it shuts down; the Reader reconnects to the restarted server (same
// address, same store) from its offset, and reads every byte once.
func TestReaderServerRestart(t *testing.T) {
	s := startClServer(t, "127.0.0.1:0", t.TempDir())
	url := s.url + "/streams/restart"
	want := clContent(1<<20, 12)
	logs := newClLogs()
	r := NewReader(url, ReaderOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: slog.New(logs)})
	defer r.Close()
	clPublish(t, url, 0, want[:1000], false)
	got := clRead(r)
	published := 1000
	for i := range 2 {
		for deadline := time.Now().Add(clTimeout); r.Offset() < int64(published); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Offset() = %d, stuck below %d", r.Offset(), published)
			}
		}
		s.restart() // the reader is waiting for bytes on its connection: it is cut
		next := published + (len(want)-published)/2
		if i == 1 {
			next = len(want)
		}
		clPublish(t, url, int64(published), want[published:next], i == 1)
		published = next
	}
	res := clWait(t, r, got)
	if res.err != nil {
		t.Fatalf("ReadAll: %v", res.err)
	}
	clEqual(t, "read", res.b, want)
	if n := logs.count("connection lost; resuming") + logs.count("connection failed; retrying"); n < 2 {
		t.Errorf("the Reader lost its connection %d times; want at least 2, or the test proves nothing", n)
	}
}

// TestReaderErrors proves the Reader's permanent errors, each returned at once without
// a retry: an unknown stream "is an error wrapping sluice.ErrNotFound"; an offset beyond
// a closed stream's length is refused (416); and an offset at the length of a closed
// stream is its end: io.EOF with no bytes (204).
func TestReaderErrors(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	front, count := clCounter(t, ts)
	clPublish(t, ts.url+"/streams/done", 0, []byte("0123456789"), true)
	for _, tc := range []struct {
		name   string
		key    string
		offset int64
		want   error  // for errors.Is
		text   string // in the message
	}{
		{name: "unknown stream", key: "nope", want: sluice.ErrNotFound},
		{name: "beyond a closed stream", key: "done", offset: 11, text: "416"},
		{name: "at the end of a closed stream", key: "done", offset: 10, want: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count("GET")
			r := NewReader(front+"/streams/"+tc.key, ReaderOptions{Offset: tc.offset, MinBackoff: time.Millisecond, MaxAttempts: 5})
			defer r.Close()
			n, err := r.Read(make([]byte, 100))
			if n != 0 || err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Read: %d, %v; want 0, %v saying %q", n, err, tc.want, tc.text)
			}
			if _, err2 := r.Read(make([]byte, 100)); err2 != err {
				t.Errorf("second Read: %v, want the same error %v", err2, err)
			}
			if n := count("GET") - before; n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
		})
	}
}

// TestReaderNoFollow proves "NoFollow: read what is stored now, then io.EOF", from
// ReaderOptions.Offset, on a stream that stays open.
func TestReaderNoFollow(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	url := ts.url + "/streams/nofollow"
	want := clContent(200_000, 13)
	clPublish(t, url, 0, want, false)
	r := NewReader(url, ReaderOptions{NoFollow: true, Offset: 1234})
	defer r.Close()
	res := clWait(t, r, clRead(r))
	if res.err != nil {
		t.Fatalf("ReadAll: %v", res.err)
	}
	clEqual(t, "read", res.b, want[1234:])
}

// TestReaderClose proves that Close ends a Read blocked on an open stream that has
// nothing new, with an error (not io.EOF: the stream is not closed), leaving nothing
// behind (TestMain checks for leaked goroutines).
func TestReaderClose(t *testing.T) {
	ts := newTestServer(t, file.Options{})
	url := ts.url + "/streams/idle"
	clPublish(t, url, 0, []byte("abc"), false)
	r := NewReader(url, ReaderOptions{})
	got := clRead(r)
	for deadline := time.Now().Add(clTimeout); r.Offset() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Offset() = %d, stuck below 3", r.Offset())
		}
	}
	r.Close()
	res := clWait(t, r, got)
	if res.err == nil || errors.Is(res.err, io.EOF) {
		t.Fatalf("ReadAll after Close: %v; want an error that is not EOF", res.err)
	}
	if string(res.b) != "abc" {
		t.Errorf("read %q, want %q", res.b, "abc")
	}
	resp, err := http.Head(url) // the stream is untouched
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Stream-Closed") != "false" {
		t.Errorf("Stream-Closed = %q after a follower left", resp.Header.Get("Stream-Closed"))
	}
}

// TestReaderMaxRetryTime proves "MaxRetryTime bounds the time that consecutive failed
// connects may go on, and the Reader never waits past it for a retry": against a port
// where nothing listens, with a backoff of a minute (so that the first retry alone would
// wait 30 s or more), a Read gives up once MaxRetryTime has passed, with the connection
// error, and long before that first backoff would have ended.
func TestReaderMaxRetryTime(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/streams/down"
	ln.Close() // connections are refused from now on
	const limit = 500 * time.Millisecond
	r := NewReader(url, ReaderOptions{MinBackoff: time.Minute, MaxBackoff: time.Minute, MaxRetryTime: limit})
	defer r.Close()
	start := time.Now()
	res := clWait(t, r, clRead(r))
	elapsed := time.Since(start)
	var op *net.OpError
	if !errors.As(res.err, &op) || op.Op != "dial" || !strings.Contains(res.err.Error(), "giving up") {
		t.Fatalf("Read: %v; want a dial error, given up on", res.err)
	}
	if elapsed < limit {
		t.Errorf("gave up after %v, before MaxRetryTime (%v)", elapsed, limit)
	}
}
