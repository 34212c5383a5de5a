package fanout

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A follower's response is written straight to its hijacked connection, so that an idle
// follower costs its connection and a few hundred bytes: no net/http buffers (about 10 KiB
// a connection), no goroutine watching the connection for a close, no deep handler stack.

// chunkRoom is room kept at the head of an output buffer for an HTTP chunk header.
const chunkRoom = 18

// wirePool holds output buffers; a follower holds one only between a write and its flush.
var wirePool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Wire writes a response body to a hijacked HTTP/1.x connection, as chunks for HTTP/1.1
// so that a clean end is told apart from a cut connection, or, for a request whose
// connection cannot be hijacked (HTTP/2), through its ResponseWriter (see Stream).
// Transports frame bytes into its Buffer and Commit them; the follower loop flushes.
type Wire struct {
	conn    net.Conn
	rw      http.ResponseWriter      // instead of conn, for HTTP/2
	rc      *http.ResponseController // rw's
	ctx     context.Context          // rw's request's: done once the client is gone
	parked  bool                     // Flush never waits (see Park)
	rest    *[]byte                  // a parked Flush's output the socket did not take...
	restAt  int                      // ...from this index on
	chunked bool
	timeout time.Duration
	out     *[]byte
	// raw, when the connection offers it, writes without waiting (write): tryFn is its
	// callback; pending, written and writeErr its argument and results.
	raw      syscall.RawConn
	tryFn    func(fd uintptr) bool
	pending  []byte
	written  int
	writeErr error
	total    int64               // bytes written, framing included
	flushed  prometheus.Observer // flush latency
	sent     prometheus.Counter  // bytes sent, for this transport
}

// Hijack takes the connection of w and writes a 200 response head with the headers set
// on w, so the follower gets them at once, before any data. timeout bounds each write
// that cannot go at once; flushed observes flush latencies, and sent counts bytes.
func Hijack(w http.ResponseWriter, r *http.Request, timeout time.Duration, flushed prometheus.Observer, sent prometheus.Counter) (*Wire, error) {
	h := w.Header().Clone()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	brw.Reader.Reset(nil) // a GET has no body, and followers pipeline nothing
	chunked := r.ProtoAtLeast(1, 1)
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&head)
	head.WriteString("\r\n")
	conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(head.Bytes()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("write response head: %w", err)
	}
	wi := &Wire{conn: conn, chunked: chunked, timeout: timeout, flushed: flushed, sent: sent}
	wi.canTry()
	conn.SetWriteDeadline(time.Time{})
	return wi, nil
}

// Upgraded returns a Wire over conn, a connection that was hijacked and upgraded
// (WebSocket): the bytes go as they are, with no HTTP framing.
func Upgraded(conn net.Conn, timeout time.Duration, flushed prometheus.Observer, sent prometheus.Counter) *Wire {
	wi := &Wire{conn: conn, timeout: timeout, flushed: flushed, sent: sent}
	wi.canTry()
	return wi
}

// Buffer returns the pending output to append to; Commit takes it back.
func (w *Wire) Buffer() []byte {
	if w.out == nil {
		w.out = wirePool.Get().(*[]byte)
		*w.out = append((*w.out)[:0], make([]byte, chunkRoom)...)
	}
	return *w.out
}

// Commit stores b, the pending output grown by append, flushing when it is large.
func (w *Wire) Commit(b []byte) error {
	*w.out = b
	if len(b) >= 64<<10 {
		return w.Flush()
	}
	return nil
}

// Write adds p to the pending output.
func (w *Wire) Write(p []byte) (int, error) {
	return len(p), w.Commit(append(w.Buffer(), p...))
}

// Stream sends the response head of w, with the headers set on it, and returns a Wire
// that writes through w itself: for a request whose connection cannot be hijacked
// (HTTP/2), whose follower then runs in the request's goroutine. It costs what net/http
// keeps per request; End returns, and Abort panics with http.ErrAbortHandler, which
// resets the stream so that the client sees the response cut short.
func Stream(w http.ResponseWriter, r *http.Request, timeout time.Duration, flushed prometheus.Observer, sent prometheus.Counter) (*Wire, error) {
	wi := &Wire{rw: w, rc: http.NewResponseController(w), ctx: r.Context(), timeout: timeout, flushed: flushed, sent: sent}
	w.WriteHeader(http.StatusOK)
	if err := wi.rc.Flush(); err != nil {
		return nil, fmt.Errorf("write response head: %w", err)
	}
	return wi, nil
}

// Sent reports the bytes written so far, framing included (not the response head).
func (w *Wire) Sent() int64 { return w.total }

// Conn is the connection beneath.
func (w *Wire) Conn() net.Conn { return w.conn }

