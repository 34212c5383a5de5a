package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/sse"
)

// Tests of PROTOCOL.md "Subscribe" (raw, SSE and WebSocket transports) and of "Shutdown"
// as followers see it, over real HTTP against a real server.

// subTimeout bounds every wait in these tests. It is a failure bound, never a timing
// assertion: a healthy run finishes each wait in milliseconds.
const subTimeout = 20 * time.Second

// subCtx returns a context that ends after subTimeout, or when the test ends.
func subCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), subTimeout)
	t.Cleanup(cancel)
	return ctx
}

// subHeader builds request headers from name, value pairs.
func subHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

var subSSEAccept = subHeader("Accept", "text/event-stream")

// subSend makes a request whose body is closed when the test ends (or earlier by the caller).
func subSend(t *testing.T, ctx context.Context, method, url string, h http.Header, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// subGet opens GET /streams/{key}{query}.
func subGet(t *testing.T, ctx context.Context, ts *testServer, key, query string, h http.Header) *http.Response {
	t.Helper()
	return subSend(t, ctx, http.MethodGet, ts.url+"/streams/"+key+query, h, nil)
}

// subPublishErr POSTs body at offset off; it is safe to call from any goroutine.
func subPublishErr(ctx context.Context, ts *testServer, key string, off int64, body []byte, closeAtEnd bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+"/streams/"+key, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Stream-Offset", strconv.FormatInt(off, 10))
	if !closeAtEnd {
		req.Header.Set("Stream-Close", "false")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish %s at %d: %d %s", key, off, resp.StatusCode, msg)
	}
	return nil
}

func subPublish(t *testing.T, ts *testServer, key string, off int64, body []byte, closeAtEnd bool) {
	t.Helper()
	if err := subPublishErr(subCtx(t), ts, key, off, body, closeAtEnd); err != nil {
		t.Fatal(err)
	}
}

// subClose closes a stream without adding data.
func subClose(t *testing.T, ts *testServer, key string) {
	t.Helper()
	resp := subSend(t, subCtx(t), http.MethodDelete, ts.url+"/streams/"+key, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("close %s: %d", key, resp.StatusCode)
	}
}

// subPurge deletes a stream for good.
func subPurge(t *testing.T, ts *testServer, key string) {
	t.Helper()
	resp := subSend(t, subCtx(t), http.MethodDelete, ts.url+"/streams/"+key+"?purge=true", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("purge %s: %d", key, resp.StatusCode)
	}
}

// subCreate makes an empty open stream.
func subCreate(t *testing.T, ts *testServer, key string) {
	t.Helper()
	resp := subSend(t, subCtx(t), http.MethodPut, ts.url+"/streams/"+key, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create %s: %d", key, resp.StatusCode)
	}
}

// subWantStatus fails unless resp has the status code.
func subWantStatus(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	if resp.StatusCode != code {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t.Fatalf("%s %s: status %d (%q), want %d", resp.Request.Method, resp.Request.URL, resp.StatusCode, b, code)
	}
}

// subWantHeaders fails unless every named header has the value.
func subWantHeaders(t *testing.T, h http.Header, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := h.Get(kv[i]); got != kv[i+1] {
			t.Errorf("header %s = %q, want %q", kv[i], got, kv[i+1])
		}
	}
}

// subWantFollowHeaders checks the headers every subscribe response carries.
func subWantFollowHeaders(t *testing.T, h http.Header, off, length int64, closed bool) {
	t.Helper()
	subWantHeaders(t, h,
		"Cache-Control", "no-cache",
		"X-Accel-Buffering", "no",
		"Stream-Offset", strconv.FormatInt(off, 10),
		"Stream-Length", strconv.FormatInt(length, 10),
		"Stream-Closed", strconv.FormatBool(closed))
}

// subContent returns n deterministic pseudo-random bytes that look like a log with
// trouble in it: ASCII lines, multi-byte characters, and now and then '\r', NUL, invalid
// UTF-8 and runs of binary.
func subContent(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x51))
	runes := []string{"é", "€", "😀", "ß", "中"}
	b := make([]byte, 0, n+64)
	for len(b) < n {
		switch k := r.IntN(100); {
		case k < 60:
			for range 1 + r.IntN(40) {
				b = append(b, byte(' '+r.IntN(95)))
			}
		case k < 75:
			b = append(b, runes[r.IntN(len(runes))]...)
		case k < 90:
			b = append(b, '\n')
		case k < 93:
			b = append(b, '\r')
		case k < 95:
			b = append(b, 0)
		case k < 97:
			b = append(b, []byte{0xff, 0x80, 0xc3}[r.IntN(3)])
		default:
			for range 1 + r.IntN(64) {
				b = append(b, byte(r.Uint32()))
			}
		}
	}
	return b[:n]
}

// subSplit cuts b into pieces of random sizes, many tiny (splitting characters) and
// many up to 24 KiB (crossing the store's 32 KiB blocks).
func subSplit(b []byte, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0xc4))
	var out [][]byte
	for len(b) > 0 {
		n := 1 + r.IntN(8)
		if r.IntN(2) == 0 {
			n = 1 + r.IntN(24<<10)
		}
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// errSubEnd reports an SSE `event: end` whose id and data were as the contract says.
var errSubEnd = errors.New("event: end")

// subSSE decodes an SSE response, checking that each event's id is the offset just
// after its bytes.
type subSSE struct {
	d      *sse.Decoder
	off    int64 // offset just after the bytes received so far
	base64 int   // base64 events seen
}

func newSubSSE(r io.Reader, from int64) *subSSE {
	return &subSSE{d: sse.NewDecoder(r), off: from}
}

// next returns the bytes of the next event, errSubEnd for a correct end event, or the
// error that ended the response (io.EOF for a clean end).
func (s *subSSE) next() ([]byte, error) {
	e, err := s.d.Next()
	if err != nil {
		return nil, err
	}
	switch e.Type {
	case "end":
		if e.ID != strconv.FormatInt(s.off, 10) || e.Data != "" {
			return nil, fmt.Errorf("end event with id %q and data %q, want id %d and empty data", e.ID, e.Data, s.off)
		}
		return nil, errSubEnd
	case "base64":
		s.base64++
	case "":
	default:
		return nil, fmt.Errorf("event of unexpected type %q", e.Type)
	}
	b, err := e.Bytes()
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("event %q carries no bytes", e.ID)
	}
	s.off += int64(len(b))
	if e.ID != strconv.FormatInt(s.off, 10) {
		return nil, fmt.Errorf("event id %q, want %d (the offset just after its bytes)", e.ID, s.off)
	}
	return b, nil
}

// readN returns the bytes of the next events, at least n of them.
func (s *subSSE) readN(n int) ([]byte, error) {
	var data []byte
	for len(data) < n {
		b, err := s.next()
		if err != nil {
			return data, err
		}
		data = append(data, b...)
	}
	return data, nil
}

// rest reads to the end of the response: the bytes, whether an end event came (as the
// last event), and the error that ended the response (nil for a clean end).
func (s *subSSE) rest() (data []byte, ended bool, err error) {
	for {
		b, err := s.next()
		switch {
		case errors.Is(err, errSubEnd):
			if ended {
				return data, ended, errors.New("a second end event")
			}
			ended = true
		case err == io.EOF:
			return data, ended, nil
		case err != nil:
			return data, ended, err
		case ended:
			return data, ended, errors.New("data after the end event")
		default:
			data = append(data, b...)
		}
	}
}

