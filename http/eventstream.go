package http

import (
	"time"

	"github.com/sluicehq/sluice/sse"
)

// eventStream sends a stream's bytes as Server-Sent Events in busl's framing, each
// event's id the offset just after its last byte, so that a browser resumes by itself.
type eventStream struct {
	*wire
	cfg       Config
	lastWrite time.Time
}

// newSSE starts the event stream with the reconnection delay.
func newSSE(w *wire, cfg Config) (*eventStream, error) {
	t := &eventStream{wire: w, cfg: cfg, lastWrite: time.Now()}
	if err := t.commit(sse.AppendRetry(t.buffer(), cfg.SSERetry)); err != nil {
		return nil, err
	}
	return t, t.flush()
}

func (t *eventStream) write(b []byte, off int64, final bool) (int, error) {
	out, n := sse.AppendEvents(t.buffer(), b, off, final)
	t.lastWrite = time.Now()
	return n, t.commit(out)
}

// keepalive checks that the follower is still there and sends it a comment if it would
// otherwise go without a byte for longer than the keepalive interval before the next
// call (an idle() later), which also keeps proxies from timing it out.
func (t *eventStream) keepalive() error {
	if !alive(t.conn) {
		return errGone
	}
	if time.Since(t.lastWrite)+t.idle() <= t.cfg.SSEKeepalive {
		return nil
	}
	t.lastWrite = time.Now()
	if err := t.commit(sse.AppendKeepalive(t.buffer())); err != nil {
		return err
	}
	return t.flush()
}

func (t *eventStream) idle() time.Duration { return min(t.cfg.SSEKeepalive, t.cfg.ProbeInterval) }

// endStream tells the follower the stream is closed, so that it does not reconnect.
func (t *eventStream) endStream(length int64) {
	if t.commit(sse.AppendEnd(t.buffer(), length)) == nil {
		t.end()
		return
	}
	t.abort()
}
