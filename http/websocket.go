package http

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// A WebSocket follower is served on its hijacked connection as raw and SSE followers
// are: the stream's bytes go as binary frames (github.com/gobwas/ws frames them), each
// a run of consecutive bytes, written by the follower's owner, which parks it while it
// waits (internal/fanout). What the client sends is read by a goroutine of the
// follower's own, which always reads, so that pings, pongs and chatter never pile up
// in kernel buffers: data messages are discarded as they stream in, never held; a ping
// or a close is noted as owed and the owner answers it (fanout.Answerer), so that only
// one goroutine writes to the connection. An idle WebSocket follower costs its
// connection, that reader's small stack and a few hundred bytes.

// statusPurged closes a WebSocket whose stream was purged; reconnecting would get a 404.
const statusPurged ws.StatusCode = 4404

// statusServiceRestart (RFC 6455's registry: 1012) closes the followers of a server
// shutting down; they reconnect.
const statusServiceRestart ws.StatusCode = 1012

// closeWait is how long a closing follower waits for the client's close frame.
const closeWait = time.Second

// errClosedByClient ends a follower whose client sent a close frame.
var errClosedByClient = errors.New("websocket closed by the client")

// upgrade answers the WebSocket handshake with the headers set on w, on the hijacked
// connection, and returns its Wire and what the client sent after its request.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*fanout.Wire, io.Reader, error) {
	u := ws.HTTPUpgrader{Timeout: s.cfg.WriteTimeout, Header: w.Header().Clone()}
	conn, brw, _, err := u.Upgrade(r, w)
	if err != nil {
		if conn != nil {
			conn.Close() // the upgrader has answered the client
		}
		return nil, nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	var in io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 { // frames sent right behind the request
		early, _ := brw.Reader.Peek(n)
		in = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	wi := fanout.Upgraded(conn, s.cfg.WriteTimeout, s.metrics.flushSeconds, s.metrics.bytesOut.WithLabelValues("websocket"))
	return wi, in, nil
}

// webSocket frames a stream's bytes as binary messages on its Wire.
type webSocket struct {
	wire    *fanout.Wire
	conn    net.Conn
	ping    time.Duration // WSPingInterval
	scratch [ws.MaxHeaderSize]byte
	out     appender // the Wire's buffer while a frame header is written to it

	pinged time.Time    // when the last ping went, if its pong has not come; the owner's
	pong   atomic.Int64 // when the last pong came (UnixNano); the reader's
	owed   atomic.Bool  // the reader has noted something to answer
	mu     sync.Mutex   // the reader's notes:
	ping1  []byte       // the last ping's payload, to answer with a pong, or nil
	closed []byte       // the client's close frame's payload, to echo, or nil
	err    error        // why the reader stopped: the client is gone, or broke the protocol

	read  chan struct{} // closed once the reader has stopped
	wake  func()        // tells a parked owner that something is owed (fanout.Fanout.Wake)
	asked chan struct{} // tells an owner on its own goroutine (Owed)
}

// newWebSocket starts the follower's reader of in, which wakes the hub of key when the
// client is owed an answer.
func newWebSocket(wi *fanout.Wire, in io.Reader, cfg Config, wake func()) *webSocket {
	t := &webSocket{wire: wi, conn: wi.Conn(), ping: cfg.WSPingInterval, read: make(chan struct{}), wake: wake,
		asked: make(chan struct{}, 1)}
	go t.reader(in)
	return t
}

// appender is an io.Writer that appends to a byte slice: a frame header written into
// the Wire's buffer.
type appender []byte

func (a *appender) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}

// frame appends a frame of op with payload p to the pending output.
func (t *webSocket) frame(op ws.OpCode, p []byte) error {
	t.out = t.wire.Buffer()
	ws.WriteHeaderBuffer(&t.out, ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}, t.scratch[:])
	b := append([]byte(t.out), p...)
	t.out = nil
	return t.wire.Commit(b)
}

// Write frames b as one binary message, whatever its bytes: the client counts them.
func (t *webSocket) Write(b []byte, off int64, info sluice.Info, final bool) (int, error) {
	return len(b), t.frame(ws.OpBinary, b)
}

// Flush writes the frames so far.
func (t *webSocket) Flush() error { return t.wire.Flush() }