// subWSURL is the WebSocket URL of a stream.
func subWSURL(ts *testServer, key, query string) string {
	return "ws://" + strings.TrimPrefix(ts.url, "http://") + "/streams/" + key + query
}

// subDial opens a WebSocket follower; it is closed when the test ends.
func subDial(t *testing.T, ctx context.Context, ts *testServer, key, query string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response) {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, subWSURL(ts, key, query), opts)
	if err != nil {
		t.Fatalf("dial %s%s: %v", key, query, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// subReadWS reads binary messages until the connection ends; it returns their concatenation
// and the error that ended it.
func subReadWS(ctx context.Context, c *websocket.Conn) ([]byte, error) {
	return subReadWSN(ctx, c, -1)
}

// subReadWSN reads binary messages until it has at least n bytes (n < 0: until the
// connection ends).
func subReadWSN(ctx context.Context, c *websocket.Conn, n int) ([]byte, error) {
	var data []byte
	for n < 0 || len(data) < n {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return data, err
		}
		if typ != websocket.MessageBinary {
			return data, fmt.Errorf("a %v message, want binary", typ)
		}
		data = append(data, b...)
	}
	return data, nil
}

// subWantClose fails unless err is a close frame with the code and reason.
func subWantClose(t *testing.T, err error, code websocket.StatusCode, reason string) {
	t.Helper()
	var ce websocket.CloseError
	if websocket.CloseStatus(err) != code || !errors.As(err, &ce) || ce.Reason != reason {
		t.Fatalf("connection ended with %v, want close code %d reason %q", err, code, reason)
	}
}

// subEqual fails with a short description of the first difference.
func subEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: got %d bytes, want %d; first difference at byte %d: got %q, want %q",
		what, len(got), len(want), i, got[i:min(len(got), i+16)], want[i:min(len(want), i+16)])
}

// TestSubscribeStartOffset proves the start offset rule: "Last-Event-ID: N, then
// Range: bytes=N-, then query ?offset=N, else 0. A malformed value is 400. N beyond the
// length of a closed stream: 416. N equal to the length of a closed stream: 204.
// Unknown stream: 404."
func TestSubscribeStartOffset(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	content := []byte("0123456789")
	subPublish(t, ts, "s", 0, content, true)

	for _, tc := range []struct {
		name   string
		h      http.Header
		query  string
		status int   // for raw
		from   int64 // for 200 and 206
	}{
		{"none", nil, "", 200, 0},
		{"offset", nil, "?offset=5", 200, 5},
		{"range over offset", subHeader("Range", "bytes=2-"), "?offset=5", 206, 2},
		{"last-event-id over range and offset", subHeader("Last-Event-ID", "7", "Range", "bytes=2-"), "?offset=5", 200, 7},
		{"last-event-id 0", subHeader("Last-Event-ID", "0"), "?offset=5", 200, 0},
		{"offset 0", nil, "?offset=0", 200, 0},
		{"offset at length", nil, "?offset=10", 204, 0},
		{"last-event-id at length", subHeader("Last-Event-ID", "10"), "?offset=2", 204, 0},
		{"range at length", subHeader("Range", "bytes=10-"), "", 204, 0},
		{"offset beyond length", nil, "?offset=11", 416, 0},
		{"last-event-id beyond length", subHeader("Last-Event-ID", "11"), "?offset=2", 416, 0},
		{"range beyond length", subHeader("Range", "bytes=11-"), "", 416, 0},
		{"largest number", nil, "?offset=9223372036854775807", 416, 0},
		{"last-event-id negative", subHeader("Last-Event-ID", "-1"), "?offset=2", 400, 0},
		{"last-event-id plus", subHeader("Last-Event-ID", "+1"), "", 400, 0},
		{"last-event-id fraction", subHeader("Last-Event-ID", "1.5"), "", 400, 0},
		{"last-event-id hex", subHeader("Last-Event-ID", "0x1"), "", 400, 0},
		{"last-event-id inner space", subHeader("Last-Event-ID", "1 2"), "", 400, 0},
		{"last-event-id word", subHeader("Last-Event-ID", "abc"), "", 400, 0},
		{"last-event-id 2^63", subHeader("Last-Event-ID", "9223372036854775808"), "", 400, 0},
		{"last-event-id overflow", subHeader("Last-Event-ID", "99999999999999999999"), "", 400, 0},
		{"malformed range over good offset", subHeader("Range", "bytes=x-"), "?offset=2", 400, 0},
		{"range negative", subHeader("Range", "bytes=-1-"), "", 400, 0},
		{"range plus", subHeader("Range", "bytes=+1-"), "", 400, 0},
		{"range unit", subHeader("Range", "lines=1-"), "", 400, 0},
		{"range 2^63", subHeader("Range", "bytes=9223372036854775808-"), "", 400, 0},
		{"range end before start", subHeader("Range", "bytes=5-2"), "", 400, 0},
		{"offset negative", nil, "?offset=-1", 400, 0},
		{"offset plus", nil, "?offset=%2B1", 400, 0},
		{"offset exponent", nil, "?offset=1e3", 400, 0},
		{"offset hex", nil, "?offset=0x10", 400, 0},
		{"offset space", nil, "?offset=%201", 400, 0},
		{"offset empty", nil, "?offset=", 400, 0},
		{"offset 2^63", nil, "?offset=9223372036854775808", 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := subCtx(t)
			resp := subGet(t, ctx, ts, "s", tc.query, tc.h)
			subWantStatus(t, resp, tc.status)
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			switch tc.status {
			case 200, 206:
				subWantFollowHeaders(t, resp.Header, tc.from, 10, true)
				subEqual(t, "body", body, content[tc.from:])
			case 204:
				subWantHeaders(t, resp.Header, "Stream-Length", "10", "Stream-Closed", "true")
				if len(body) != 0 {
					t.Errorf("204 with body %q", body)
				}
			case 400:
				if len(bytes.TrimSpace(body)) == 0 {
					t.Error("400 without a reason")
				}
			}

			// SSE (the EventSource case) and WebSocket start at the same offset and
			// refuse the same requests; Range means bytes=N- for them.
			sseH := subHeader("Accept", "text/event-stream")
			for k, v := range tc.h {
				sseH[k] = v
			}
			resp = subGet(t, ctx, ts, "s", tc.query, sseH)
			sseStatus := tc.status
			if sseStatus == 206 {
				sseStatus = 200
			}
			subWantStatus(t, resp, sseStatus)
			if sseStatus == 200 {
				data, ended, err := newSubSSE(resp.Body, tc.from).rest()
				if err != nil || !ended {
					t.Fatalf("SSE ended with %v, end event %v", err, ended)
				}
				subEqual(t, "SSE data", data, content[tc.from:])
			}
			resp.Body.Close()

			c, resp, err := websocket.Dial(ctx, subWSURL(ts, "s", tc.query), &websocket.DialOptions{HTTPHeader: tc.h})
			if sseStatus == 200 {
				if err != nil {
					t.Fatalf("WebSocket dial: %v", err)
				}
				defer c.CloseNow()
				data, err := subReadWS(ctx, c)
				subWantClose(t, err, websocket.StatusNormalClosure, "end")
				subEqual(t, "WebSocket data", data, content[tc.from:])
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatalf("WebSocket dial succeeded, want %d", sseStatus)
			}
			if resp == nil || resp.StatusCode != sseStatus {
				t.Fatalf("WebSocket dial: %v (response %v), want status %d", err, resp, sseStatus)
			}
		})
	}

	t.Run("unknown stream", func(t *testing.T) {
		ctx := subCtx(t)
		for _, h := range []http.Header{nil, subSSEAccept} {
			resp := subGet(t, ctx, ts, "nope", "", h)
			subWantStatus(t, resp, 404)
		}
		resp := subGet(t, ctx, ts, "nope", "?format=sse", nil)
		subWantStatus(t, resp, 404)
		_, resp, err := websocket.Dial(ctx, subWSURL(ts, "nope", ""), nil)
		if err == nil || resp == nil || resp.StatusCode != 404 {
			t.Fatalf("WebSocket dial: %v %v, want 404", err, resp)
		}
	})
}

