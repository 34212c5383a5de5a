package http

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// Helpers shared by server_test.go and publish_test.go. They talk to the server over real
// sockets only: net/http with a client that never follows redirects, or raw TCP where the
// request-target or the framing must be sent exactly as written.

// testTimeout bounds every wait of these tests; it is a failure bound, never a pace.
const testTimeout = 20 * time.Second

// noRedirect is a client that returns a redirect as it is, so a test sees it.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       testTimeout,
}

// call sends method url with body (nil for none) and header pairs ("Name", "value", ...),
// and returns the response with its body read and closed. A pair's value may be empty:
// the header is then sent with an empty value.
func call(t testing.TB, method, url string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header[http.CanonicalHeaderKey(header[i])] = append(req.Header[http.CanonicalHeaderKey(header[i])], header[i+1])
	}
	return do(t, req)
}

// do sends req with noRedirect and returns the response with its body read and closed.
func do(t testing.TB, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// opaque sends method with the request-target target exactly as written (no cleaning, no
// re-encoding), through net/http.
func opaque(t testing.TB, ts *testServer, method, target string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return do(t, req)
}

// rawHTTP writes req, a whole HTTP/1.1 request, on a new TCP connection and reads one
// response. The request should say "Connection: close".
func rawHTTP(t testing.TB, ts *testServer, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readRawResponse(t, c, strings.SplitN(req, " ", 2)[0])
}

// readRawResponse reads one response to a method request from c.
func readRawResponse(t testing.TB, c net.Conn, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(b)
}

// streamURL is the URL of stream key.
func (ts *testServer) streamURL(key string) string { return ts.url + "/streams/" + key }

// wantStatus fails the test unless resp has status code.
func wantStatus(t testing.TB, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %q", resp.Request.Method, resp.Request.URL, resp.StatusCode, code, body)
	}
}

// wantInfo fails the test unless resp carries Stream-Length: length and Stream-Closed: closed.
func wantInfo(t testing.TB, resp *http.Response, length int64, closed bool) {
	t.Helper()
	l, c := resp.Header.Get("Stream-Length"), resp.Header.Get("Stream-Closed")
	if l != strconv.FormatInt(length, 10) || c != strconv.FormatBool(closed) {
		t.Fatalf("Stream-Length %q, Stream-Closed %q; want %d, %v", l, c, length, closed)
	}
}

// headInfo asks the server where stream key is, with HEAD, and fails unless it exists.
func headInfo(t testing.TB, ts *testServer, key string) (length int64, closed bool) {
	t.Helper()
	resp, body := call(t, http.MethodHead, ts.streamURL(key), nil)
	wantStatus(t, resp, body, http.StatusOK)
	length, err := strconv.ParseInt(resp.Header.Get("Stream-Length"), 10, 64)
	if err != nil {
		t.Fatalf("HEAD %s: Stream-Length: %v", key, err)
	}
	switch c := resp.Header.Get("Stream-Closed"); c {
	case "true", "false":
		return length, c == "true"
	default:
		t.Fatalf("HEAD %s: Stream-Closed %q", key, c)
		return 0, false
	}
}

// wantStream checks, over HTTP (HEAD) and in the store behind the server, that stream key
// holds exactly want and is closed or not.
func wantStream(t testing.TB, ts *testServer, key, want string, closed bool) {
	t.Helper()
	length, isClosed := headInfo(t, ts, key)
	if length != int64(len(want)) || isClosed != closed {
		t.Fatalf("stream %s: HEAD says length %d closed %v; want %d %v", key, length, isClosed, len(want), closed)
	}
	if got := storedBytes(t, ts, key); got != want {
		t.Fatalf("stream %s holds %q, want %q", key, got, want)
	}
}

// storedBytes reads what the store behind the server holds for key.
func storedBytes(t testing.TB, ts *testServer, key string) string {
	t.Helper()
	st, err := ts.store.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("store.Open(%s): %v", key, err)
	}
	defer st.Release()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for off := int64(0); ; {
		b, _, _, err := st.Read(context.Background(), buf, off)
		if err != nil {
			t.Fatalf("store Read(%s, %d): %v", key, off, err)
		}
		if len(b) == 0 {
			return sb.String()
		}
		sb.Write(b)
		off += int64(len(b))
	}
}

// waitStored waits until stream key holds at least n bytes: it waits on the store's change
// notifications, never on a clock.
func waitStored(t testing.TB, ts *testServer, key string, n int64) {
	t.Helper()
	st, err := ts.store.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("store.Open(%s): %v", key, err)
	}
	defer st.Release()
	deadline := time.After(testTimeout)
	for {
		_, info, changed, err := st.Read(context.Background(), nil, 0)
		if err != nil {
			t.Fatalf("store Read(%s): %v", key, err)
		}
		if info.Length >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("stream %s: length %d after %v, want %d", key, info.Length, testTimeout, n)
		}
	}
}

// testRequestLog is a slog handler that records the server's request log lines, so a test can
// wait until the server has finished with a request whose client went away.
type testRequestLog struct {
	mu      sync.Mutex
	done    []loggedRequest
	changed chan struct{}
}

