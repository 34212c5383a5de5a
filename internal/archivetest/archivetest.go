// Package archivetest holds what the archive tests of several packages share: a server
// over a store with an archive, test data, and the reads through every transport that
// an archived stream must answer exactly as a closed live stream.
package archivetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
	"github.com/sluicehq/sluice/sse"
)

// Data returns n bytes of log-like text, with a few bytes SSE must send as base64, so
// that every framing path is taken. The bytes are shared: callers must not modify them.
func Data(n int) []byte {
	dataMu.Lock()
	defer dataMu.Unlock()
	if n <= len(data) {
		return data[:n:n]
	}
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox ✓ jumps over the lazy dog\n", i)
		if i%500 == 7 {
			b.WriteString("a carriage\rreturn and a NUL\x00\n")
		}
	}
	data = b.Bytes()
	return data[:n:n]
}

var (
	dataMu sync.Mutex
	data   []byte // the longest Data made so far
)

// Server is a real HTTP server on a loopback listener over a file store with an archive.
type Server struct {
	Store *file.Store
	URL   string
}

// Quiet is a logger for tests: silent unless SLUICE_VERBOSE is set.
func Quiet() *slog.Logger {
	if os.Getenv("SLUICE_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// NewServer serves store until the test ends; the caller closes the store after.
func NewServer(t testing.TB, store *file.Store) *Server {
	t.Helper()
	srv := sluicehttp.NewServer(store, sluicehttp.Config{Logger: Quiet(), ShutdownGrace: 5 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return &Server{Store: store, URL: "http://" + ln.Addr().String()}
}

// Publish creates the stream of key with data and closes it, over HTTP.
func Publish(t testing.TB, url, key string, data []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/streams/"+key, bytes.NewReader(data))
	req.Header.Set("Stream-Close", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Stream-Closed") != "true" {
		t.Fatalf("publish %s: %s, Stream-Closed %q", key, resp.Status, resp.Header.Get("Stream-Closed"))
	}
}

// Response is what a read answered: status, the headers the contract names, the body
// (for SSE, the decoded events; for WebSocket, the messages joined and the close reason).
type Response struct {
	Status int
	Header map[string]string
	Body   string
}

var headers = []string{"Content-Length", "Content-Range", "Content-Type", "Accept-Ranges", "ETag",
	"Stream-Offset", "Stream-Length", "Stream-Closed", "Cache-Control", "Content-Encoding", "Vary"}

// identity asks for the stored bytes as they are: Go's transport would ask for gzip.
var identity = http.Header{"Accept-Encoding": {"identity"}}

// Reads reads the closed stream of key, of length n, through every transport and rule
// of the contract that applies to a closed stream, and returns what each answered.
func Reads(t testing.TB, url, key string, n int) map[string]Response {
	t.Helper()
	u := url + "/streams/" + key
	mid := strconv.Itoa(n / 3)
	out := map[string]Response{
		"raw":          get(t, u, identity),
		"raw gzip":     get(t, u, http.Header{"Accept-Encoding": {"gzip"}}),
		"raw zstd":     get(t, u, http.Header{"Accept-Encoding": {"gzip, zstd"}}),
		"raw range":    get(t, u, http.Header{"Range": {"bytes=" + mid + "-" + strconv.Itoa(n/3+99)}}),
		"range gzip":   get(t, u, http.Header{"Range": {"bytes=" + mid + "-" + strconv.Itoa(n/3+99)}, "Accept-Encoding": {"gzip, zstd"}}),
		"raw suffix":   get(t, u, http.Header{"Range": {"bytes=-100"}}),
		"raw open":     get(t, u, http.Header{"Range": {"bytes=" + mid + "-"}}),
		"raw offset":   get(t, u+"?offset="+mid, nil),
		"raw at end":   get(t, u+"?offset="+strconv.Itoa(n), nil),
		"raw past end": get(t, u, http.Header{"Range": {"bytes=" + strconv.Itoa(n+1) + "-"}}),
		"sse":          getSSE(t, u, ""),
		"sse resumed":  getSSE(t, u, mid),
		"sse at end":   get(t, u, http.Header{"Accept": {"text/event-stream"}, "Last-Event-ID": {strconv.Itoa(n)}}),
		"websocket":    getWS(t, u),
		"head":         head(t, u, nil),
		"head zstd":    head(t, u, http.Header{"Accept-Encoding": {"zstd"}}),
	}
	return out
}

// Check asserts that reads (from Reads) of a closed stream holding data are right.
func Check(t testing.TB, reads map[string]Response, data []byte) {
	t.Helper()
	n := len(data)
	mid := n / 3
	want := map[string]struct {
		status int
		body   string
	}{
		"raw":          {200, string(data)},
		"raw gzip":     {200, string(data)},
		"raw zstd":     {200, string(data)},
		"raw range":    {206, string(data[mid : mid+100])},
		"range gzip":   {206, string(data[mid : mid+100])},
		"raw suffix":   {206, string(data[n-100:])},
		"raw open":     {206, string(data[mid:])},
		"raw offset":   {200, string(data[mid:])},
		"raw at end":   {204, ""},
		"raw past end": {416, ""},
		"sse":          {200, sseWant(data, 0)},
		"sse resumed":  {200, sseWant(data, mid)},
		"sse at end":   {204, ""},
		"websocket":    {101, string(data) + "|close 1000 end"},
		"head":         {200, ""},
		"head zstd":    {200, ""},
	}
	for name, w := range want {
		r := reads[name]
		if r.Status != w.status {
			t.Errorf("%s: status %d, want %d", name, r.Status, w.status)
		}
		if w.status != 416 && r.Body != w.body {
			t.Errorf("%s: body of %d bytes differs from the %d expected", name, len(r.Body), len(w.body))
		}
	}
	if got := reads["raw"].Header["Content-Length"]; got != strconv.Itoa(n) {
		t.Errorf("raw: Content-Length %q, want %d", got, n)
	}
	if got, w := reads["raw range"].Header["Content-Range"], fmt.Sprintf("bytes %d-%d/%d", mid, mid+99, n); got != w {
		t.Errorf("raw range: Content-Range %q, want %q", got, w)
	}
	if got, w := reads["raw past end"].Header["Content-Range"], fmt.Sprintf("bytes */%d", n); got != w {
		t.Errorf("raw past end: Content-Range %q, want %q", got, w)
	}
	if got := reads["head"].Header["Stream-Length"]; got != strconv.Itoa(n) {
		t.Errorf("head: Stream-Length %q, want %d", got, n)
	}
	checkEncodings(t, reads)
}

// checkEncodings asserts that whole reads are compressed as asked, each with an ETag of
// its own, and that ranges and HEAD without Accept-Encoding are not.
func checkEncodings(t testing.TB, reads map[string]Response) {
	t.Helper()
	for name, want := range map[string]string{"raw": "", "raw gzip": "gzip", "raw zstd": "zstd",
		"range gzip": "", "head": "", "head zstd": "zstd"} {
		if got := reads[name].Header["Content-Encoding"]; got != want {
			t.Errorf("%s: Content-Encoding %q, want %q", name, got, want)
		}
	}
	tags := map[string]string{}
	for _, name := range []string{"raw", "raw gzip", "raw zstd"} {
		tag := reads[name].Header["ETag"]
		if other, ok := tags[tag]; ok || tag == "" {
			t.Errorf("%s: ETag %q, the same as %s's", name, tag, other)
		}
		tags[tag] = name
	}
	if reads["head zstd"].Header["ETag"] != reads["raw zstd"].Header["ETag"] {
		t.Errorf("head zstd: ETag %q, its GET's %q", reads["head zstd"].Header["ETag"], reads["raw zstd"].Header["ETag"])
	}
}

// Same asserts that two sets of reads of the same stream are identical.
func Same(t testing.TB, got, want map[string]Response) {
	t.Helper()
	for name, w := range want {
		if g := got[name]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: archived stream answered %d %v (%d bytes), the live one %d %v (%d bytes)",
				name, g.Status, g.Header, len(g.Body), w.Status, w.Header, len(w.Body))
		}
	}
}

func record(resp *http.Response, body string) Response {
	r := Response{Status: resp.StatusCode, Header: map[string]string{}, Body: body}
	for _, h := range headers {
		if v := resp.Header.Get(h); v != "" {
			r.Header[h] = v
		}
	}
	return r
}

func do(t testing.TB, method, u string, h http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, method, u, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp
}

func get(t testing.TB, u string, h http.Header) Response {
	t.Helper()
	resp := do(t, http.MethodGet, u, h)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s %v: %v", u, h, err)
	}
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		b = nil // an error message, not the stream's
	}
	if b, err = decode(resp.Header.Get("Content-Encoding"), b); err != nil {
		t.Fatalf("GET %s %v: %v", u, h, err)
	}
	return record(resp, string(b))
}