// TestSubscribeHeadersAtOnce proves "Response headers are sent at once, before the first
// byte of data" with Cache-Control, X-Accel-Buffering, Stream-Offset, Stream-Length and
// Stream-Closed: on an open stream without data (and from an offset it has not reached)
// the client has its headers while there is nothing to send, and the response ends when
// the stream is closed.
func TestSubscribeHeadersAtOnce(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	for _, tc := range []struct {
		name        string
		query       string
		h           http.Header
		from        int64
		contentType string // "" for WebSocket
	}{
		{"raw", "", nil, 0, "text/plain; charset=utf-8"},
		{"raw ahead", "?offset=5", nil, 5, "text/plain; charset=utf-8"},
		{"sse", "", subSSEAccept, 0, "text/event-stream"},
		{"sse ahead", "?offset=5&format=sse", nil, 5, "text/event-stream"},
		{"websocket", "", nil, 0, ""},
		{"websocket ahead", "?offset=5", nil, 5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := subCtx(t)
			key := "empty/" + strings.ReplaceAll(tc.name, " ", "-")
			subCreate(t, ts, key)
			// end closes the stream: empty when following from 0, else with bytes
			// beyond the offset. It returns what the follower must get.
			end := func() []byte {
				if tc.from == 0 {
					subClose(t, ts, key)
					return nil
				}
				subPublish(t, ts, key, 0, []byte("0123456789"), true)
				return []byte("0123456789")[tc.from:]
			}
			if tc.contentType == "" {
				c, resp := subDial(t, ctx, ts, key, tc.query, nil) // returns with the headers
				subWantFollowHeaders(t, resp.Header, tc.from, 0, false)
				want := end()
				data, err := subReadWS(ctx, c)
				subWantClose(t, err, websocket.StatusNormalClosure, "end")
				subEqual(t, "WebSocket data", data, want)
				return
			}
			resp := subGet(t, ctx, ts, key, tc.query, tc.h) // returns with the headers
			subWantStatus(t, resp, 200)
			subWantFollowHeaders(t, resp.Header, tc.from, 0, false)
			subWantHeaders(t, resp.Header, "Content-Type", tc.contentType)
			want := end()
			if tc.contentType != "text/event-stream" {
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("raw response ended with %v, want a clean end", err)
				}
				subEqual(t, "body", body, want)
				return
			}
			data, ended, err := newSubSSE(resp.Body, tc.from).rest()
			if err != nil || !ended {
				t.Fatalf("SSE ended with %v, end event %v", err, ended)
			}
			subEqual(t, "SSE data", data, want)
		})
	}
}

// TestSubscribeWaitsForOffset proves "N beyond the length of an open stream: the
// subscriber waits until the stream reaches N", then gets the bytes from N on.
func TestSubscribeWaitsForOffset(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	subPublish(t, ts, "w", 0, []byte("abc"), false)

	raw := subGet(t, ctx, ts, "w", "?offset=6", nil)
	subWantStatus(t, raw, 200)
	subWantFollowHeaders(t, raw.Header, 6, 3, false)
	ev := subGet(t, ctx, ts, "w", "", subHeader("Accept", "text/event-stream", "Last-Event-ID", "6"))
	subWantStatus(t, ev, 200)
	subWantFollowHeaders(t, ev.Header, 6, 3, false)
	ws, _ := subDial(t, ctx, ts, "w", "?offset=6", nil)

	// Grow the stream to just short of N, then past it.
	subPublish(t, ts, "w", 3, []byte("de"), false)
	subPublish(t, ts, "w", 5, []byte("fghij"), true)

	body, err := io.ReadAll(raw.Body)
	if err != nil {
		t.Fatalf("raw: %v", err)
	}
	subEqual(t, "raw", body, []byte("ghij"))
	data, ended, err := newSubSSE(ev.Body, 6).rest()
	if err != nil || !ended {
		t.Fatalf("SSE ended with %v, end event %v", err, ended)
	}
	subEqual(t, "SSE", data, []byte("ghij"))
	data, err = subReadWS(ctx, ws)
	subWantClose(t, err, websocket.StatusNormalClosure, "end")
	subEqual(t, "WebSocket", data, []byte("ghij"))
}

