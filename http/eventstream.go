package http

import (
	"net/http"
	"sync"
	"time"

	"github.com/sluicehq/sluice/sse"
)

// eventPool holds SSE encoding buffers, apart from bufPool's fixed-size ones since
// encoding may grow them.
var eventPool = sync.Pool{New: func() any { b := make([]byte, 0, 40<<10); return &b }}

// eventStream sends a stream's bytes as Server-Sent Events in busl's framing, each
// event's id the offset just after its last byte, so that a browser resumes by itself.
type eventStream struct {
	raw
	cfg Config
	out *[]byte // pooled, held only while writing
}

func newSSE(w http.ResponseWriter, cfg Config, m *metrics) *eventStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	t := &eventStream{raw: raw{w: w, ctl: http.NewResponseController(w), timeout: cfg.WriteTimeout, m: m}, cfg: cfg}
	t.send(sse.AppendRetry(nil, cfg.SSERetry))
	t.flush()
	return t
}

func (t *eventStream) write(b []byte, off int64, final bool) (int, error) {
	if t.out == nil {
		t.out = eventPool.Get().(*[]byte)
	}
	out, n := sse.AppendEvents((*t.out)[:0], b, off, final)
	*t.out = out[:0]
	if len(out) == 0 {
		return n, nil
	}
	return n, t.send(out)
}

// flush pushes the events out and gives the encoding buffer back: an idle follower holds none.
func (t *eventStream) flush() error {
	t.release()
	return t.raw.flush()
}

func (t *eventStream) send(p []byte) error {
	t.ctl.SetWriteDeadline(time.Now().Add(t.timeout))
	n, err := t.w.Write(p)
	t.m.bytesOut.WithLabelValues("sse").Add(float64(n))
	return err
}

func (t *eventStream) keepalive() error {
	if err := t.send(sse.AppendKeepalive(nil)); err != nil {
		return err
	}
	return t.flush()
}

func (t *eventStream) idle() time.Duration { return t.cfg.SSEKeepalive }

// end tells the follower the stream is closed, so that it does not reconnect.
func (t *eventStream) end(length int64) {
	t.send(sse.AppendEnd(nil, length))
	t.flush()
}

// release returns the encoding buffer if a write failed before flush.
func (t *eventStream) release() {
	if t.out != nil && cap(*t.out) <= 256<<10 {
		eventPool.Put(t.out)
	}
	t.out = nil
}