type loggedRequest struct {
	method, path, outcome string
	status                int
	bytes                 int64
}

func newRequestLog() *testRequestLog { return &testRequestLog{changed: make(chan struct{})} }

func (l *testRequestLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *testRequestLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *testRequestLog) WithGroup(string) slog.Handler            { return l }

func (l *testRequestLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "request" {
		return nil
	}
	var lr loggedRequest
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			lr.method = a.Value.String()
		case "path":
			lr.path = a.Value.String()
		case "status":
			lr.status = int(a.Value.Int64())
		case "bytes":
			lr.bytes = a.Value.Int64()
		case "outcome":
			lr.outcome = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = append(l.done, lr)
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

// mark returns how many requests the server has finished so far, for wait.
func (l *testRequestLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

// wait returns the status of the first request for method and path that the server
// finished after mark, waiting for the server to finish one.
func (l *testRequestLog) wait(t testing.TB, mark int, method, path string) int {
	t.Helper()
	return l.waitN(t, mark, method, path, 1)[0].status
}

// waitN returns the first n requests for method and path that the server finished
// after mark, waiting for the server to finish them.
func (l *testRequestLog) waitN(t testing.TB, mark int, method, path string, n int) []loggedRequest {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		l.mu.Lock()
		var found []loggedRequest
		for _, r := range l.done[mark:] {
			if r.method == method && r.path == path {
				found = append(found, r)
			}
		}
		if len(found) >= n {
			l.mu.Unlock()
			return found[:n]
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the server did not finish %s %s within %v", method, path, testTimeout)
		}
	}
}

// metricValue reads one unlabelled sample from /metrics.
func metricValue(t testing.TB, ts *testServer, name string) float64 {
	t.Helper()
	resp, body := call(t, http.MethodGet, ts.url+"/metrics", nil)
	wantStatus(t, resp, body, http.StatusOK)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", name, line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no sample %s", name)
	return 0
}

// TestStreamKeysValid proves "a key is one or more segments joined by /, each of
// [A-Za-z0-9._~-] ... at most 512 bytes": every such key names its own stream.
func TestStreamKeysValid(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	keys := []string{
		"a",
		"app/builds/1234",
		"0b8f3a2e-7c1d-4e5f-9a6b-1c2d3e4f5a6b",
		"AZaz09._~-",
		"...", // three dots is a name, not a parent
		".hidden/x.",
		"a/b/c/d/e/f/g/h",
		strings.Repeat("k", sluice.MaxKeyLen),
		strings.Repeat("ab/", sluice.MaxKeyLen/3-1) + "abcde", // 512 bytes with slashes
	}
	for i, key := range keys {
		if len(key) > sluice.MaxKeyLen {
			t.Fatalf("test key %d is %d bytes", i, len(key))
		}
		resp, body := call(t, http.MethodPut, ts.streamURL(key), nil)
		wantStatus(t, resp, body, http.StatusCreated)
		if loc := resp.Header.Get("Location"); loc != "/streams/"+key {
			t.Errorf("PUT %s: Location %q", key, loc)
		}
		payload := strconv.Itoa(i)
		resp, body = call(t, http.MethodPost, ts.streamURL(key), strings.NewReader(payload))
		wantStatus(t, resp, body, http.StatusOK)
	}
	for i, key := range keys {
		wantStream(t, ts, key, strconv.Itoa(i), true)
	}
}

// TestStreamKeysInvalid proves "Anything else: 400 ... a path that a router would clean or
// redirect (.., //) is 400, never a redirect and never another stream", for every method,
// with request-targets sent byte for byte over raw TCP.
func TestStreamKeysInvalid(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	// Streams a cleaned path could land on: none may change.
	for _, key := range []string{"a", "b", "a/b"} {
		resp, body := call(t, http.MethodPost, ts.streamURL(key), strings.NewReader("x"), "Stream-Close", "false")
		wantStatus(t, resp, body, http.StatusOK)
	}
	targets := []string{
		"/streams/",
		"/streams//a",
		"/streams/a//b",
		"/streams/a/",
		"/streams/.",
		"/streams/..",
		"/streams/./a",
		"/streams/a/.",
		"/streams/a/./b",
		"/streams/a/..",
		"/streams/a/../b",
		"/streams/../streams/a",
		"/streams/%2e%2e",
		"/streams/a/%2e%2e/b",
		"/streams/a/%2E%2e",
		"/streams/%2e",
		"/streams/a%2F%2Fb",
		"/streams/a%2F",
		"/streams/%2Fa",
		"/streams/a%2F..%2Fb",
		"/streams/a%20b",
		"/streams/a%00b",
		"/streams/a%0Ab",
		"/streams/a%2Bb",
		"/streams/a+b",
		"/streams/a:b",
		"/streams/a@b",
		"/streams/a!b",
		"/streams/a%25b",
		"/streams/a*b",
		"/streams/%C3%A9",
		"/streams/a%5Cb",
		"/streams/" + strings.Repeat("k", sluice.MaxKeyLen+1),
		"/streams/" + strings.Repeat("ab/", sluice.MaxKeyLen/3-1) + "abcdef", // 513 bytes
		"//streams/a",
		"/./streams/a",
		"/x/../streams/a",
		"/streams/a/../../health",
	}
	for _, target := range targets {
		for _, method := range []string{"GET", "HEAD", "PUT", "POST", "DELETE"} {
			body := ""
			if method == "POST" {
				body = "evil"
			}
			resp, rb := rawHTTP(t, ts, method+" "+target+" HTTP/1.1\r\nHost: sluice\r\nContent-Length: "+
				strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: status %d (Location %q), want 400; body %q", method, shorten(target), resp.StatusCode, resp.Header.Get("Location"), rb)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("%s %s: Location %q: a bad key must not redirect", method, shorten(target), loc)
			}
		}
	}
	for _, key := range []string{"a", "b", "a/b"} {
		wantStream(t, ts, key, "x", false)
	}
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:20] + "…" + s[len(s)-10:] + " (" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