// TestFollowWhilePublishing proves "Every response ends when the stream is closed and
// the subscriber has everything; a subscriber never sees a byte twice or out of order"
// for each transport and for followers attached before publishing, attached mid-way,
// resuming from an offset the stream has not reached yet, and resuming mid-way from an
// offset it has passed. The producer sends a few hundred KiB of pseudo-random content in
// random-size writes over one chunked POST; the store keeps only 64 KiB in memory, so
// followers read across its 32 KiB blocks and from the disk.
func TestFollowWhilePublishing(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{TailSize: 64 << 10})
	ctx := subCtx(t)
	const key = "live/build/1"
	content := subContent(300<<10+4321, 1)
	chunks := subSplit(content, 2)
	part1, n1 := 0, 0 // the first chunks, about a third of the content
	for n1 < len(content)/3 {
		n1 += len(chunks[part1])
		part1++
	}
	subCreate(t, ts, key)

	type result struct {
		name string
		from int64
		data []byte
		err  error // nil when the response ended as a closed stream's must
	}
	results := make(chan result, 16)
	var wg sync.WaitGroup
	// attach opens one follower of each transport from offset from, and reads each
	// to its end in a goroutine.
	attach := func(mode string, from int64, length int64) {
		q := "?offset=" + strconv.FormatInt(from, 10)
		raw := subGet(t, ctx, ts, key, q, nil)
		subWantStatus(t, raw, 200)
		subWantFollowHeaders(t, raw.Header, from, length, false)
		ev := subGet(t, ctx, ts, key, q, subSSEAccept)
		subWantStatus(t, ev, 200)
		subWantFollowHeaders(t, ev.Header, from, length, false)
		ws, resp := subDial(t, ctx, ts, key, q, nil)
		subWantFollowHeaders(t, resp.Header, from, length, false)
		wg.Add(3)
		go func() {
			defer wg.Done()
			data, err := io.ReadAll(raw.Body)
			results <- result{"raw " + mode, from, data, err}
		}()
		go func() {
			defer wg.Done()
			data, ended, err := newSubSSE(ev.Body, from).rest()
			if err == nil && !ended {
				err = errors.New("no end event")
			}
			results <- result{"sse " + mode, from, data, err}
		}()
		go func() {
			defer wg.Done()
			data, err := subReadWS(ctx, ws)
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				var ce websocket.CloseError
				if errors.As(err, &ce); ce.Reason == "end" {
					err = nil
				}
			}
			results <- result{"websocket " + mode, from, data, err}
		}()
	}

	attach("before", 0, 0)
	ahead := int64(len(content)/2 + 7) // not reached yet: waits
	attach("ahead", ahead, 0)

	// The producer: one chunked POST, fed through a pipe, that pauses after part 1
	// until the mid-way followers are attached.
	pr, pw := io.Pipe()
	resume := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for i, c := range chunks {
			if i == part1 {
				select {
				case <-resume:
				case <-ctx.Done():
					pw.CloseWithError(ctx.Err())
					writerDone <- ctx.Err()
					return
				}
			}
			if _, err := pw.Write(c); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- pw.Close()
	}()
	var (
		postResp *http.Response
		postErr  error
		postDone = make(chan struct{})
	)
	go func() {
		defer close(postDone)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+"/streams/"+key, pr)
		if err == nil {
			postResp, err = http.DefaultClient.Do(req)
		}
		if err != nil {
			postErr = err
			pr.CloseWithError(err) // unblocks the writer
			return
		}
		io.Copy(io.Discard, postResp.Body)
		postResp.Body.Close()
	}()
	var resumeOnce sync.Once
	resumeWriter := func() { resumeOnce.Do(func() { close(resume) }) }
	defer func() {
		resumeWriter() // lets the writer finish if the test failed early
		<-writerDone
		<-postDone
	}()

	// Wait for part 1 to be stored, then attach mid-way.
	for {
		resp := subSend(t, ctx, http.MethodHead, ts.url+"/streams/"+key, nil, nil)
		resp.Body.Close()
		if resp.Header.Get("Stream-Length") == strconv.Itoa(n1) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("part 1 (%d bytes) not stored: length %s", n1, resp.Header.Get("Stream-Length"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	attach("mid-way", 0, int64(n1))
	attach("mid-way behind", 20001, int64(n1))
	resumeWriter()

	wg.Wait()
	close(results)
	<-postDone
	if postErr != nil {
		t.Fatalf("publish: %v", postErr)
	}
	subWantStatus(t, postResp, 200)
	subWantHeaders(t, postResp.Header, "Stream-Length", strconv.Itoa(len(content)), "Stream-Closed", "true")
	for r := range results {
		if r.err != nil {
			t.Errorf("%s from %d: ended with %v after %d bytes", r.name, r.from, r.err, len(r.data))
		}
		subEqual(t, fmt.Sprintf("%s from %d", r.name, r.from), r.data, content[r.from:])
	}
}

// TestFollowFalse proves "?follow=false: send what is stored now, then end", with the end
// markers only when the stream is closed.
func TestFollowFalse(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	subPublish(t, ts, "open", 0, []byte("stored so far\n"), false)
	subPublish(t, ts, "closed", 0, []byte("all of it\n"), true)

	for _, key := range []string{"open", "closed"} {
		t.Run(key, func(t *testing.T) {
			want := map[string]string{"open": "stored so far\n", "closed": "all of it\n"}[key]
			closed := key == "closed"

			resp := subGet(t, ctx, ts, key, "?follow=false", nil)
			subWantStatus(t, resp, 200)
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("raw: %v, want a clean end", err)
			}
			subEqual(t, "raw", body, []byte(want))

			resp = subGet(t, ctx, ts, key, "?follow=false&format=sse", nil)
			subWantStatus(t, resp, 200)
			data, ended, err := newSubSSE(resp.Body, 0).rest()
			if err != nil {
				t.Fatalf("SSE: %v", err)
			}
			if ended != closed {
				t.Errorf("SSE end event %v, want %v", ended, closed)
			}
			subEqual(t, "SSE", data, []byte(want))

			c, _ := subDial(t, ctx, ts, key, "?follow=false", nil)
			data, err = subReadWS(ctx, c)
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("WebSocket ended with %v, want a normal close", err)
			}
			var ce websocket.CloseError
			errors.As(err, &ce)
			if (ce.Reason == "end") != closed {
				t.Errorf("WebSocket close reason %q on a stream closed=%v", ce.Reason, closed)
			}
			subEqual(t, "WebSocket", data, []byte(want))
		})
	}
}

// subAwkward holds every byte value and the bytes SSE cannot carry as text.
func subAwkward() []byte {
	b := []byte("line one\r\nNUL:\x00 invalid:\xff\xfe lone:\x80 cut:\xc3 ok:é€😀\n\r\r\n")
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, "\ntrailing text without newline"...)
}

// TestRawExactBytes proves the raw transport: "Content-Type: text/plain; charset=utf-8 and
// X-Content-Type-Options: nosniff. Bytes exactly as published, nothing added in-band", and
// a closed stream is "an ordinary file response with Content-Length, Accept-Ranges: bytes,
// ETag".
func TestRawExactBytes(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	content := subAwkward()
	subPublish(t, ts, "a", 0, content[:100], false)

	// Open: the bytes so far, then the rest as it comes.
	open := subGet(t, ctx, ts, "a", "", nil)
	subWantStatus(t, open, 200)
	subWantHeaders(t, open.Header, "Content-Type", "text/plain; charset=utf-8", "X-Content-Type-Options", "nosniff")
	if open.ContentLength != -1 {
		t.Errorf("open stream: Content-Length %d", open.ContentLength)
	}
	first := make([]byte, 100)
	if _, err := io.ReadFull(open.Body, first); err != nil {
		t.Fatal(err)
	}
	subPublish(t, ts, "a", 100, content[100:], true)
	rest, err := io.ReadAll(open.Body)
	if err != nil {
		t.Fatalf("open stream: %v, want a clean end", err)
	}
	subEqual(t, "open stream", append(first, rest...), content)

	// Closed: an ordinary file (identity: compression is TestCompressedWholeRead's).
	resp := subGet(t, ctx, ts, "a", "", subHeader("Accept-Encoding", "identity"))
	subWantStatus(t, resp, 200)
	subWantFollowHeaders(t, resp.Header, 0, int64(len(content)), true)
	subWantHeaders(t, resp.Header,
		"Content-Type", "text/plain; charset=utf-8",
		"X-Content-Type-Options", "nosniff",
		"Accept-Ranges", "bytes",
		"Content-Length", strconv.Itoa(len(content)))
	if etag := resp.Header.Get("ETag"); !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 3 {
		t.Errorf("ETag %q, want a quoted strong validator", etag)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	subEqual(t, "closed stream", body, content)
}

// TestRawRanges proves "206 with a correct Content-Range for Range requests" (range end
// honoured), suffix ranges, If-None-Match with the ETag answered 304, and "Open stream
// with Range: 200, body from N, Stream-Offset: N".
func TestRawRanges(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	content := subContent(100<<10, 3) // longer than a block and than one read buffer
	subPublish(t, ts, "c", 0, content, true)
	L := len(content)
	etag := subGet(t, ctx, ts, "c", "", nil).Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	for _, tc := range []struct {
		rng        string
		start, end int // bytes [start, end]
	}{
		{"bytes=2-5", 2, 5},
		{"bytes=0-0", 0, 0},
		{"bytes=40000-70000", 40000, 70000},
		{"bytes=100-", 100, L - 1},
		{fmt.Sprintf("bytes=%d-", L-1), L - 1, L - 1},
		{fmt.Sprintf("bytes=7-%d", L+1000), 7, L - 1},
		{"bytes=-4", L - 4, L - 1},
		{"bytes=-40000", L - 40000, L - 1},
		{fmt.Sprintf("bytes=-%d", L+5), 0, L - 1},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			resp := subGet(t, ctx, ts, "c", "", subHeader("Range", tc.rng))
			subWantStatus(t, resp, 206)
			subWantHeaders(t, resp.Header,
				"Content-Range", fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, L),
				"Content-Length", strconv.Itoa(tc.end-tc.start+1),
				"Stream-Offset", strconv.Itoa(tc.start),
				"Stream-Length", strconv.Itoa(L),
				"Stream-Closed", "true",
				"Content-Type", "text/plain; charset=utf-8")
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			subEqual(t, "body", body, content[tc.start:tc.end+1])
		})
	}

	t.Run("If-None-Match", func(t *testing.T) {
		resp := subGet(t, ctx, ts, "c", "", subHeader("If-None-Match", etag))
		subWantStatus(t, resp, 304)
		if b, _ := io.ReadAll(resp.Body); len(b) != 0 {
			t.Errorf("304 with a body of %d bytes", len(b))
		}
		resp = subGet(t, ctx, ts, "c", "", subHeader("If-None-Match", `"something-else"`))
		subWantStatus(t, resp, 200)
		if b, _ := io.ReadAll(resp.Body); !bytes.Equal(b, content) {
			t.Errorf("If-None-Match with another ETag: %d bytes, want the stream", len(b))
		}
	})

	t.Run("open stream", func(t *testing.T) {
		subPublish(t, ts, "o", 0, []byte("0123456789"), false)
		resp := subGet(t, ctx, ts, "o", "", subHeader("Range", "bytes=4-"))
		subWantStatus(t, resp, 200)
		subWantFollowHeaders(t, resp.Header, 4, 10, false)
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			t.Errorf("Content-Range %q on a 200", cr)
		}
		got := make([]byte, 6)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatal(err)
		}
		subPublish(t, ts, "o", 10, []byte("abc"), true)
		rest, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%v, want a clean end", err)
		}
		subEqual(t, "body", append(got, rest...), []byte("456789abc"))
	})
}