// Alive reports whether the peer is still there, without blocking (see alive).
func (w *Wire) Alive() bool {
	if w.rw != nil {
		return w.ctx.Err() == nil
	}
	return alive(w.conn)
}

// Flush sends the pending output as one chunk in one write, under the write deadline, and
// gives the buffer back. A parked Wire (see Park) never waits: what the socket does not
// take at once stays pending (Pending), and goes first at the next Flush.
func (w *Wire) Flush() error {
	if w.rest != nil {
		if err := w.flushRest(); err != nil || w.rest != nil {
			return err // still pending: the output after it waits too
		}
	}
	if w.out == nil {
		return nil
	}
	b := *w.out
	if len(b) == chunkRoom {
		w.release()
		return nil
	}
	start := 0
	if w.chunked && w.rw == nil {
		var hdr [chunkRoom]byte
		h := append(strconv.AppendInt(hdr[:0], int64(len(b)-chunkRoom), 16), '\r', '\n')
		start = chunkRoom - len(h)
		copy(b[start:], h)
		b = append(b, '\r', '\n')
		*w.out = b
	} else {
		start = chunkRoom
	}
	n, err := w.send(b[start:])
	if w.parked && err == nil && start+n < len(b) {
		w.rest, w.restAt, w.out = w.out, start+n, nil // the buffer goes with what is left of it
		return nil
	}
	w.release()
	return err
}

// flushRest sends what a parked Flush left pending: all of it, or, parked, what the
// socket takes at once.
func (w *Wire) flushRest() error {
	b := (*w.rest)[w.restAt:]
	n, err := w.send(b)
	if err == nil && n < len(b) && w.parked {
		w.restAt += n
		return nil
	}
	out := w.out
	w.out = w.rest
	w.release()
	w.out, w.rest = out, nil
	return err
}

// send writes b (without waiting, when parked), counting what went out.
func (w *Wire) send(b []byte) (int, error) {
	now := time.Now()
	var n int
	var err error
	if w.parked {
		n, err = w.try(b)
	} else {
		n, err = w.write(b)
	}
	w.flushed.Observe(time.Since(now).Seconds())
	w.sent.Add(float64(n))
	w.total += int64(n)
	return n, err
}

// Parkable reports whether the Wire can write without waiting, so that its follower can
// wait parked, without a goroutine (a hijacked plain TCP connection).
func (w *Wire) Parkable() bool { return w.raw != nil && w.rw == nil }

// Park makes Flush never wait (parked), or wait again (not parked). Only a Parkable
// Wire may be parked.
func (w *Wire) Park(parked bool) { w.parked = parked }

// Pending reports whether output waits that the socket did not take.
func (w *Wire) Pending() bool { return w.rest != nil }

// try writes what the socket takes of b at once.
func (w *Wire) try(b []byte) (int, error) {
	w.pending = b
	err := w.raw.Write(w.tryFn)
	n := w.written
	w.pending = nil
	if err == nil {
		err = w.writeErr
	}
	return n, err
}

// write sends b. It first tries without waiting, which is how nearly every write to a
// follower that keeps up goes, and needs no deadline, sparing a timer update per write;
// only what the socket cannot take at once is written under the write deadline.
func (w *Wire) write(b []byte) (int, error) {
	if w.rw != nil {
		w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
		n, err := w.rw.Write(b)
		if err == nil {
			err = w.rc.Flush()
		}
		return n, err
	}
	n := 0
	if w.raw != nil {
		var err error
		if n, err = w.try(b); err != nil || n == len(b) {
			return n, err
		}
	}
	w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	m, err := w.conn.Write(b[n:])
	w.conn.SetWriteDeadline(time.Time{}) // so that the next try is not refused at once
	return n + m, err
}

func (w *Wire) release() {
	if w.out != nil && cap(*w.out) <= 256<<10 {
		wirePool.Put(w.out)
	}
	w.out = nil
}

// End finishes the response cleanly: pending output, the last chunk, then the connection
// is closed after the client's unread bytes are drained, so that it gets a FIN, not a RST
// that could discard the response's last bytes.
func (w *Wire) End() {
	if w.rw != nil {
		w.Flush() // the handler's return ends the stream
		return
	}
	if err := w.Flush(); err == nil && w.chunked {
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		w.conn.Write([]byte("0\r\n\r\n"))
	}
	if tc, ok := w.conn.(*net.TCPConn); ok {
		tc.CloseWrite()
		alive(w.conn)
	}
	w.conn.Close()
}

// Abort cuts the response short: the client sees it incomplete and resumes by offset.
func (w *Wire) Abort() {
	w.release()
	if w.rest != nil {
		w.out, w.rest = w.rest, nil
		w.release()
	}
	if w.rw != nil {
		panic(http.ErrAbortHandler)
	}
	w.conn.Close()
}
