package http

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// statusPurged closes a WebSocket whose stream was purged; reconnecting would get a 404.
const statusPurged websocket.StatusCode = 4404

// webSocket sends a stream's bytes as binary messages, each a run of consecutive bytes.
type webSocket struct {
	c    *websocket.Conn
	ctx  context.Context
	cfg  Config
	m    *metrics
	sent int64 // bytes of the stream sent
}

// followWebSocket upgrades the request and follows the stream. A reader goroutine drains
// the socket for as long as the connection lives, discarding data messages and answering
// pings, so that client chatter never piles up in kernel buffers.
func (s *Server) followWebSocket(w http.ResponseWriter, r *http.Request, m *fanout.Member, st sluice.Stream, off, end int64, follow bool) {
	defer s.fan.Hold()()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client
	}
	done := requestOf(r.Context()).handOff()
	s.metrics.followers.WithLabelValues("websocket").Inc()
	defer s.metrics.followers.WithLabelValues("websocket").Dec()
	defer c.CloseNow()
	stop := context.AfterFunc(s.fan.Killed(), func() { c.CloseNow() })
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
	outcome, reached := s.fan.Follow(ctx, m, st, t, off, end, follow)
	switch outcome {
	case fanout.OutcomeClosed:
		c.Close(websocket.StatusNormalClosure, "end")
	case fanout.OutcomeCaughtUp:
		c.Close(websocket.StatusNormalClosure, "caught up")
	case fanout.OutcomeDrained:
		c.Close(websocket.StatusServiceRestart, "server shutting down")
	case fanout.OutcomePurged:
		c.Close(statusPurged, "stream purged")
	case fanout.OutcomeEnded:
		c.Close(websocket.StatusPolicyViolation, "ended")
	case fanout.OutcomeStalled:
		s.metrics.slowDropped.Inc()
	}
	done(http.StatusSwitchingProtocols, t.sent, "outcome", outcomeName[outcome], "from", off, "to", reached)
}

func (t *webSocket) Write(b []byte, off int64, info sluice.Info, final bool) (int, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.WriteTimeout)
	defer cancel()
	if err := t.c.Write(ctx, websocket.MessageBinary, b); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.Join(err, os.ErrDeadlineExceeded)
		}
		return 0, err
	}
	t.m.bytesOut.WithLabelValues("websocket").Add(float64(len(b)))
	t.sent += int64(len(b))
	return len(b), nil
}

func (t *webSocket) Flush() error { return nil }

// Keepalive pings and waits for the pong; the reader goroutine delivers it.
func (t *webSocket) Keepalive() error {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.WSPingInterval)
	defer cancel()
	return t.c.Ping(ctx)
}

func (t *webSocket) Idle() time.Duration { return t.cfg.WSPingInterval }
