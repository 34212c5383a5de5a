package http

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// pipePublish is a publish whose body the test writes as it goes, through an io.Pipe, so
// it can act while the body is still arriving.
type pipePublish struct {
	pw   *io.PipeWriter
	done chan publishResult
}

type publishResult struct {
	resp *http.Response
	body string
	err  error
}

// startPublish starts POST url with a body written by p.write (net/http sends it chunked).
// The test's cleanup ends the body and waits for the request to end.
func startPublish(t *testing.T, url string, header ...string) *pipePublish {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	p := &pipePublish{pw: pw, done: make(chan publishResult, 1)}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			p.done <- publishResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		p.done <- publishResult{resp: resp, body: string(b), err: err}
	}()
	t.Cleanup(func() {
		pw.CloseWithError(errors.New("test over"))
		<-finished
	})
	return p
}

// write sends s as the next bytes of the body; it returns once the client has taken them.
func (p *pipePublish) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.pw, s); err != nil {
		t.Fatalf("writing the publish body: %v", err)
	}
}

// result waits for the publish's response.
func (p *pipePublish) result(t *testing.T) publishResult {
	t.Helper()
	select {
	case r := <-p.done:
		if r.err != nil {
			t.Fatalf("publish: %v", r.err)
		}
		return r
	case <-time.After(testTimeout):
		t.Fatalf("no response to the publish within %v", testTimeout)
		return publishResult{}
	}
}

// dial opens a raw TCP connection to the server, closed at the test's end.
func dial(t *testing.T, ts *testServer) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c.(*net.TCPConn)
}

// rawPost is the head of a POST to /streams/key with extra header lines, and no body.
func rawPost(key string, header ...string) string {
	var sb strings.Builder
	sb.WriteString("POST /streams/" + key + " HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n")
	for _, h := range header {
		sb.WriteString(h + "\r\n")
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// chunk frames s as one chunk of a chunked body.
func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

// TestPublishFraming proves "The body is written into the stream as it arrives
// (Content-Length or chunked; either works)" and "A missing stream is created".
func TestPublishFraming(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	big := make([]byte, 1<<20+12345)
	rand.NewChaCha8([32]byte{1}).Read(big) // bytes of every value, \r and NUL included

	// Content-Length, from net/http.
	resp, body := call(t, http.MethodPost, ts.streamURL("cl"), bytes.NewReader(big))
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, int64(len(big)), true)
	wantStream(t, ts, "cl", string(big), true)

	// Chunked, from net/http (a reader of unknown length).
	resp, body = call(t, http.MethodPost, ts.streamURL("chunked"), io.MultiReader(bytes.NewReader(big)))
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, int64(len(big)), true)
	wantStream(t, ts, "chunked", string(big), true)

	// Chunked by hand: chunk extensions, a one-byte chunk, a trailer.
	resp, body = rawHTTP(t, ts, rawPost("raw/chunked", "Transfer-Encoding: chunked")+
		"5\r\nhello\r\n1;ext=1\r\n \r\n"+chunk("world\n")+"0\r\nX-Trailer: y\r\n\r\n")
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, 12, true)
	wantStream(t, ts, "raw/chunked", "hello world\n", true)

	// Content-Length by hand, and an empty body, which creates and closes an empty stream.
	resp, body = rawHTTP(t, ts, rawPost("raw/cl", "Content-Length: 6")+"hello\n")
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, 6, true)
	wantStream(t, ts, "raw/cl", "hello\n", true)
	resp, body = rawHTTP(t, ts, rawPost("raw/empty", "Content-Length: 0"))
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, 0, true)
	wantStream(t, ts, "raw/empty", "", true)

	// curl, as a busl producer script would use it: a file (Content-Length) and stdin
	// (chunked, with Expect: 100-continue).
	if _, err := exec.LookPath("curl"); err != nil {
		t.Logf("curl is not installed: %v", err)
		return
	}
	for _, c := range []struct{ key, arg string }{{"curl/file", "--data-binary"}, {"curl/stdin", "-T"}} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		cmd := exec.CommandContext(ctx, "curl", "-sS", "-X", "POST", "-H", "Expect: 100-continue",
			c.arg, map[string]string{"--data-binary": "@-", "-T": "-"}[c.arg],
			"-o", "/dev/null", "-D", "-", ts.streamURL(c.key))
		cmd.Stdin = bytes.NewReader(big)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.HasPrefix(strings.TrimPrefix(string(out), "HTTP/1.1 100 Continue\r\n\r\n"), "HTTP/1.1 200") {
			t.Fatalf("curl %s: %v\n%s", c.arg, err, out)
		}
		if !strings.Contains(string(out), "Stream-Length: "+strconv.Itoa(len(big))+"\r\n") {
			t.Errorf("curl %s: response lacks Stream-Length: %d\n%s", c.arg, len(big), out)
		}
		wantStream(t, ts, c.key, string(big), true)
	}
}