// TestStreamKeyEncodedSlash proves "the key is checked after percent-decoding the path
// (%2F is a /)": /streams/a%2Fb is the stream /streams/a/b, with no redirect.
func TestStreamKeyEncodedSlash(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := opaque(t, ts, http.MethodPut, "/streams/app%2Fbuilds%2F1", nil)
	wantStatus(t, resp, body, http.StatusCreated)
	resp, body = call(t, http.MethodPut, ts.streamURL("app/builds/1"), nil)
	wantStatus(t, resp, body, http.StatusOK) // already exists: the same stream

	resp, body = opaque(t, ts, http.MethodPost, "/streams/app%2fbuilds/1", strings.NewReader("hello "), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, 6, false)
	resp, body = rawHTTP(t, ts, "POST /streams/app/builds%2F1 HTTP/1.1\r\nHost: sluice\r\nStream-Offset: 6\r\n"+
		"Content-Length: 5\r\nConnection: close\r\n\r\nworld")
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, 11, true)
	wantStream(t, ts, "app/builds/1", "hello world", true)

	resp, body = opaque(t, ts, http.MethodGet, "/streams/app%2Fbuilds%2F1", nil)
	wantStatus(t, resp, body, http.StatusOK)
	if body != "hello world" {
		t.Errorf("GET /streams/app%%2Fbuilds%%2F1: %q", body)
	}
}

