package http

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice"
)

// statusPurged closes a WebSocket whose stream was purged; reconnecting would get a 404.
const statusPurged websocket.StatusCode = 4404

// webSocket sends a stream's bytes as binary messages, each a run of consecutive bytes.
type webSocket struct {
	c   *websocket.Conn
	ctx context.Context
	cfg Config
	m   *metrics
}

// followWebSocket upgrades the request and follows the stream. A reader goroutine drains
// the socket for as long as the connection lives, discarding data messages and answering
// pings, so that client chatter never piles up in kernel buffers.
func (s *Server) followWebSocket(w http.ResponseWriter, r *http.Request, key string, st sluice.Stream, off, end int64, follow bool) {
	s.hijacked.Add(1)
	defer s.hijacked.Done()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client
	}
	defer c.CloseNow()
	stop := context.AfterFunc(s.kill, func() { c.CloseNow() })
	defer stop()
	c.SetReadLimit(-1) // messages are discarded as they stream in, never held
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		defer cancel() // a client that stops reading frames is gone
		for {
			_, msg, err := c.Reader(ctx)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, msg); err != nil {
				return
			}
		}
	}()
	defer func() { c.CloseNow(); <-drained }()

	t := &webSocket{c: c, ctx: ctx, cfg: s.cfg, m: s.metrics}
	switch s.follow(ctx, key, st, t, off, end, follow) {
	case outcomeClosed:
		c.Close(websocket.StatusNormalClosure, "end")
	case outcomeCaughtUp:
		c.Close(websocket.StatusNormalClosure, "caught up")
	case outcomeDrained:
		c.Close(websocket.StatusServiceRestart, "server shutting down")
	case outcomePurged:
		c.Close(statusPurged, "stream purged")
	}
}

func (t *webSocket) write(b []byte, off int64, final bool) (int, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.WriteTimeout)
	defer cancel()
	if err := t.c.Write(ctx, websocket.MessageBinary, b); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.Join(err, errWriteTimeout)
		}
		return 0, err
	}
	t.m.bytesOut.WithLabelValues("websocket").Add(float64(len(b)))
	return len(b), nil
}

func (t *webSocket) flush() error { return nil }

// keepalive pings and waits for the pong; the reader goroutine delivers it.
func (t *webSocket) keepalive() error {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.WSPingInterval)
	defer cancel()
	return t.c.Ping(ctx)
}

func (t *webSocket) idle() time.Duration { return t.cfg.WSPingInterval }