// TestPublishLiveDelivery proves "subscribers see each byte as soon as it is stored, long
// before the body ends": a follower reads each line while the publish is still going on.
func TestPublishLiveDelivery(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPut, ts.streamURL("live"), nil)
	wantStatus(t, resp, body, http.StatusCreated)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.streamURL("live"), nil)
	if err != nil {
		t.Fatal(err)
	}
	follower, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Body.Close()
	wantStatus(t, follower, "", http.StatusOK)

	p := startPublish(t, ts.streamURL("live"))
	lines := []string{"first line\n", "second line\n", "third\n"}
	for _, line := range lines {
		p.write(t, line)
		got := make([]byte, len(line))
		if _, err := io.ReadFull(follower.Body, got); err != nil {
			t.Fatalf("follower, waiting for %q: %v", line, err)
		}
		if string(got) != line {
			t.Fatalf("follower read %q, want %q", got, line)
		}
	}
	select {
	case r := <-p.done:
		t.Fatalf("the publish ended before its body did: %+v", r)
	default:
	}
	p.pw.Close()
	r := p.result(t)
	wantStatus(t, r.resp, r.body, http.StatusOK)
	total := int64(len(strings.Join(lines, "")))
	wantInfo(t, r.resp, total, true)
	rest, err := io.ReadAll(follower.Body)
	if err != nil || len(rest) != 0 {
		t.Fatalf("follower after the close: %q, %v; want a clean end", rest, err)
	}
}

// TestPublishOverlap proves "Overlap is skipped. If N < length, the first length - N bytes
// of the body are already stored; the server discards them and appends the rest."
func TestPublishOverlap(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	type post struct {
		offset string // Stream-Offset, "" for none
		body   []string
		length int64 // Stream-Length of the response
	}
	cases := []struct {
		name  string
		posts []post
		want  string
	}{
		{"resend from 0", []post{{"", []string{"hello "}, 6}, {"", []string{"hello world"}, 11}, {"0", []string{"hello world"}, 11}}, "hello world"},
		{"partial overlap", []post{{"", []string{"hello "}, 6}, {"3", []string{"lo world"}, 11}}, "hello world"},
		{"no overlap", []post{{"", []string{"hello "}, 6}, {"6", []string{"world"}, 11}}, "hello world"},
		{"all overlap", []post{{"", []string{"hello "}, 6}, {"1", []string{"ell"}, 6}, {"6", nil, 6}}, "hello "},
		{"overlap across chunks", []post{{"", []string{"hello "}, 6}, {"0", []string{"he", "llo w", "o", "rld"}, 11}}, "hello world"},
		{"chunks after overlap", []post{{"", []string{"hello "}, 6}, {"2", []string{"llo ", "wor", "ld"}, 11}}, "hello world"},
	}
	for i, c := range cases {
		key := "overlap/" + strconv.Itoa(i)
		for _, p := range c.posts {
			hdr := []string{"Stream-Close: false", "Transfer-Encoding: chunked"}
			if p.offset != "" {
				hdr = append(hdr, "Stream-Offset: "+p.offset)
			}
			req := rawPost(key, hdr...)
			for _, b := range p.body {
				req += chunk(b)
			}
			resp, body := rawHTTP(t, ts, req+"0\r\n\r\n")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: offset %q %q: status %d %q", c.name, p.offset, p.body, resp.StatusCode, body)
			}
			wantInfo(t, resp, p.length, false)
		}
		wantStream(t, ts, key, c.want, false)
	}
}

