package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Transports names the follower transports; "mix" cycles through them.
var Transports = []string{"sse", "raw", "websocket"}

// readBuf is a follower's buffer size: one for the response head and chunk framing, one
// for its own reading. Followers are cheap: one goroutine and about 8 KiB each.
const readBuf = 4 << 10

// follower is one subscriber of a stream: it connects, then reads until the stream's end,
// checking every byte it gets.
type follower struct {
	id      int
	stream  int // index of the stream it follows
	kind    string
	v       verifier
	connect time.Duration // from dialling to the response head
	ok      bool          // connected
	ended   bool          // the transport's end marker arrived: the stream is closed
	err     error         // why reading stopped short, if it did
	// requests counts the GETs after the first: in Durable Streams, long-polls, or SSE
	// event streams that the server ended before the stream's end.
	requests int
}

// name is how reports name the follower: the suffix of its Request-Id.
func (f *follower) name() string { return fmt.Sprintf("f%d", f.id) }

func requestID(runID, name string) string { return "bench-" + runID + "-" + name }

// opened is a connected follower, ready to read.
type opened interface {
	read(f *follower) error
	close()
}

// open connects f to the stream at path and reads the response head, within the target's
// timeout. Its connection's deadline is then the run's.
func (f *follower) open(ctx context.Context, t *target, path, runID string, deadline time.Time) (opened, error) {
	start := time.Now()
	var o opened
	var err error
	switch id := requestID(runID, f.name()); {
	case t.proto == ProtocolDurable:
		o, err = openDurable(ctx, t, f, path, id, deadline)
	case f.kind == "websocket":
		o, err = openWebSocket(ctx, t, f.id, path, id)
	default:
		o, err = openHTTP(ctx, t, f.id, path, id, f.kind, deadline)
	}
	if err != nil {
		return nil, err
	}
	f.connect, f.ok = time.Since(start), true
	return o, nil
}

// httpFollow is a raw or SSE follower on a connection of its own, read without net/http's
// client machinery (two goroutines and 8 KiB of buffers a connection), so that thousands
// fit in one process.
type httpFollow struct {
	conn  net.Conn
	body  io.ReadCloser
	kind  string
	proto string
}

func openHTTP(ctx context.Context, t *target, i int, path, id, kind string, deadline time.Time) (*httpFollow, error) {
	conn, _, err := t.dial(ctx, i)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(t.timeout))
	resp, err := getHead(conn, t, path, id, kind)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(deadline)
	return &httpFollow{conn: conn, body: resp.Body, kind: kind, proto: t.proto}, nil
}

// getHead sends the GET of a follower and reads the response head.
func getHead(conn net.Conn, t *target, path, id, kind string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, t.url(path), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "sluice-bench")
	req.Header.Set("Request-Id", id)
	if kind == "sse" {
		req.Header.Set("Accept", "text/event-stream")
	}
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, readBuf), req)
	if err != nil {
		return nil, fmt.Errorf("read response head: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	if kind == "sse" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return nil, fmt.Errorf("Content-Type %q, want text/event-stream", resp.Header.Get("Content-Type"))
	}
	// Nchan's event stream ends with the connection, but only after its ":410" comment.
	if len(resp.TransferEncoding) == 0 && resp.ContentLength < 0 && t.proto != protocolNchan {
		return nil, errors.New("a response neither chunked nor of known length: a cut could not be told from the end")
	}
	return resp, nil
}

// statusError is the error of an answer that is not the one asked for: its status and
// the start of its body.
func statusError(resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
}

func (h *httpFollow) close() { h.conn.Close() }

func (h *httpFollow) read(f *follower) error {
	if h.kind == "sse" {
		return h.readSSE(f)
	}
	if err := consumeAll(h.body, make([]byte, readBuf), &f.v); err != nil {
		return err
	}
	f.ended = true // a clean end of a raw response means "stream closed"
	return nil
}

// consumeAll passes what r gives to v, read into buf, until its end (then nil) or an
// error.
func consumeAll(r io.Reader, buf []byte, v *verifier) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			v.consume(buf[:n], time.Now())
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (h *httpFollow) readSSE(f *follower) error {
	r := newSSEReader(&f.v, h.proto)
	switch err := feedLines(bufio.NewReaderSize(h.body, readBuf), r); {
	case err == io.EOF && r.ended:
		f.ended = true
		return nil
	case err == io.EOF:
		return errors.New("the event stream ended without the end event")
	default:
		return err
	}
}

// feedLines passes the lines of an event stream to r as they arrive, a line longer than
// br's buffer in pieces, until reading fails: io.EOF at its end.
func feedLines(br *bufio.Reader, r *sseReader) error {
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			r.line(frag, err == nil, time.Now())
		}
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
	}
}

// wsFollow is a WebSocket follower: each binary message is a run of the stream's bytes,
// and a close with code 1000, reason "end", means the stream is closed.
type wsFollow struct {
	c   *websocket.Conn
	ctx context.Context
}

func openWebSocket(ctx context.Context, t *target, i int, path, id string) (*wsFollow, error) {
	dctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	c, _, err := websocket.Dial(dctx, t.url(path), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: t.transport(i)},
		HTTPHeader: http.Header{"Request-Id": {id}, "User-Agent": {"sluice-bench"}},
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(-1) // messages are read piecewise into a small buffer, never held whole
	return &wsFollow{c: c, ctx: ctx}, nil
}

func (w *wsFollow) close() { w.c.CloseNow() }

func (w *wsFollow) read(f *follower) error {
	buf := make([]byte, readBuf)
	for {
		typ, msg, err := w.c.Reader(w.ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure && ce.Reason == "end" {
				f.ended = true
				return nil
			}
			return err
		}
		if typ != websocket.MessageBinary {
			return fmt.Errorf("a %v message: want binary", typ)
		}
		for {
			n, err := msg.Read(buf)
			if n > 0 {
				f.v.consume(buf[:n], time.Now())
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
}

// verdict says whether f got exactly what the producer sent, bytes bytes with checksum
// crc, and if not, why not.
func (f *follower) verdict(bytes int64, crc uint32) (complete bool, reason string) {
	switch {
	case !f.ok:
		return false, "never connected: " + errString(f.err)
	case f.v.problem != "":
		return false, f.v.problem
	case f.err != nil:
		return false, fmt.Sprintf("cut after %d bytes: %v", f.v.n, f.err)
	case f.v.n != bytes:
		return false, fmt.Sprintf("got %d bytes, the producer sent %d", f.v.n, bytes)
	case f.v.crc != crc:
		return false, fmt.Sprintf("checksum %08x, the producer's %08x", f.v.crc, crc)
	case !f.ended:
		return false, "no end-of-stream marker"
	}
	return true, ""
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