// TestNumbersInQueriesAndHeaders proves "Numbers in headers and queries (Stream-Offset,
// Last-Event-ID, Range, ?offset) are unsigned decimal integers below 2^63; anything else
// (sign, fraction, hex, spaces, overflow) is 400" for the subscribe side; the same values
// are valid one digit away. Stream-Offset is covered in publish_test.go.
func TestNumbersInQueriesAndHeaders(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("n"), strings.NewReader("0123456789"))
	wantStatus(t, resp, body, http.StatusOK)

	bad := []string{"", "-1", "+1", "1.0", "1.", ".5", "1e3", "0x1", "0X1", "1 2", "1_0", "½", "١",
		"9223372036854775808", "18446744073709551615", "18446744073709551616", "99999999999999999999"}
	for _, v := range bad {
		cases := []struct {
			name   string
			target string
			header []string
		}{
			{"Last-Event-ID", "/streams/n", []string{"Last-Event-ID", v}},
			{"Range", "/streams/n", []string{"Range", "bytes=" + v + "-"}},
			{"Range end", "/streams/n", []string{"Range", "bytes=1-" + v}},
			{"Range suffix", "/streams/n", []string{"Range", "bytes=-" + v}},
			{"?offset", "/streams/n?offset=" + url.QueryEscape(v), nil},
		}
		if v == "" {
			cases[1].header[1] = ""                 // an empty Range header, rather than "bytes=-"
			cases = append(cases[:2], cases[3:]...) // "bytes=1-" is valid
		}
		for _, c := range cases {
			resp, body := opaque(t, ts, http.MethodGet, c.target, nil, c.header...)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %q: status %d, want 400; body %q", c.name, v, resp.StatusCode, body)
			}
		}
	}
	// Valid numbers, for contrast: the same requests succeed.
	good := []struct {
		header []string
		target string
		want   string
	}{
		{[]string{"Last-Event-ID", "3"}, "/streams/n", "3456789"},
		{[]string{"Last-Event-ID", "0000000000000000003"}, "/streams/n", "3456789"},
		{[]string{"Range", "bytes=3-"}, "/streams/n", "3456789"},
		{[]string{"Range", "bytes=3-4"}, "/streams/n", "34"},
		{[]string{"Range", "bytes=-2"}, "/streams/n", "89"},
		{nil, "/streams/n?offset=3", "3456789"},
		{nil, "/streams/n?offset=0", "0123456789"},
	}
	for _, g := range good {
		resp, body := opaque(t, ts, http.MethodGet, g.target, nil, g.header...)
		if resp.StatusCode/100 != 2 || body != g.want {
			t.Errorf("GET %s %q: status %d body %q, want %q", g.target, g.header, resp.StatusCode, body, g.want)
		}
	}
	// 2^63-1 is a number: beyond the closed stream's end (416), not malformed (400).
	for _, h := range [][]string{{"Last-Event-ID", "9223372036854775807"}, {"Range", "bytes=9223372036854775807-"}} {
		resp, body := opaque(t, ts, http.MethodGet, "/streams/n", nil, h...)
		wantStatus(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
	}
	resp, body = opaque(t, ts, http.MethodGet, "/streams/n?offset=9223372036854775807", nil)
	wantStatus(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
}

// TestCreate proves "PUT: 201 Created if new, 200 if it already exists. It never wipes or
// reopens an existing stream".
func TestCreate(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPut, ts.streamURL("c/open"), nil)
	wantStatus(t, resp, body, http.StatusCreated)
	wantStream(t, ts, "c/open", "", false)
	resp, body = call(t, http.MethodPost, ts.streamURL("c/open"), strings.NewReader("data"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = call(t, http.MethodPut, ts.streamURL("c/open"), nil)
	wantStatus(t, resp, body, http.StatusOK)
	wantStream(t, ts, "c/open", "data", false) // not wiped

	resp, body = call(t, http.MethodPost, ts.streamURL("c/closed"), strings.NewReader("done"))
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = call(t, http.MethodPut, ts.streamURL("c/closed"), nil)
	wantStatus(t, resp, body, http.StatusOK)
	wantStream(t, ts, "c/closed", "done", true) // neither wiped nor reopened
}

// TestCreateRandom proves "POST /streams (no key) creates a stream with a random key of at
// least 122 bits of entropy and answers 201 with Location: /streams/{key} and a JSON body
// {"key": "...", "url": "..."}".
func TestCreateRandom(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	seen := map[string]bool{}
	for range 3 {
		resp, body := call(t, http.MethodPost, ts.url+"/streams", nil)
		wantStatus(t, resp, body, http.StatusCreated)
		var got struct{ Key, URL string }
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if err := sluice.ValidKey(got.Key); err != nil {
			t.Fatalf("key %q: %v", got.Key, err)
		}
		if bits := keyBits(got.Key); bits < 122 {
			t.Errorf("key %q carries at most %.0f bits, want ≥ 122", got.Key, bits)
		}
		if loc := resp.Header.Get("Location"); loc != "/streams/"+got.Key {
			t.Errorf("Location %q for key %q", loc, got.Key)
		}
		if got.URL != ts.url+"/streams/"+got.Key {
			t.Errorf("url %q, want %q", got.URL, ts.url+"/streams/"+got.Key)
		}
		if seen[got.Key] {
			t.Errorf("key %q handed out twice", got.Key)
		}
		seen[got.Key] = true
		wantStream(t, ts, got.Key, "", false)
		resp, body = call(t, http.MethodPut, got.URL, nil)
		wantStatus(t, resp, body, http.StatusOK) // it exists
	}
}

// keyBits bounds the entropy a random key can carry from its length and alphabet: 4 bits
// a character for hex, 6 for base64url, log2(62) for alphanumerics; other keys get 0.
func keyBits(key string) float64 {
	switch {
	case regexp.MustCompile(`^[0-9a-f]+$`).MatchString(key), regexp.MustCompile(`^[0-9A-F]+$`).MatchString(key):
		return 4 * float64(len(key))
	case regexp.MustCompile(`^[0-9A-Za-z]+$`).MatchString(key):
		return math.Log2(62) * float64(len(key))
	case regexp.MustCompile(`^[0-9A-Za-z_-]+$`).MatchString(key):
		return 6 * float64(len(key))
	}
	return 0
}

// TestClose proves "DELETE closes the stream without adding data: 200, or 404 if unknown.
// Idempotent."
func TestClose(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("d"), strings.NewReader("abc"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	for range 2 {
		resp, body = call(t, http.MethodDelete, ts.streamURL("d"), nil)
		wantStatus(t, resp, body, http.StatusOK)
		wantStream(t, ts, "d", "abc", true)
	}
	resp, body = call(t, http.MethodDelete, ts.streamURL("unknown"), nil)
	wantStatus(t, resp, body, http.StatusNotFound)
	resp, body = call(t, http.MethodHead, ts.streamURL("unknown"), nil)
	wantStatus(t, resp, body, http.StatusNotFound) // DELETE did not create it
}

// TestPurge proves "DELETE /streams/{key}?purge=true (200 or 204; 404 if unknown): its
// bytes are deleted ... and the key is free for a new stream", and that other values of
// purge are 400.
func TestPurge(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	for _, closed := range []string{"true", "false"} {
		key := "p/" + closed
		resp, body := call(t, http.MethodPost, ts.streamURL(key), strings.NewReader("secret"), "Stream-Close", closed)
		wantStatus(t, resp, body, http.StatusOK)
		resp, body = call(t, http.MethodDelete, ts.streamURL(key)+"?purge=bogus", nil)
		wantStatus(t, resp, body, http.StatusBadRequest)
		wantStream(t, ts, key, "secret", closed == "true") // a bad request changes nothing
		resp, body = call(t, http.MethodDelete, ts.streamURL(key)+"?purge=true", nil)
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
			t.Fatalf("purge %s: status %d %q", key, resp.StatusCode, body)
		}
		resp, body = call(t, http.MethodHead, ts.streamURL(key), nil)
		wantStatus(t, resp, body, http.StatusNotFound)
		resp, body = call(t, http.MethodDelete, ts.streamURL(key)+"?purge=true", nil)
		wantStatus(t, resp, body, http.StatusNotFound)
		resp, body = call(t, http.MethodPut, ts.streamURL(key), nil)
		wantStatus(t, resp, body, http.StatusCreated)
		wantStream(t, ts, key, "", false)
		resp, body = call(t, http.MethodPost, ts.streamURL(key), strings.NewReader("new"))
		wantStatus(t, resp, body, http.StatusOK)
		wantStream(t, ts, key, "new", true)
	}
	resp, body := call(t, http.MethodDelete, ts.streamURL("unknown")+"?purge=true", nil)
	wantStatus(t, resp, body, http.StatusNotFound)
}

// TestHead proves "HEAD: 200 with Stream-Length, Stream-Closed, and Content-Length when
// closed; 404 if unknown." Responses are read off the wire, so no client fills in a
// Content-Length of its own.
func TestHead(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("h"), strings.NewReader("12345"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	head := func(key string) *http.Response {
		resp, _ := rawHTTP(t, ts, "HEAD /streams/"+key+" HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
		return resp
	}
	resp = head("h")
	wantStatus(t, resp, "", http.StatusOK)
	wantInfo(t, resp, 5, false)
	if cl, ok := resp.Header["Content-Length"]; ok {
		t.Errorf("HEAD of an open stream has Content-Length %q", cl)
	}
	resp, body = call(t, http.MethodDelete, ts.streamURL("h"), nil)
	wantStatus(t, resp, body, http.StatusOK)
	resp = head("h")
	wantStatus(t, resp, "", http.StatusOK)
	wantInfo(t, resp, 5, true)
	if cl := resp.Header.Get("Content-Length"); cl != "5" {
		t.Errorf("HEAD of a closed stream: Content-Length %q, want 5", cl)
	}
	resp = head("unknown")
	wantStatus(t, resp, "", http.StatusNotFound)
}

// TestHealth proves "GET /health answers OK (busl). GET /healthz (alive) and GET /readyz
// (ready; 503 while shutting down)."
func TestHealth(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodGet, ts.url+"/health", nil)
	wantStatus(t, resp, body, http.StatusOK)
	if body != "OK" {
		t.Errorf("/health: %q, want OK", body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, body := call(t, http.MethodGet, ts.url+path, nil)
		wantStatus(t, resp, body, http.StatusOK)
	}
	ts.Drain()
	resp, body = call(t, http.MethodGet, ts.url+"/readyz", nil)
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	resp, body = call(t, http.MethodGet, ts.url+"/healthz", nil)
	wantStatus(t, resp, body, http.StatusOK) // still alive
}

// TestMetrics proves "GET /metrics: Prometheus text format, including the Go runtime's
// standard collectors (go_goroutines, go_memstats_*) and process metrics", and that the
// sluice_* counters count what happens.
func TestMetrics(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodGet, ts.url+"/metrics", nil)
	wantStatus(t, resp, body, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes",
		"sluice_published_bytes_total", "sluice_conflicts_total", "sluice_streams_open",
		"sluice_followers", "sluice_sent_bytes_total", "sluice_flush_seconds", "sluice_slow_followers_dropped_total"} {
		if !regexp.MustCompile(`(?m)^# TYPE ` + name + ` `).MatchString(body) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if g := metricValue(t, ts, "go_goroutines"); g < 1 {
		t.Errorf("go_goroutines %v", g)
	}

	published := metricValue(t, ts, "sluice_published_bytes_total")
	resp, body = call(t, http.MethodPost, ts.streamURL("m"), strings.NewReader("0123456789"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	if got := metricValue(t, ts, "sluice_published_bytes_total"); got != published+10 {
		t.Errorf("sluice_published_bytes_total %v after publishing 10 bytes, was %v", got, published)
	}
	if open := metricValue(t, ts, "sluice_streams_open"); open != 1 {
		t.Errorf("sluice_streams_open %v, want 1", open)
	}

	conflicts := metricValue(t, ts, "sluice_conflicts_total")
	resp, body = call(t, http.MethodPost, ts.streamURL("m"), strings.NewReader("x"), "Stream-Offset", "11")
	wantStatus(t, resp, body, http.StatusConflict)
	if got := metricValue(t, ts, "sluice_conflicts_total"); got != conflicts+1 {
		t.Errorf("sluice_conflicts_total %v after a 409, was %v", got, conflicts)
	}
	resp, body = call(t, http.MethodDelete, ts.streamURL("m"), nil)
	wantStatus(t, resp, body, http.StatusOK)
	if open := metricValue(t, ts, "sluice_streams_open"); open != 0 {
		t.Errorf("sluice_streams_open %v after the close, want 0", open)
	}
}

// The methods and request headers PROTOCOL.md names, which a preflight must allow.
var (
	contractMethods = []string{"GET", "HEAD", "PUT", "POST", "DELETE"}
	contractHeaders = []string{"Stream-Offset", "Stream-Close", "Last-Event-ID", "Range", "Request-Id"}
	streamHeaders   = []string{"Stream-Offset", "Stream-Length", "Stream-Closed", "Stream-Conflict"}
)

// listHas reports whether the comma-separated header list has every one of want
// (case-insensitively, as CORS compares them).
func listHas(list string, want ...string) bool {
	have := map[string]bool{}
	for _, v := range strings.Split(list, ",") {
		have[strings.ToLower(strings.TrimSpace(v))] = true
	}
	for _, w := range want {
		if !have[strings.ToLower(w)] {
			return false
		}
	}
	return true
}

// TestCORSPreflight proves "OPTIONS on any path answers CORS preflight (2xx) allowing the
// methods above and the request headers this file names", and the Stream-* headers
// exposed, for an origin allowed to write (--cors-origins '*').
func TestCORSPreflight(t *testing.T) {
	ts := newTestServer(t, Config{CORSOrigins: []string{"*"}}, file.Options{})
	for _, target := range []string{"/streams/a/b", "/streams/unknown", "/streams", "/metrics", "/nowhere", "/streams/..", "/v1/stream/x"} {
		for _, method := range contractMethods {
			resp, body := opaque(t, ts, http.MethodOptions, target, nil,
				"Origin", "https://app.example",
				"Access-Control-Request-Method", method,
				"Access-Control-Request-Headers", "stream-offset,stream-close,last-event-id,range")
			if resp.StatusCode/100 != 2 {
				t.Errorf("OPTIONS %s: status %d %q", target, resp.StatusCode, body)
			}
			h := resp.Header
			if o := h.Get("Access-Control-Allow-Origin"); o != "https://app.example" {
				t.Errorf("OPTIONS %s: Access-Control-Allow-Origin %q", target, o)
			}
			if m := h.Get("Access-Control-Allow-Methods"); !listHas(m, contractMethods...) {
				t.Errorf("OPTIONS %s: Access-Control-Allow-Methods %q lacks one of %v", target, m, contractMethods)
			}
			if a := h.Get("Access-Control-Allow-Headers"); !listHas(a, append(contractHeaders, "Authorization", "If-None-Match")...) {
				t.Errorf("OPTIONS %s: Access-Control-Allow-Headers %q lacks one of %v", target, a, contractHeaders)
			}
		}
	}
	// Actual requests expose the Stream-* headers to the page.
	resp, body := call(t, http.MethodPost, ts.streamURL("cors"), strings.NewReader("x"), "Origin", "https://app.example")
	wantStatus(t, resp, body, http.StatusOK)
	for _, r := range []*http.Response{resp, func() *http.Response {
		resp, _ := call(t, http.MethodGet, ts.streamURL("cors"), nil, "Origin", "https://app.example")
		return resp
	}()} {
		if o := r.Header.Get("Access-Control-Allow-Origin"); o != "https://app.example" {
			t.Errorf("%s: Access-Control-Allow-Origin %q", r.Request.Method, o)
		}
		if e := r.Header.Get("Access-Control-Expose-Headers"); !listHas(e, streamHeaders...) {
			t.Errorf("%s: Access-Control-Expose-Headers %q lacks one of %v", r.Request.Method, e, streamHeaders)
		}
	}
}

// TestCORSOrigins proves "cross-origin reads stay possible, but cross-origin writes are
// allowed only for the origins in --cors-origins; without it, a preflight for them gets
// no allowance": a listed origin may write (it is echoed, with Vary: Origin); any other,
// and every other without the flag, may read (Access-Control-Allow-Origin: *), gets no
// write methods in a preflight, and a write it sends without one (a form POST) is
// refused with 403, storing nothing; the server's own origin may write.
func TestCORSOrigins(t *testing.T) {
	for _, listed := range [][]string{nil, {"https://a.example", "https://b.example"}} {
		ts := newTestServer(t, Config{CORSOrigins: listed}, file.Options{})
		resp, body := call(t, http.MethodPut, ts.streamURL("o"), nil)
		wantStatus(t, resp, body, http.StatusCreated)
		for _, origin := range listed {
			resp, _ := call(t, http.MethodOptions, ts.streamURL("o"), nil, "Origin", origin, "Access-Control-Request-Method", "POST")
			if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
				!listHas(resp.Header.Get("Access-Control-Allow-Methods"), contractMethods...) || !listHas(resp.Header.Get("Vary"), "Origin") {
				t.Errorf("preflight from %s: %d %v", origin, resp.StatusCode, resp.Header)
			}
			resp, body := call(t, http.MethodPost, ts.streamURL("by/"+strings.TrimPrefix(origin, "https://")), strings.NewReader("listed"), "Origin", origin)
			wantStatus(t, resp, body, http.StatusOK)
		}
		resp, body = call(t, http.MethodPost, ts.streamURL("by/own"), strings.NewReader("own"), "Origin", ts.url)
		wantStatus(t, resp, body, http.StatusOK)
		before := storedBytes(t, ts, "o")
		for _, origin := range []string{"https://evil.example", "https://a.example.evil", "null"} {
			resp, _ := call(t, http.MethodOptions, ts.streamURL("o"), nil, "Origin", origin, "Access-Control-Request-Method", "DELETE")
			if m := resp.Header.Get("Access-Control-Allow-Methods"); strings.Contains(m, "DELETE") || strings.Contains(m, "POST") {
				t.Errorf("preflight for DELETE from %s allows %q", origin, m)
			}
			resp, _ = call(t, http.MethodHead, ts.streamURL("o"), nil, "Origin", origin)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("read from %s: %d, Access-Control-Allow-Origin %q; want it allowed", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
			}
			for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
				resp, body := call(t, method, ts.streamURL("o")+"?purge=true", strings.NewReader("evil"), "Origin", origin, "Stream-Close", "false")
				wantStatus(t, resp, body, http.StatusForbidden)
			}
		}
		if after := storedBytes(t, ts, "o"); after != before {
			t.Errorf("refused cross-origin writes changed the stream: %q, then %q", before, after)
		}
	}
}

// TestRequestID proves "Every response carries Request-Id (the request's own, or a new
// one)": successes, 400, 404, 405, 409, OPTIONS alike.
func TestRequestID(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("r"), strings.NewReader("x"))
	wantStatus(t, resp, body, http.StatusOK)
	requests := []struct{ method, target string }{
		{"GET", "/health"},
		{"GET", "/metrics"},
		{"GET", "/nowhere"},
		{"GET", "/streams/r"},
		{"HEAD", "/streams/r"},
		{"HEAD", "/streams/unknown"},
		{"GET", "/streams/a/../b"},
		{"PUT", "/streams/%2e%2e"},
		{"POST", "/streams/r"}, // closed: 409
		{"PATCH", "/streams/r"},
		{"OPTIONS", "/streams/r"},
		{"OPTIONS", "/anything"},
		{"DELETE", "/streams/unknown"},
		{"POST", "/streams"},
	}
	seen := map[string]bool{}
	for _, r := range requests {
		payload := func() io.Reader {
			if r.method == "POST" {
				return strings.NewReader("more")
			}
			return nil
		}
		resp, _ := opaque(t, ts, r.method, r.target, payload())
		id := resp.Header.Get("Request-Id")
		if id == "" || seen[id] {
			t.Errorf("%s %s (%d): Request-Id %q, want a new one", r.method, r.target, resp.StatusCode, id)
		}
		seen[id] = true
		mine := "client-" + strconv.Itoa(len(seen))
		resp, _ = opaque(t, ts, r.method, r.target, payload(), "Request-Id", mine)
		if got := resp.Header.Get("Request-Id"); got != mine {
			t.Errorf("%s %s (%d): Request-Id %q, want the client's %q", r.method, r.target, resp.StatusCode, got, mine)
		}
	}
}

// TestErrorBodies proves "Client errors get a 4xx with a one-line, human-readable reason".
func TestErrorBodies(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{MaxStreamSize: 8})
	resp, body := call(t, http.MethodPost, ts.streamURL("e"), strings.NewReader("abc"))
	wantStatus(t, resp, body, http.StatusOK)
	cases := []struct {
		method, target string
		header         []string
		body           string
		code           int
	}{
		{"GET", "/streams/a/../b", nil, "", 400},
		{"PUT", "/streams/a%0Ab", nil, "", 400},
		{"POST", "/streams/" + strings.Repeat("k", 600), nil, "", 400},
		{"POST", "/streams/e", []string{"Stream-Offset", "-1"}, "x", 400},
		{"POST", "/streams/e", []string{"Stream-Close", "maybe"}, "x", 400},
		{"GET", "/streams/e", []string{"Range", "bytes=1-2,4-5"}, "", 400},
		{"GET", "/streams/e?offset=0x1", nil, "", 400},
		{"DELETE", "/streams/e?purge=yes", nil, "", 400},
		{"GET", "/streams/unknown", nil, "", 404},
		{"DELETE", "/streams/unknown", nil, "", 404},
		{"GET", "/nowhere", nil, "", 404},
		{"PATCH", "/streams/e", nil, "", 405},
		{"POST", "/streams/e", []string{"Stream-Offset", "3"}, "more", 409},
		{"POST", "/streams/e", []string{"Stream-Offset", "9"}, "", 409},
		{"POST", "/streams/f", nil, "123456789", 413},
		{"GET", "/streams/e", []string{"Last-Event-ID", "4"}, "", 416},
	}
	for _, c := range cases {
		resp, body := opaque(t, ts, c.method, c.target, strings.NewReader(c.body), c.header...)
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: status %d, want %d", c.method, shorten(c.target), resp.StatusCode, c.code)
		}
		line, ok := strings.CutSuffix(body, "\n")
		if !ok || line == "" || strings.ContainsAny(line, "\r\n") || !utf8.ValidString(line) ||
			strings.ContainsFunc(line, func(r rune) bool { return !unicode.IsPrint(r) }) ||
			!strings.ContainsFunc(line, unicode.IsLetter) || strings.Contains(line, "<") {
			t.Errorf("%s %s (%d): body %q is not one human-readable line", c.method, shorten(c.target), resp.StatusCode, body)
		}
	}
}

// recordingAuthorizer records what each request asked for, and refuses what refuse
// says.
type recordingAuthorizer struct {
	mu     sync.Mutex
	asked  []string // "op key token"
	refuse func(key string, op sluice.Op) error
}

func (a *recordingAuthorizer) Authorize(ctx context.Context, key string, op sluice.Op) error {
	a.mu.Lock()
	a.asked = append(a.asked, string(op)+" "+key+" "+sluice.CredentialsFrom(ctx).Token)
	a.mu.Unlock()
	if a.refuse != nil {
		return a.refuse(key, op)
	}
	return nil
}

func (a *recordingAuthorizer) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.asked
	a.asked = nil
	return out
}

// TestEveryRouteAuthorizes proves that every route passes through the Authorizer with
// the operation it asks for and the credentials the request carried (Bearer, ?token=,
// or a Basic password), and that a refusal is 401 (with WWW-Authenticate) or 403, with
// nothing stored.
func TestEveryRouteAuthorizes(t *testing.T) {
	az := &recordingAuthorizer{}
	ts := newTestServer(t, Config{Authorizer: az, Index: true}, file.Options{})
	bearer := []string{"Authorization", "Bearer tok"}
	steps := []struct {
		method, path string
		h            []string
		want         string
	}{
		{http.MethodPut, "/streams/a/b", bearer, "create a/b tok"},
		{http.MethodPost, "/streams/a/b", bearer, "publish a/b tok"},
		{http.MethodGet, "/streams/a/b?token=q", nil, "read a/b q"},
		{http.MethodHead, "/streams/a/b", bearer, "read a/b tok"},
		{http.MethodDelete, "/streams/a/b", bearer, "close a/b tok"},
		{http.MethodGet, "/streams/", bearer, "list  tok"},
		{http.MethodPost, "/streams", bearer, "create  tok"},
		{http.MethodDelete, "/streams/a/b?purge=true", []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:pw"))}, "purge a/b pw"},
	}
	for _, st := range steps {
		resp, body := call(t, st.method, ts.url+st.path, nil, st.h...)
		if resp.StatusCode >= 400 {
			t.Fatalf("%s %s: %s %s", st.method, st.path, resp.Status, body)
		}
		if got := az.take(); len(got) != 1 || got[0] != st.want {
			t.Errorf("%s %s asked %q, want [%q]", st.method, st.path, got, st.want)
		}
	}
	az.refuse = func(key string, op sluice.Op) error {
		if op == sluice.OpPublish {
			return fmt.Errorf("no: %w", sluice.ErrForbidden)
		}
		return fmt.Errorf("no: %w", sluice.ErrUnauthorized)
	}
	resp, body := call(t, http.MethodPut, ts.url+"/streams/refused", nil)
	wantStatus(t, resp, body, http.StatusUnauthorized)
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/streams/refused", strings.NewReader("secret bytes"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("refused publish: %s, want 403", resp.Status)
	}
	if _, err := ts.store.Open(context.Background(), "refused"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("a refused create and publish left a stream behind: %v", err)
	}
}

// TestReadyzFollowsTheStore proves "/readyz reflects what the server needs": it
// answers 200 while the data directory can be written, and 503 naming the store once
// it cannot (a read-only file system; where mounting one is not allowed, its trash
// directory replaced by a file), while /health stays 200.
func TestReadyzFollowsTheStore(t *testing.T) {
	dir := t.TempDir()
	mounted := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).Run() == nil
	if mounted {
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	}
	store, err := file.Open(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := NewServer(store, Config{Logger: slog.New(slog.DiscardHandler), Ready: []ReadyCheck{{"store", store.Ready}}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	status := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := status("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with a writable data directory: %d %q", code, body)
	}
	if mounted {
		if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v %s", err, out)
		}
	} else {
		os.RemoveAll(filepath.Join(dir, "trash"))
		os.WriteFile(filepath.Join(dir, "trash"), nil, 0o444)
	}
	if code, body := status("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
		t.Fatalf("/readyz with a read-only data directory (mounted %v): %d %q; want 503 naming the store", mounted, code, body)
	}
	if code, _ := status("/health"); code != http.StatusOK {
		t.Fatalf("/health with a read-only data directory: %d, want 200 (liveness only)", code)
	}
	if mounted {
		exec.Command("mount", "-o", "remount,rw", dir).Run()
	}
}

// TestRequestMetrics proves the metrics an operator alerts on: requests by route and
// status (a follower's once it ends), and refusals by limit.
func TestRequestMetrics(t *testing.T) {
	ts := newTestServer(t, Config{MaxFollowers: 1}, file.Options{MaxStreamSize: 4})
	call(t, http.MethodPut, ts.streamURL("m"), nil)
	call(t, http.MethodPost, ts.streamURL("m"), strings.NewReader("too large"))
	call(t, http.MethodGet, ts.url+"/v1/stream/nope?offset=-1", nil)
	call(t, http.MethodGet, ts.url+"/metrics", nil)
	_, body := call(t, http.MethodGet, ts.url+"/metrics", nil)
	for _, want := range []string{
		`sluice_requests_total{code="201",route="streams"} 1`,
		`sluice_requests_total{code="413",route="streams"} 1`,
		`sluice_requests_total{code="404",route="durable"} 1`,
		`sluice_requests_total{code="200",route="metrics"} 1`,
		`sluice_refused_total{code="413"} 1`,
		`sluice_refused_total{code="429"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