// TestPublishMismatch proves "The server may check that the overlapping bytes match what
// it stored; on a mismatch it answers 409 and appends nothing."
func TestPublishMismatch(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("m"), strings.NewReader("hello "), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	for _, c := range []struct {
		offset string
		body   []string
	}{
		{"0", []string{"HELLO world"}},
		{"3", []string{"LO world"}},
		{"5", []string{"_world"}},
		{"0", []string{"hel", "p! world"}}, // the first chunk matches, the second does not
		{"0", []string{"hello", "!"}},
	} {
		req := rawPost("m", "Stream-Offset: "+c.offset, "Transfer-Encoding: chunked")
		for _, b := range c.body {
			req += chunk(b)
		}
		resp, body := rawHTTP(t, ts, req+"0\r\n\r\n")
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("offset %s %q: status %d %q, want 409", c.offset, c.body, resp.StatusCode, body)
		}
		wantInfo(t, resp, 6, false)
		wantStream(t, ts, "m", "hello ", false)
	}
}

// TestPublishGap proves "Gap is refused. If N > length: 409 Conflict, nothing appended",
// with a body and with an empty one.
func TestPublishGap(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("g"), strings.NewReader("abc"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	for _, c := range []struct{ offset, body string }{{"4", "d"}, {"4", ""}, {"100", "xyz"}, {"9223372036854775807", ""}} {
		for _, closeAtEnd := range []string{"true", "false"} {
			resp, body := call(t, http.MethodPost, ts.streamURL("g"), strings.NewReader(c.body),
				"Stream-Offset", c.offset, "Stream-Close", closeAtEnd)
			wantStatus(t, resp, body, http.StatusConflict)
			wantInfo(t, resp, 3, false)
			wantStream(t, ts, "g", "abc", false)
		}
	}
	resp, body = call(t, http.MethodPost, ts.streamURL("g"), strings.NewReader("d"), "Stream-Offset", "3")
	wantStatus(t, resp, body, http.StatusOK) // at the length: no gap
	wantStream(t, ts, "g", "abcd", true)

	// A gap to an unknown key is refused without creating the stream.
	resp, body = call(t, http.MethodPost, ts.streamURL("never"), strings.NewReader("x"), "Stream-Offset", "5")
	wantStatus(t, resp, body, http.StatusConflict)
	wantInfo(t, resp, 0, false)
	if _, err := ts.store.Open(context.Background(), "never"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("a refused gap left a stream behind: Open = %v", err)
	}
	if n := ts.store.OpenStreams(); n != 0 { // "g" is closed
		t.Fatalf("%d open streams after a refused gap to a new key, want 0", n)
	}
}

// TestPublishToJSONStream proves that raw bytes published to a stream of JSON records
// (made through the Durable Streams side) are refused with 409 and Stream-Conflict:
// content-type, so that its message boundaries stay intact.
func TestPublishToJSONStream(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	_, _, err := ts.store.Create(context.Background(), "j", sluice.CreateOptions{
		Config: sluice.Config{ContentType: "application/json"}, Data: []byte("{\"a\":1}\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := call(t, http.MethodPost, ts.streamURL("j"), strings.NewReader("not json"), "Stream-Offset", "8")
	wantStatus(t, resp, body, http.StatusConflict)
	if got := resp.Header.Get("Stream-Conflict"); got != "content-type" {
		t.Errorf("Stream-Conflict %q, want content-type", got)
	}
	wantStream(t, ts, "j", "{\"a\":1}\n", false)
}

// TestPublishStreamOffsetNumbers proves that a Stream-Offset that is not an unsigned
// decimal integer below 2^63 is 400 and appends nothing.
func TestPublishStreamOffsetNumbers(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("n"), strings.NewReader("abc"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	for _, v := range []string{"", "-3", "+3", "3.0", "3e0", "0x3", "3 3", "三", "9223372036854775808",
		"18446744073709551619", "99999999999999999999"} {
		resp, body := call(t, http.MethodPost, ts.streamURL("n"), strings.NewReader("d"), "Stream-Offset", v)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Stream-Offset %q: status %d %q, want 400", v, resp.StatusCode, body)
		}
		wantInfo(t, resp, 3, false)
		wantStream(t, ts, "n", "abc", false)
	}
	// Over raw TCP, so that the empty header is on the wire as written.
	resp, body = rawHTTP(t, ts, rawPost("n", "Stream-Offset:", "Content-Length: 1")+"d")
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantStream(t, ts, "n", "abc", false)
	resp, body = call(t, http.MethodPost, ts.streamURL("n"), strings.NewReader("d"), "Stream-Offset", "0000000000000000003")
	wantStatus(t, resp, body, http.StatusOK)
	wantStream(t, ts, "n", "abcd", true)
}

// TestPublishStreamClose proves "Clean end closes (unless Stream-Close: false)" and
// "Stream-Close: true or false; other values: 400".
func TestPublishStreamClose(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	for i, c := range []struct {
		header []string
		closed bool
	}{
		{nil, true},
		{[]string{"Stream-Close", "true"}, true},
		{[]string{"Stream-Close", "false"}, false},
	} {
		key := "sc/" + strconv.Itoa(i)
		resp, body := call(t, http.MethodPost, ts.streamURL(key), strings.NewReader("x"), c.header...)
		wantStatus(t, resp, body, http.StatusOK)
		wantInfo(t, resp, 1, c.closed)
		wantStream(t, ts, key, "x", c.closed)
	}
	// An open stream is closed by the next clean end.
	resp, body := call(t, http.MethodPost, ts.streamURL("sc/2"), strings.NewReader("y"), "Stream-Offset", "1")
	wantStatus(t, resp, body, http.StatusOK)
	wantStream(t, ts, "sc/2", "xy", true)

	resp, body = call(t, http.MethodPost, ts.streamURL("sc/open"), strings.NewReader("x"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	for _, v := range []string{"", "TRUE", "False", "1", "0", "yes", "no", "t", "true,false", "falsey"} {
		// A stream that does not exist is not created...
		resp, body := call(t, http.MethodPost, ts.streamURL("sc/new"), strings.NewReader("x"), "Stream-Close", v)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Stream-Close %q: status %d %q, want 400", v, resp.StatusCode, body)
		}
		resp, body = call(t, http.MethodHead, ts.streamURL("sc/new"), nil)
		wantStatus(t, resp, body, http.StatusNotFound)
		// ...and one that does is left as it was.
		resp, body = call(t, http.MethodPost, ts.streamURL("sc/open"), strings.NewReader("xy"), "Stream-Close", v)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Stream-Close %q: status %d %q, want 400", v, resp.StatusCode, body)
		}
		wantInfo(t, resp, 1, false)
		wantStream(t, ts, "sc/open", "x", false)
	}
}

// TestPublishBrokenBody proves "Broken body (connection lost, truncated chunked encoding,
// body shorter than its Content-Length): every byte received so far stays stored, the
// stream stays open, response 400 if it can be sent". Each body is sent over raw TCP and
// then the connection is closed, or only its sending half, so the 400 can be read.
func TestPublishBrokenBody(t *testing.T) {
	rl := newRequestLog()
	ts := newTestServer(t, Config{Logger: slog.New(rl)}, file.Options{})
	cases := []struct {
		name     string
		request  string
		received string
	}{
		{"short Content-Length", rawPost("k", "Content-Length: 100") + "0123456789", "0123456789"},
		{"chunked without last chunk", rawPost("k", "Transfer-Encoding: chunked") + chunk("01234") + chunk("56789"), "0123456789"},
		{"chunk cut short", rawPost("k", "Transfer-Encoding: chunked") + chunk("01234") + "14\r\n56789", "0123456789"},
		{"bad chunk size", rawPost("k", "Transfer-Encoding: chunked") + chunk("0123456789") + "zz\r\nabc\r\n0\r\n\r\n", "0123456789"},
		{"resend then cut", rawPost("k", "Stream-Offset: 0", "Content-Length: 100") + "0123456789", "0123456789"},
	}
	for i, c := range cases {
		for _, half := range []bool{false, true} {
			key := "broken/" + strconv.Itoa(i) + "/" + strconv.FormatBool(half)
			if c.name == "resend then cut" {
				resp, body := call(t, http.MethodPost, ts.streamURL(key), strings.NewReader("0123"), "Stream-Close", "false")
				wantStatus(t, resp, body, http.StatusOK)
			}
			mark := rl.mark()
			conn := dial(t, ts)
			if _, err := io.WriteString(conn, strings.Replace(c.request, "/streams/k ", "/streams/"+key+" ", 1)); err != nil {
				t.Fatal(err)
			}
			if half {
				conn.CloseWrite()
				resp, body := readRawResponse(t, conn, http.MethodPost)
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%s: status %d %q, want 400", c.name, resp.StatusCode, body)
				}
				wantInfo(t, resp, int64(len(c.received)), false)
			} else {
				conn.Close()
			}
			if status := rl.wait(t, mark, http.MethodPost, "/streams/"+key); status != http.StatusBadRequest {
				t.Errorf("%s: the server answered %d, want 400", c.name, status)
			}
			wantStream(t, ts, key, c.received, false)
		}
	}
}

// TestPublishReadTimeout proves that a body that stops arriving for the read timeout is
// a broken body: the bytes received stay stored, the stream stays open, response 400.
func TestPublishReadTimeout(t *testing.T) {
	ts := newTestServer(t, Config{ReadTimeout: 200 * time.Millisecond}, file.Options{})
	for _, c := range []struct{ name, request string }{
		{"Content-Length", rawPost("t/cl", "Content-Length: 100") + "0123456789"},
		{"chunked", rawPost("t/chunked", "Transfer-Encoding: chunked") + chunk("0123456789")},
	} {
		conn := dial(t, ts)
		if _, err := io.WriteString(conn, c.request); err != nil {
			t.Fatal(err)
		}
		// The connection stays open and silent: the server must give up by itself.
		resp, body := readRawResponse(t, conn, http.MethodPost)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d %q, want 400", c.name, resp.StatusCode, body)
		}
		wantInfo(t, resp, 10, false)
		key := strings.TrimPrefix(strings.Fields(c.request)[1], "/streams/")
		wantStream(t, ts, key, "0123456789", false)
	}
}

// TestPublishClosedStream proves "Closed stream: a body that lies entirely within the
// stored bytes gets 200 (a retry of a finished upload is harmless); one that would add
// bytes gets 409", and that a closed stream is never reopened.
func TestPublishClosedStream(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("c"), strings.NewReader("hello world"))
	wantStatus(t, resp, body, http.StatusOK)
	wantInfo(t, resp, 11, true)
	for _, c := range []struct {
		offset, body, close string
		code                int
	}{
		{"", "hello world", "", 200},
		{"0", "hello world", "true", 200},
		{"", "hello", "", 200},
		{"6", "world", "", 200},
		{"11", "", "", 200},
		{"3", "lo", "false", 200}, // Stream-Close: false does not reopen it
		{"11", "!", "", 409},
		{"", "hello world!", "", 409},
		{"6", "world and more", "false", 409},
		{"12", "", "", 409},
		{"", "HELLO", "", 409},
	} {
		hdr := []string{}
		if c.offset != "" {
			hdr = append(hdr, "Stream-Offset", c.offset)
		}
		if c.close != "" {
			hdr = append(hdr, "Stream-Close", c.close)
		}
		resp, body := call(t, http.MethodPost, ts.streamURL("c"), strings.NewReader(c.body), hdr...)
		if resp.StatusCode != c.code {
			t.Errorf("offset %q %q: status %d %q, want %d", c.offset, c.body, resp.StatusCode, body, c.code)
		}
		wantInfo(t, resp, 11, true)
		wantStream(t, ts, "c", "hello world", true)
	}
}

// TestPublishConflictHeader proves that every 409 names its cause in Stream-Conflict
// (gap, mismatch or closed), so that clients need not read the reason, and that no other
// answer carries the header.
func TestPublishConflictHeader(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPost, ts.streamURL("open"), strings.NewReader("hello "), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = call(t, http.MethodPost, ts.streamURL("closed"), strings.NewReader("hello world"))
	wantStatus(t, resp, body, http.StatusOK)
	for _, c := range []struct {
		key, offset, body string
		code              int
		want              string // Stream-Conflict; "" for none
	}{
		{"open", "7", "x", 409, "gap"},
		{"open", "100", "", 409, "gap"},
		{"open", "0", "HELLO world", 409, "mismatch"},
		{"open", "5", "_", 409, "mismatch"},
		{"closed", "11", "!", 409, "closed"},
		{"closed", "6", "world and more", 409, "closed"},
		{"closed", "12", "", 409, "gap"},          // the offset is checked first
		{"closed", "0", "HELLO", 409, "mismatch"}, // then the resent bytes
		{"open", "6", "world", 200, ""},
		{"closed", "0", "hello", 200, ""},
		{"open", "x", "", 400, ""},
	} {
		resp, body := call(t, http.MethodPost, ts.streamURL(c.key), strings.NewReader(c.body),
			"Stream-Offset", c.offset, "Stream-Close", "false")
		if resp.StatusCode != c.code || resp.Header.Get("Stream-Conflict") != c.want || len(resp.Header.Values("Stream-Conflict")) > 1 {
			t.Errorf("%s at %s %q: %d, Stream-Conflict %q (%q); want %d, %q",
				c.key, c.offset, c.body, resp.StatusCode, resp.Header.Values("Stream-Conflict"), body, c.code, c.want)
		}
	}
	resp, body = call(t, http.MethodGet, ts.streamURL("nope"), nil)
	wantStatus(t, resp, body, http.StatusNotFound)
	if v := resp.Header.Values("Stream-Conflict"); v != nil {
		t.Errorf("404: Stream-Conflict %q, want none", v)
	}
}

// TestPublishConcurrentSameContent proves "Concurrent publishers to one stream are
// serialised ... Two connections of the same producer carrying the same bytes yield each
// byte once." The two bodies are cut at different places and leapfrog each other, so that
// most appends are part overlap, part new bytes.
func TestPublishConcurrentSameContent(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	content := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{2}).Read(content)
	resp, body := call(t, http.MethodPut, ts.streamURL("dup"), nil)
	wantStatus(t, resp, body, http.StatusCreated)

	pubs := []*pipePublish{startPublish(t, ts.streamURL("dup")), startPublish(t, ts.streamURL("dup"))}
	chunkSize := []int{1000, 1777}
	sent := []int{0, 0}
	for sent[0] < len(content) || sent[1] < len(content) {
		i := 0 // the one behind sends next
		if sent[1] < sent[0] {
			i = 1
		}
		end := min(sent[i]+chunkSize[i], len(content))
		pubs[i].write(t, string(content[sent[i]:end]))
		sent[i] = end
		if end > sent[1-i] {
			waitStored(t, ts, "dup", int64(end))
		}
	}
	for _, p := range pubs {
		p.pw.Close()
	}
	for _, p := range pubs {
		r := p.result(t)
		wantStatus(t, r.resp, r.body, http.StatusOK)
		wantInfo(t, r.resp, int64(len(content)), true)
	}
	wantStream(t, ts, "dup", string(content), true)
}