// TestRawDropped proves "When the server must drop a follower (shutdown, ..., deletion)
// it aborts the connection, so the client sees an incomplete response": a raw follower
// of a purged stream, or of a draining server, gets an error, never a clean end.
func TestRawDropped(t *testing.T) {
	for _, how := range []string{"purge", "drain"} {
		t.Run(how, func(t *testing.T) {
			ts := newTestServer(t, Config{}, file.Options{})
			ctx := subCtx(t)
			subPublish(t, ts, "d", 0, []byte("some bytes"), false)
			resp := subGet(t, ctx, ts, "d", "", nil)
			subWantStatus(t, resp, 200)
			got := make([]byte, 10)
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				t.Fatal(err)
			}
			if how == "purge" {
				subPurge(t, ts, "d")
			} else {
				ts.Drain()
			}
			rest, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("clean end after %q: a raw follower would think the stream closed", rest)
			}
			if len(rest) != 0 {
				t.Errorf("extra bytes %q", rest)
			}
		})
	}
}

// TestRawCurl proves the busl use with real curl: `curl -sN` gets exactly the bytes of a
// closed stream, follows an open one to a clean exit when it is closed, and fails when the
// stream is purged under it.
func TestRawCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (.ci/run installs it)")
	}
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	content := subAwkward()
	subPublish(t, ts, "closed", 0, content, true)

	out, err := exec.CommandContext(ctx, curl, "-sN", ts.url+"/streams/closed").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	subEqual(t, "curl closed stream", out, content)

	// follow runs curl on an open stream, waits for the first bytes, then calls then and
	// returns everything curl printed and how it exited.
	follow := func(key string, then func()) ([]byte, error) {
		subPublish(t, ts, key, 0, content[:50], false)
		cmd := exec.CommandContext(ctx, curl, "-sN", ts.url+"/streams/"+key)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		first := make([]byte, 50)
		_, err = io.ReadFull(stdout, first)
		if err == nil {
			then()
		}
		rest, _ := io.ReadAll(stdout)
		werr := cmd.Wait()
		if err != nil {
			t.Fatalf("curl: first bytes: %v (exit %v)", err, werr)
		}
		return append(first, rest...), werr
	}

	out, err = follow("open", func() { subPublish(t, ts, "open", 50, content[50:], true) })
	if err != nil {
		t.Errorf("curl following an open stream to its close: %v, want exit 0", err)
	}
	subEqual(t, "curl open stream", out, content)

	out, err = follow("purged", func() { subPurge(t, ts, "purged") })
	if err == nil {
		t.Errorf("curl exited 0 on a purged stream: an aborted response must look incomplete")
	}
	subEqual(t, "curl purged stream", out, content[:50])
}

// TestSSEBytes proves the SSE transport, asked for by Accept or by ?format=sse:
// "Content-Type: text/event-stream. First a retry: <ms> line", events that give the
// exact bytes back (base64 for \r, NUL and invalid UTF-8), "id: <offset just after the
// event's last byte>", and "At the end: event: end with id: <length> and an empty data:,
// then the response ends."
func TestSSEBytes(t *testing.T) {
	ts := newTestServer(t, Config{SSERetry: 1234 * time.Millisecond}, file.Options{})
	ctx := subCtx(t)
	content := append(subAwkward(), subContent(150<<10, 4)...) // several events
	subPublish(t, ts, "e", 0, content, true)

	for _, tc := range []struct {
		name  string
		query string
		h     http.Header
	}{
		{"Accept", "", subSSEAccept},
		{"Accept among others", "", subHeader("Accept", "text/html, text/event-stream;q=0.9")},
		{"format=sse", "?format=sse", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := subGet(t, ctx, ts, "e", tc.query, tc.h)
			subWantStatus(t, resp, 200)
			subWantFollowHeaders(t, resp.Header, 0, int64(len(content)), true)
			subWantHeaders(t, resp.Header, "Content-Type", "text/event-stream")
			wire, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("%v, want a clean end", err)
			}
			if !bytes.HasPrefix(wire, []byte("retry: 1234\n")) {
				t.Errorf("response starts %q, want a retry: line first", wire[:min(len(wire), 20)])
			}
			want := fmt.Sprintf("event: end\nid: %d\ndata: \n\n", len(content))
			if !bytes.HasSuffix(wire, []byte(want)) {
				t.Errorf("response ends %q, want %q", wire[max(0, len(wire)-40):], want)
			}
			r := newSubSSE(bytes.NewReader(wire), 0)
			data, ended, err := r.rest()
			if err != nil || !ended {
				t.Fatalf("SSE ended with %v, end event %v", err, ended)
			}
			if d, ok := r.d.Retry(); !ok || d != 1234*time.Millisecond {
				t.Errorf("retry %v %v, want 1.234s", d, ok)
			}
			if r.base64 == 0 {
				t.Error("no base64 event for bytes SSE cannot carry")
			}
			subEqual(t, "SSE data", data, content)
		})
	}
}