// Keepalive drops a follower whose last ping has no pong yet, an interval later, and
// pings it again.
func (t *webSocket) Keepalive() error {
	if !t.pinged.IsZero() && t.pong.Load() < t.pinged.UnixNano() {
		return fmt.Errorf("%w: no pong within %v", fanout.ErrGone, t.ping)
	}
	t.pinged = time.Now()
	if err := t.frame(ws.OpPing, nil); err != nil {
		return err
	}
	return t.wire.Flush()
}

// Idle is the ping interval (WSPingInterval).
func (t *webSocket) Idle() time.Duration { return t.ping }

// Answer writes the pong or the close that the client is owed, and ends the follower
// after a close, or once the reader has stopped.
func (t *webSocket) Answer() error {
	if !t.owed.Load() {
		return nil
	}
	t.mu.Lock()
	t.owed.Store(false)
	ping, closed, err := t.ping1, t.closed, t.err
	t.ping1 = nil
	t.mu.Unlock()
	if ping != nil {
		if err := t.frame(ws.OpPong, ping); err != nil {
			return err
		}
		if err := t.wire.Flush(); err != nil {
			return err
		}
	}
	if closed != nil || err != nil {
		return errors.Join(fanout.ErrGone, err)
	}
	return nil
}

// reader reads the client's frames until the connection fails or the client closes
// it: data is discarded, pongs are timed, pings and the close are noted for Answer.
func (t *webSocket) reader(in io.Reader) {
	defer close(t.read)
	rd := &wsutil.Reader{Source: in, State: ws.StateServerSide, OnIntermediate: t.control}
	for {
		h, err := rd.NextFrame()
		switch {
		case err == nil && h.OpCode.IsControl():
			err = t.control(h, rd)
		case err == nil:
			err = rd.Discard()
		}
		if err != nil {
			t.note(func() {
				if t.closed == nil {
					t.err = err
				}
			})
			return
		}
	}
}

// control handles a control frame whose payload r holds (unmasked).
func (t *webSocket) control(h ws.Header, r io.Reader) error {
	p := make([]byte, h.Length) // at most 125 bytes
	if _, err := io.ReadFull(r, p); err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPong:
		t.pong.Store(time.Now().UnixNano())
	case ws.OpPing:
		t.note(func() { t.ping1 = p })
	case ws.OpClose:
		t.note(func() { t.closed = p })
		return errClosedByClient
	}
	return nil
}

// note records what the reader learnt with fn, under the lock, and wakes the owner.
func (t *webSocket) note(fn func()) {
	t.mu.Lock()
	fn()
	t.owed.Store(true)
	t.mu.Unlock()
	select {
	case t.asked <- struct{}{}:
	default: // it is told already
	}
	t.wake()
}

// Owed receives when the reader notes something to answer (fanout.Answerer).
func (t *webSocket) Owed() <-chan struct{} { return t.asked }

// end closes the connection as the outcome says: with a close frame, then a wait for
// the client's; a client that closed gets its code back, one that broke the protocol
// 1002, and one gone or stalled no frame.
func (t *webSocket) end(o fanout.Outcome) {
	if body, ok := t.closeBody(o); ok && t.frame(ws.OpClose, body) == nil && t.wire.Flush() == nil {
		t.conn.SetReadDeadline(time.Now().Add(closeWait))
	} else {
		t.conn.Close()
	}
	<-t.read
	t.wire.Abort() // gives the buffers back, and closes the connection
}

// closeBody is the payload of the close frame that ends a follower with outcome o, if
// one is sent.
func (t *webSocket) closeBody(o fanout.Outcome) ([]byte, bool) {
	switch o {
	case fanout.OutcomeClosed:
		return ws.NewCloseFrameBody(ws.StatusNormalClosure, "end"), true
	case fanout.OutcomeCaughtUp:
		return ws.NewCloseFrameBody(ws.StatusNormalClosure, "caught up"), true
	case fanout.OutcomeDrained:
		return ws.NewCloseFrameBody(statusServiceRestart, "server shutting down"), true
	case fanout.OutcomePurged:
		return ws.NewCloseFrameBody(statusPurged, "stream purged"), true
	case fanout.OutcomeEnded:
		return ws.NewCloseFrameBody(ws.StatusPolicyViolation, "ended"), true
	case fanout.OutcomeGone:
		t.mu.Lock()
		defer t.mu.Unlock()
		var pe ws.ProtocolError
		switch {
		case t.closed != nil:
			return t.closed[:min(2, len(t.closed))], true // its code back
		case errors.As(t.err, &pe):
			return ws.NewCloseFrameBody(ws.StatusProtocolError, string(pe)), true
		}
	}
	return nil, false
}