// TestPublishMaxStreamSize proves that a stream cannot grow past the store's limit: 413,
// with Stream-Length, and nothing appended beyond it.
func TestPublishMaxStreamSize(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{MaxStreamSize: 10})
	resp, body := call(t, http.MethodPost, ts.streamURL("s"), strings.NewReader("0123456789"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = call(t, http.MethodPost, ts.streamURL("s"), strings.NewReader("a"), "Stream-Offset", "10")
	wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
	wantInfo(t, resp, 10, false)
	resp, body = call(t, http.MethodPost, ts.streamURL("s"), strings.NewReader("0123456789"))
	wantStatus(t, resp, body, http.StatusOK) // a resend within the limit is fine
	wantStream(t, ts, "s", "0123456789", true)

	resp, body = call(t, http.MethodPost, ts.streamURL("big"), strings.NewReader("0123456789a"))
	wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
	wantInfo(t, resp, 0, false)
	wantStream(t, ts, "big", "", false)
}

// TestPublishMaxOpenStreams proves that the store's limit on open streams is a 503 with
// Retry-After for anything that would create one, while existing streams work on.
func TestPublishMaxOpenStreams(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{MaxOpenStreams: 2})
	resp, body := call(t, http.MethodPut, ts.streamURL("a"), nil)
	wantStatus(t, resp, body, http.StatusCreated)
	resp, body = call(t, http.MethodPost, ts.streamURL("b"), strings.NewReader("x"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	refused := func(method, url string) {
		t.Helper()
		resp, body := call(t, method, url, strings.NewReader("x"))
		wantStatus(t, resp, body, http.StatusServiceUnavailable)
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
			t.Errorf("%s %s: Retry-After %q", method, url, resp.Header.Get("Retry-After"))
		}
	}
	refused(http.MethodPut, ts.streamURL("c"))
	refused(http.MethodPost, ts.streamURL("c"))
	refused(http.MethodPost, ts.url+"/streams")
	resp, body = call(t, http.MethodHead, ts.streamURL("c"), nil)
	wantStatus(t, resp, body, http.StatusNotFound)

	resp, body = call(t, http.MethodPost, ts.streamURL("a"), strings.NewReader("y"), "Stream-Close", "false")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = call(t, http.MethodDelete, ts.streamURL("a"), nil)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = call(t, http.MethodPut, ts.streamURL("c"), nil)
	wantStatus(t, resp, body, http.StatusCreated) // a closed stream frees its place
}

// TestPublishDrain proves "On SIGTERM ... the server stops reading publish bodies with every
// received byte stored": a publish in progress ends with 503 and Stream-Length, its bytes
// stored and its stream open, so the producer resumes elsewhere.
func TestPublishDrain(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPut, ts.streamURL("d"), nil)
	wantStatus(t, resp, body, http.StatusCreated)
	p := startPublish(t, ts.streamURL("d"))
	p.write(t, "0123456789")
	waitStored(t, ts, "d", 10)
	ts.Drain()
	r := p.result(t)
	wantStatus(t, r.resp, r.body, http.StatusServiceUnavailable)
	wantInfo(t, r.resp, 10, false)
	if r.resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	wantStream(t, ts, "d", "0123456789", false)
}