// TestSSEResume proves "Resume: the browser sends Last-Event-ID by itself on reconnect":
// from any event's id, the rest comes exactly, on a closed stream and on an open one.
func TestSSEResume(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	content := subContent(200<<10, 5)
	subPublish(t, ts, "r", 0, content[:150<<10], false)

	// First connection: read some events, note the last id, and go away.
	resp := subGet(t, ctx, ts, "r", "", subSSEAccept)
	subWantStatus(t, resp, 200)
	r := newSubSSE(resp.Body, 0)
	first, err := r.readN(80 << 10)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := r.off
	if id <= 0 || id >= 150<<10 {
		t.Fatalf("last id %d not in the middle", id)
	}

	// Reconnect as a browser does, while the stream is still open, then close it.
	resp = subGet(t, ctx, ts, "r", "", subHeader("Accept", "text/event-stream", "Last-Event-ID", strconv.FormatInt(id, 10)))
	subWantStatus(t, resp, 200)
	subWantFollowHeaders(t, resp.Header, id, 150<<10, false)
	r = newSubSSE(resp.Body, id)
	// All but the last bytes stored (an incomplete character there waits for the rest).
	mid, err := r.readN(150<<10 - int(id) - 3)
	if err != nil {
		t.Fatal(err)
	}
	subPublish(t, ts, "r", 150<<10, content[150<<10:], true)
	rest, ended, err := r.rest()
	if err != nil || !ended {
		t.Fatalf("SSE ended with %v, end event %v", err, ended)
	}
	subEqual(t, "first + resumed", append(append(first, mid...), rest...), content)

	// And on the closed stream, from an id in the middle of it.
	resp = subGet(t, ctx, ts, "r", "", subHeader("Accept", "text/event-stream", "Last-Event-ID", strconv.FormatInt(id, 10)))
	subWantStatus(t, resp, 200)
	data, ended, err := newSubSSE(resp.Body, id).rest()
	if err != nil || !ended {
		t.Fatalf("SSE ended with %v, end event %v", err, ended)
	}
	subEqual(t, "resumed on the closed stream", data, content[id:])
}

// TestSSEKeepalive proves "When idle, a comment line :keepalive at a configurable
// interval", before any data and after some.
func TestSSEKeepalive(t *testing.T) {
	ts := newTestServer(t, Config{SSEKeepalive: 50 * time.Millisecond}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "k")
	resp := subGet(t, ctx, ts, "k", "", subSSEAccept)
	subWantStatus(t, resp, 200)

	var wire []byte
	buf := make([]byte, 4096)
	// readUntil reads the raw body until it holds want count times.
	readUntil := func(want string, count int) {
		t.Helper()
		for bytes.Count(wire, []byte(want)) < count {
			n, err := resp.Body.Read(buf)
			wire = append(wire, buf[:n]...)
			if err != nil && bytes.Count(wire, []byte(want)) < count {
				t.Fatalf("read: %v; got %q, want %d of %q", err, wire, count, want)
			}
		}
	}
	readUntil(":keepalive\n\n", 2) // idle from the start
	subPublish(t, ts, "k", 0, []byte("hello\n"), false)
	readUntil("id: 6\ndata: hello\ndata: \n\n", 1)
	after := len(wire)
	for bytes.Count(wire[after:], []byte(":keepalive\n\n")) < 2 {
		readUntil(":keepalive\n\n", bytes.Count(wire, []byte(":keepalive\n\n"))+1)
	}
	subClose(t, ts, "k")
	readUntil("event: end\nid: 6\ndata: \n\n", 1)
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 0 {
		t.Fatalf("after the end event: %q, %v; want the response to end", b, err)
	}

	data, ended, err := newSubSSE(bytes.NewReader(wire), 0).rest()
	if err != nil || !ended {
		t.Fatalf("SSE ended with %v, end event %v", err, ended)
	}
	subEqual(t, "data", data, []byte("hello\n"))
}

// TestSSESplitCharacter proves "A UTF-8 character split across writes must not force
// base64": a character published in two POSTs arrives in a text event.
func TestSSESplitCharacter(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "u")
	resp := subGet(t, ctx, ts, "u", "", subSSEAccept)
	subWantStatus(t, resp, 200)
	r := newSubSSE(resp.Body, 0)

	subPublish(t, ts, "u", 0, []byte("caf\xc3"), false) // "é" is c3 a9
	first, err := r.readN(1)                            // the follower has seen the first write
	if err != nil {
		t.Fatal(err)
	}
	subPublish(t, ts, "u", 4, []byte("\xa9 \xe2\x82"), false) // "€" is e2 82 ac
	subPublish(t, ts, "u", 8, []byte("\xac\n"), true)
	rest, ended, err := r.rest()
	if err != nil || !ended {
		t.Fatalf("SSE ended with %v, end event %v", err, ended)
	}
	subEqual(t, "data", append(first, rest...), []byte("café €\n"))
	if r.base64 != 0 {
		t.Errorf("%d base64 events for valid UTF-8 split across writes", r.base64)
	}
}

// TestSSEDropped proves Shutdown for SSE followers: "ends SSE ... subscribers so that they
// reconnect (SSE: their retry applies)": a clean end without an end event; and that a
// subPurge, after which a reconnect would get 404, aborts the response instead.
func TestSSEDropped(t *testing.T) {
	for _, how := range []string{"drain", "purge"} {
		t.Run(how, func(t *testing.T) {
			ts := newTestServer(t, Config{}, file.Options{})
			ctx := subCtx(t)
			subPublish(t, ts, "d", 0, []byte("some bytes\n"), false)
			resp := subGet(t, ctx, ts, "d", "", subSSEAccept)
			subWantStatus(t, resp, 200)
			r := newSubSSE(resp.Body, 0)
			if _, err := r.readN(11); err != nil {
				t.Fatal(err)
			}
			if how == "purge" {
				subPurge(t, ts, "d")
			} else {
				ts.Drain()
			}
			data, ended, err := r.rest()
			if ended || len(data) != 0 {
				t.Errorf("end event %v, data %q after %s", ended, data, how)
			}
			if how == "drain" && err != nil {
				t.Errorf("drained SSE response ended with %v, want a clean end so that EventSource reconnects", err)
			}
			if how == "purge" && err == nil {
				t.Error("purged SSE response ended cleanly, want it aborted")
			}
		})
	}
}

// TestWebSocketBytes proves the WebSocket transport: "Binary messages, each a run of
// consecutive bytes" whose concatenation is exactly the stream from ?offset=N, and "At the
// end: a close frame, code 1000, reason end".
func TestWebSocketBytes(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	content := append(subAwkward(), subContent(100<<10, 6)...)
	subPublish(t, ts, "w", 0, content[:60<<10], false)

	for _, from := range []int{0, 1, 33 << 10, 60 << 10, 70 << 10} {
		t.Run(strconv.Itoa(from), func(t *testing.T) {
			c, resp := subDial(t, ctx, ts, "w", "?offset="+strconv.Itoa(from), nil)
			subWantFollowHeaders(t, resp.Header, int64(from), 60<<10, false)
			if from <= 60<<10 {
				got, err := subReadWSN(ctx, c, 60<<10-from)
				if err != nil {
					t.Fatal(err)
				}
				subEqual(t, "open stream", got, content[from:60<<10])
			}
			c.CloseNow()
		})
	}
	subPublish(t, ts, "w", 60<<10, content[60<<10:], true)
	for _, from := range []int{0, 1, 33 << 10, 70 << 10, len(content) - 1} {
		t.Run(fmt.Sprintf("closed %d", from), func(t *testing.T) {
			c, resp := subDial(t, ctx, ts, "w", "?offset="+strconv.Itoa(from), nil)
			subWantFollowHeaders(t, resp.Header, int64(from), int64(len(content)), true)
			data, err := subReadWS(ctx, c)
			subWantClose(t, err, websocket.StatusNormalClosure, "end")
			subEqual(t, "closed stream", data, content[from:])
		})
	}
}

