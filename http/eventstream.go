package http

import (
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
	"github.com/sluicehq/sluice/sse"
)

// eventStream sends a stream's bytes as Server-Sent Events in busl's framing, each
// event's id the offset just after its last byte, so that a browser resumes by itself.
type eventStream struct {
	wire      *fanout.Wire
	cfg       Config
	lastWrite time.Time
}

// newSSE starts the event stream with the reconnection delay.
func newSSE(w *fanout.Wire, cfg Config) (*eventStream, error) {
	t := &eventStream{wire: w, cfg: cfg, lastWrite: time.Now()}
	if err := w.Commit(sse.AppendRetry(w.Buffer(), cfg.SSERetry)); err != nil {
		return nil, err
	}
	return t, w.Flush()
}

func (t *eventStream) Write(b []byte, off int64, info sluice.Info, final bool) (int, error) {
	out, n := sse.AppendEvents(t.wire.Buffer(), b, off, final)
	t.lastWrite = time.Now()
	return n, t.wire.Commit(out)
}

func (t *eventStream) Flush() error { return t.wire.Flush() }

// Keepalive checks that the follower is still there and sends it a comment if it would
// otherwise go without a byte for longer than the keepalive interval before the next
// call (an Idle() later), which also keeps proxies from timing it out.
func (t *eventStream) Keepalive() error {
	if !t.wire.Alive() {
		return fanout.ErrGone
	}
	if time.Since(t.lastWrite)+t.Idle() <= t.cfg.SSEKeepalive {
		return nil
	}
	t.lastWrite = time.Now()
	if err := t.wire.Commit(sse.AppendKeepalive(t.wire.Buffer())); err != nil {
		return err
	}
	return t.wire.Flush()
}

func (t *eventStream) Idle() time.Duration { return min(t.cfg.SSEKeepalive, t.cfg.ProbeInterval) }

// endStream tells the follower the stream is closed, so that it does not reconnect.
func (t *eventStream) endStream(length int64) {
	if t.wire.Commit(sse.AppendEnd(t.wire.Buffer(), length)) == nil {
		t.wire.End()
		return
	}
	t.wire.Abort()
}
