package http

import (
	"net/http"
	"time"
)

// raw sends a stream's bytes exactly as published, nothing added in-band.
type raw struct {
	w       http.ResponseWriter
	ctl     *http.ResponseController
	timeout time.Duration
	m       *metrics
}

func newRaw(w http.ResponseWriter, cfg Config, m *metrics) *raw {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	t := &raw{w: w, ctl: http.NewResponseController(w), timeout: cfg.WriteTimeout, m: m}
	t.flush() // headers at once, before the first byte of data
	return t
}

func (t *raw) write(b []byte, off int64, final bool) (int, error) {
	t.ctl.SetWriteDeadline(time.Now().Add(t.timeout))
	n, err := t.w.Write(b)
	t.m.bytesOut.WithLabelValues("raw").Add(float64(n))
	return n, err
}

func (t *raw) flush() error {
	start := time.Now()
	t.ctl.SetWriteDeadline(start.Add(t.timeout))
	err := t.ctl.Flush()
	t.m.flushSeconds.Observe(time.Since(start).Seconds())
	return err
}

func (t *raw) keepalive() error    { return nil }
func (t *raw) idle() time.Duration { return 0 }