// TestWebSocketPing proves "The server pings at a configurable interval and drops a client
// that does not answer": a client that answers (as the library does) stays up and gets
// later bytes; one that does not answer is dropped without an end.
func TestWebSocketPing(t *testing.T) {
	// The server waits one interval for a pong: long enough for a loaded machine.
	ts := newTestServer(t, Config{WSPingInterval: 200 * time.Millisecond}, file.Options{})

	t.Run("answered", func(t *testing.T) {
		ctx := subCtx(t)
		subCreate(t, ts, "p")
		var pings atomic.Int32
		pinged := make(chan struct{})
		c, _ := subDial(t, ctx, ts, "p", "", &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool {
				if pings.Add(1) == 3 {
					close(pinged)
				}
				return true
			},
		})
		// Pings are only answered while the client reads: publish once three have come.
		published := make(chan error, 1)
		go func() {
			select {
			case <-pinged:
				published <- subPublishErr(ctx, ts, "p", 0, []byte("still here\n"), true)
			case <-ctx.Done():
				published <- ctx.Err()
			}
		}()
		data, err := subReadWS(ctx, c)
		if perr := <-published; perr != nil {
			t.Fatalf("after %d pings: %v", pings.Load(), perr)
		}
		subWantClose(t, err, websocket.StatusNormalClosure, "end")
		subEqual(t, "data", data, []byte("still here\n"))
	})

	t.Run("unanswered", func(t *testing.T) {
		ctx := subCtx(t)
		subCreate(t, ts, "q")
		var pings atomic.Int32
		c, _ := subDial(t, ctx, ts, "q", "", &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool {
				pings.Add(1)
				return false // no pong
			},
		})
		_, err := subReadWS(ctx, c)
		if ctx.Err() != nil {
			t.Fatal("a client that does not answer pings was not dropped")
		}
		if pings.Load() == 0 || websocket.CloseStatus(err) != -1 {
			t.Errorf("after %d pings, connection ended with %v; want it dropped without a close frame", pings.Load(), err)
		}
	})
}

// TestWebSocketChatter proves the server "always reads from the socket, discarding client
// data messages, so pings, pongs and client chatter never pile up": a client that sends
// many megabytes in large and small messages is never blocked, and the stream's bytes
// still arrive exactly.
func TestWebSocketChatter(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	content := subContent(64<<10, 7)
	subCreate(t, ts, "c")
	c, _ := subDial(t, ctx, ts, "c", "", nil)

	chatted := make(chan error, 1)
	go func() {
		big := bytes.Repeat([]byte("chatter "), 1<<17) // 1 MiB
		for i := range 12 {
			typ := websocket.MessageBinary
			if i%2 == 0 {
				typ = websocket.MessageText
			}
			if err := c.Write(ctx, typ, big); err != nil {
				chatted <- err
				return
			}
			for range 50 {
				if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
					chatted <- err
					return
				}
			}
		}
		chatted <- nil
	}()

	subPublish(t, ts, "c", 0, content[:20000], false)
	got, err := subReadWSN(ctx, c, 20000)
	if err != nil {
		t.Fatal(err)
	}
	// 12 MiB is three times what the kernel buffers of both ends hold for a peer that does not
	// read (about 4 MB here): the writes complete only if the server reads them.
	if err := <-chatted; err != nil {
		t.Fatalf("client chatter: %v", err)
	}
	subPublish(t, ts, "c", 20000, content[20000:], true)
	rest, err := subReadWS(ctx, c)
	subWantClose(t, err, websocket.StatusNormalClosure, "end")
	subEqual(t, "data", append(got, rest...), content)
}