// decode undoes a Content-Encoding, with decoders other than the server's encoders where
// there is one: the standard library's gzip.
func decode(enc string, b []byte) ([]byte, error) {
	switch enc {
	case "":
		return b, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return io.ReadAll(zr)
	case "zstd":
		zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		return zr.DecodeAll(b, nil)
	}
	return nil, fmt.Errorf("unknown Content-Encoding %q", enc)
}

func head(t testing.TB, u string, h http.Header) Response {
	t.Helper()
	resp := do(t, http.MethodHead, u, h)
	resp.Body.Close()
	return record(resp, "")
}

// getSSE reads every event, resuming from lastID if set. The body is the bytes the
// events carry, then "|end <id>" for the end event; an event whose id is not the offset
// just after its bytes adds "|bad id". (Where events split is the server's choice.)
func getSSE(t testing.TB, u, lastID string) Response {
	t.Helper()
	h := http.Header{"Accept": {"text/event-stream"}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	resp := do(t, http.MethodGet, u, h)
	defer resp.Body.Close()
	off, _ := strconv.Atoi(lastID)
	var b bytes.Buffer
	dec := sse.NewDecoder(resp.Body)
	for {
		ev, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SSE %s: %v", u, err)
		}
		if ev.Type == "end" {
			fmt.Fprintf(&b, "|end %s", ev.ID)
			continue
		}
		data, err := ev.Bytes()
		if err != nil {
			t.Fatalf("SSE %s: event %q: %v", u, ev.ID, err)
		}
		b.Write(data)
		off += len(data)
		if ev.ID != strconv.Itoa(off) {
			fmt.Fprintf(&b, "|bad id %s at %d", ev.ID, off)
		}
	}
	return record(resp, b.String())
}

// sseWant is what getSSE reads of data from offset off.
func sseWant(data []byte, off int) string {
	return string(data[off:]) + "|end " + strconv.Itoa(len(data))
}

// getWS reads every message and the close reason.
func getWS(t testing.TB, u string) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+u[len("http"):], nil)
	if err != nil {
		t.Fatalf("WebSocket %s: %v", u, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	var b bytes.Buffer
	for {
		_, m, err := c.Read(ctx)
		if err != nil {
			fmt.Fprintf(&b, "|close %d %s", websocket.CloseStatus(err), closeReason(err))
			break
		}
		b.Write(m)
	}
	return record(resp, b.String())
}

func closeReason(err error) string {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return err.Error()
	}
	return ce.Reason
}