// TestWebSocketDropped proves Shutdown for WebSocket followers (a close frame telling the
// client to reconnect: 1012 service restart) and a purge (4404, since a reconnect would
// subGet 404); neither is the end (1000 "end"). A purge wakes the followers and ends them
// too (Fanout.End): each of twenty gets 4404 whichever it sees first.
func TestWebSocketDropped(t *testing.T) {
	for _, tc := range []struct {
		how  string
		code websocket.StatusCode
	}{
		{"drain", websocket.StatusServiceRestart},
		{"purge", 4404},
	} {
		t.Run(tc.how, func(t *testing.T) {
			ts := newTestServer(t, Config{}, file.Options{})
			ctx := subCtx(t)
			subPublish(t, ts, "d", 0, []byte("some bytes"), false)
			var cs []*websocket.Conn
			for range 20 {
				c, _ := subDial(t, ctx, ts, "d", "", nil)
				if _, err := subReadWSN(ctx, c, 10); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			if tc.how == "purge" {
				subPurge(t, ts, "d")
			} else {
				ts.Drain()
			}
			for i, c := range cs {
				data, err := subReadWS(ctx, c)
				if websocket.CloseStatus(err) != tc.code || len(data) != 0 {
					t.Errorf("follower %d after %s: data %q, ended with %v; want close code %d", i, tc.how, data, err, tc.code)
				}
			}
		})
	}
}

// TestFollowerLimits proves that followers beyond Config.MaxStreamFollowers (per stream)
// or Config.MaxFollowers (in all) get 503 with Retry-After, and that the place of one
// that leaves is given to a new one.
func TestFollowerLimits(t *testing.T) {
	// The servers have a small ProbeInterval, so that they notice soon that a follower
	// left.
	// follow opens a follower, or returns the refusal.
	follow := func(t *testing.T, ctx context.Context, ts *testServer, key string, h http.Header) *http.Response {
		t.Helper()
		resp := subGet(t, ctx, ts, key, "", h)
		if resp.StatusCode == 503 {
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			resp.Body.Close()
		}
		return resp
	}
	// waitAccepted retries until a follower is accepted (once the server has noticed
	// that one left).
	waitAccepted := func(t *testing.T, ctx context.Context, ts *testServer, key string) *http.Response {
		t.Helper()
		for {
			resp := follow(t, ctx, ts, key, nil)
			if resp.StatusCode == 200 {
				return resp
			}
			if ctx.Err() != nil {
				t.Fatal("no follower accepted after one left")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	t.Run("per stream", func(t *testing.T) {
		ts := newTestServer(t, Config{MaxStreamFollowers: 2, ProbeInterval: 20 * time.Millisecond}, file.Options{})
		ctx := subCtx(t)
		for _, k := range []string{"a", "b"} {
			subPublish(t, ts, k, 0, []byte("x"), false)
		}
		f1 := follow(t, ctx, ts, "a", nil)
		f2 := follow(t, ctx, ts, "a", subSSEAccept)
		subWantStatus(t, f1, 200)
		subWantStatus(t, f2, 200)
		subWantStatus(t, follow(t, ctx, ts, "a", nil), 503)
		subWantStatus(t, follow(t, ctx, ts, "a", subSSEAccept), 503)
		if _, resp, err := websocket.Dial(ctx, subWSURL(ts, "a", ""), nil); err == nil || resp == nil || resp.StatusCode != 503 {
			t.Errorf("third WebSocket follower: %v, want 503", err)
		}
		subWantStatus(t, follow(t, ctx, ts, "b", nil), 200) // another stream has its own limit

		f1.Body.Close()
		subWantStatus(t, waitAccepted(t, ctx, ts, "a"), 200)
		subWantStatus(t, follow(t, ctx, ts, "a", nil), 503)
	})

	t.Run("server", func(t *testing.T) {
		ts := newTestServer(t, Config{MaxFollowers: 2, ProbeInterval: 20 * time.Millisecond}, file.Options{})
		ctx := subCtx(t)
		for _, k := range []string{"a", "b", "c"} {
			subPublish(t, ts, k, 0, []byte("x"), false)
		}
		f1 := follow(t, ctx, ts, "a", nil)
		subWantStatus(t, f1, 200)
		c, _ := subDial(t, ctx, ts, "b", "", nil)
		defer c.CloseNow()
		subWantStatus(t, follow(t, ctx, ts, "c", nil), 503)
		subWantStatus(t, follow(t, ctx, ts, "c", subSSEAccept), 503)

		f1.Body.Close()
		subWantStatus(t, waitAccepted(t, ctx, ts, "c"), 200)
		subWantStatus(t, follow(t, ctx, ts, "a", nil), 503)
	})

	t.Run("concurrent", func(t *testing.T) {
		// Of followers arriving all at once, exactly as many as the limits allow are
		// accepted.
		const limit, tries = 3, 16
		ts := newTestServer(t, Config{MaxFollowers: limit}, file.Options{})
		ctx := subCtx(t)
		for i := range tries {
			subPublish(t, ts, "s"+strconv.Itoa(i), 0, []byte("x"), false)
		}
		resps := make(chan *http.Response, tries)
		var wg sync.WaitGroup
		for i := range tries {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+"/streams/s"+strconv.Itoa(i), nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resps <- resp
			})
		}
		wg.Wait()
		close(resps)
		accepted := 0
		for resp := range resps {
			if resp.StatusCode == 200 {
				accepted++
			} else if resp.StatusCode != 503 {
				t.Errorf("status %d", resp.StatusCode)
			}
			resp.Body.Close()
		}
		if accepted != limit {
			t.Errorf("%d of %d concurrent followers accepted, want %d", accepted, tries, limit)
		}
	})
}

var subFollowersRE = regexp.MustCompile(`(?m)^sluice_followers\{transport="sse"\} (\S+)$`)

// TestFollowerMetrics proves that sluice_followers{transport="sse"} counts an SSE follower
// while it is connected and drops back once it has left.
func TestFollowerMetrics(t *testing.T) {
	// A small probe interval: the server notices soon that a follower left.
	ts := newTestServer(t, Config{ProbeInterval: 20 * time.Millisecond}, file.Options{})
	ctx := subCtx(t)
	gauge := func() string {
		t.Helper()
		resp := subSend(t, ctx, http.MethodGet, ts.url+"/metrics", nil, nil)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := subFollowersRE.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no sluice_followers{transport=\"sse\"} in /metrics")
		}
		return string(m[1])
	}
	waitGauge := func(want string) {
		t.Helper()
		for got := gauge(); got != want; got = gauge() {
			if ctx.Err() != nil {
				t.Fatalf("sluice_followers{transport=\"sse\"} = %s, want %s", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	subCreate(t, ts, "m")
	waitGauge("0")
	resp := subGet(t, ctx, ts, "m", "", subSSEAccept)
	subWantStatus(t, resp, 200)
	waitGauge("1")
	resp2 := subGet(t, ctx, ts, "m", "?format=sse", nil)
	subWantStatus(t, resp2, 200)
	waitGauge("2")
	resp.Body.Close()
	waitGauge("1")
	subClose(t, ts, "m") // the other ends with the stream
	if _, ended, err := newSubSSE(resp2.Body, 0).rest(); err != nil || !ended {
		t.Fatalf("SSE ended with %v, end event %v", err, ended)
	}
	waitGauge("0")
}

// TestFollowerLoggedAtEnd proves that a follower's request is logged when it ends, not
// when its connection is handed off: the line of each transport tells the bytes it was
// sent (framing included) and why it ended.
func TestFollowerLoggedAtEnd(t *testing.T) {
	rl := newRequestLog()
	ts := newTestServer(t, Config{Logger: slog.New(rl)}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "logged")
	mark := rl.mark()
	raw := subGet(t, ctx, ts, "logged", "", nil)
	sse := subGet(t, ctx, ts, "logged", "", subHeader("Accept", "text/event-stream"))
	ws, _ := subDial(t, ctx, ts, "logged", "", nil)
	content := subContent(50<<10, 3)
	subPublish(t, ts, "logged", 0, content, true)
	rawBody, _ := io.ReadAll(raw.Body)
	io.ReadAll(sse.Body)
	subReadWS(ctx, ws)
	subEqual(t, "raw follower", rawBody, content)
	lines := rl.waitN(t, mark, http.MethodGet, "/streams/logged", 3)
	byStatus := map[int][]loggedRequest{}
	for _, l := range lines {
		byStatus[l.status] = append(byStatus[l.status], l)
		if l.outcome != "closed" {
			t.Errorf("follower logged with outcome %q, want closed: %+v", l.outcome, l)
		}
		if l.bytes < int64(len(content)) {
			t.Errorf("follower logged %d bytes, want at least the stream's %d: %+v", l.bytes, len(content), l)
		}
	}
	if len(byStatus[http.StatusOK]) != 2 || len(byStatus[http.StatusSwitchingProtocols]) != 1 {
		t.Errorf("logged %+v, want two 200s (raw, SSE) and a 101 (WebSocket)", lines)
	}
}

// TestEndFollowers proves that EndFollowers ends the followers of one stream, on every
// transport, and no other: raw is aborted (the client resumes from what it counted),
// WebSocket closed with 1008, while a follower of another stream still gets its bytes.
func TestEndFollowers(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "ended")
	subCreate(t, ts, "kept")
	raw := subGet(t, ctx, ts, "ended", "", nil)
	ws, _ := subDial(t, ctx, ts, "ended", "", nil)
	kept := subGet(t, ctx, ts, "kept", "", nil)
	resEventually(t, 10*time.Second, "three followers", func() (bool, string) {
		n := ts.fan.Followers()
		return n == 3, fmt.Sprintf("%d followers", n)
	})
	ts.EndFollowers("ended")
	if _, err := io.ReadAll(raw.Body); err == nil {
		t.Error("an ended raw follower's response ended cleanly, as if the stream were closed")
	}
	_, err := subReadWS(ctx, ws)
	subWantClose(t, err, websocket.StatusPolicyViolation, "ended")
	subPublish(t, ts, "kept", 0, []byte("still here\n"), true)
	if b, err := io.ReadAll(kept.Body); err != nil || string(b) != "still here\n" {
		t.Fatalf("the other stream's follower read %q, %v", b, err)
	}
}

// TestWebSocketAnswersWhileNotParked: a WebSocket follower that waits on a goroutine of
// its own, not parked (here one with a range end, as over TLS), still answers its
// client's pings and close while it waits for the stream to grow.
func TestWebSocketAnswersWhileNotParked(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "np")
	c, _ := subDial(t, ctx, ts, "np", "", &websocket.DialOptions{HTTPHeader: http.Header{"Range": {"bytes=0-999"}}})
	read := make(chan error, 1)
	go func() { _, err := subReadWS(ctx, c); read <- err }() // coder/websocket reads pongs in Read
	for i := range 3 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d of a follower waiting unparked: %v", i, err)
		}
	}
	if err := c.Close(websocket.StatusGoingAway, "bye"); err != nil {
		t.Fatalf("close: the server did not answer the close handshake: %v", err)
	}
	<-read
}
