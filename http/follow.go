package http

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
)

// errTooManyFollowers refuses a follower beyond the configured limits; it maps to 503.
var errTooManyFollowers = errors.New("too many followers")

// errGone means a follower's connection is no longer there.
var errGone = errors.New("follower gone")

// bufPool holds the one buffer a follower or publisher uses while it moves bytes; a
// waiting follower holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// transport writes a stream's bytes to one follower in its own framing.
type transport interface {
	// write sends b, the bytes at offset off, and reports how many it consumed: fewer
	// than len(b) only when, final being false, it holds back an incomplete character.
	write(b []byte, off int64, final bool) (int, error)
	// flush pushes what was written to the network, once the follower has caught up.
	flush() error
	// keepalive is called after the follower has been idle for idle().
	keepalive() error
	// idle is how long a follower may go without a write; 0 means forever.
	idle() time.Duration
}

// outcome is why following ended.
type outcome int

const (
	outcomeClosed   outcome = iota // the stream is closed and the follower has it all
	outcomeCaughtUp                // ?follow=false, or the end of a Range, reached
	outcomeDrained                 // the server is shutting down
	outcomePurged                  // the stream was purged
	outcomeGone                    // the client went away or a write failed
)

// subscribe serves GET /streams/{key}. See PROTOCOL.md, "Subscribe".
func (s *Server) subscribe(w http.ResponseWriter, r *http.Request, key string) {
	off, rng, err := startOffset(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	follow, err := parseBool("follow", q.Get("follow"), true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	kind, err := transportKind(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if kind == "html" {
		s.serveViewer(w, r, key) // a browser: the web viewer page (viewer.go)
		return
	}
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	release := true
	defer func() {
		if release {
			st.Release()
		}
	}()
	info := st.Info()
	end := int64(-1)
	if rng != nil {
		if rng.suffix >= 0 {
			off = max(0, info.Length-rng.suffix)
		}
		end = rng.end
	}
	if info.Closed {
		switch {
		case off > info.Length:
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(info.Length, 10))
			setInfo(w.Header(), info)
			http.Error(w, fmt.Sprintf("offset %d is beyond the closed stream's length %d", off, info.Length), http.StatusRequestedRangeNotSatisfiable)
			return
		case off == info.Length:
			setInfo(w.Header(), info)
			w.WriteHeader(http.StatusNoContent)
			return
		case kind == "raw":
			s.serveClosed(w, r, st, info, off, rng)
			return
		}
	}
	if err := s.addFollower(key, kind); err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Stream-Offset", strconv.FormatInt(off, 10))
	setInfo(h, info)
	if kind == "websocket" {
		defer s.removeFollower(key, kind)
		s.followWebSocket(w, r, key, st, off, end, follow)
		return
	}
	if kind == "sse" {
		h.Set("Content-Type", "text/event-stream")
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
	}
	s.hijacked.Add(1) // before the hijack, while Shutdown still waits for this connection
	wi, err := hijack(w, r, kind, s.cfg.WriteTimeout, s.metrics)
	if err != nil {
		s.hijacked.Done()
		s.removeFollower(key, kind)
		logger(r.Context()).Warn("follower lost", "err", err)
		return
	}
	release = false // the follower's goroutine owns st now
	go s.followHijacked(logger(r.Context()), wi, st, key, kind, off, end, follow)
}

// followHijacked serves a raw or SSE follower on a goroutine of its own, owned by the
// server (counted in s.hijacked, cut by s.kill), so that the request's goroutine and
// net/http's buffers are freed while the follower waits.
func (s *Server) followHijacked(log *slog.Logger, wi *wire, st sluice.Stream, key, kind string, off, end int64, follow bool) {
	defer s.hijacked.Done()
	defer st.Release()
	defer s.removeFollower(key, kind)
	var t transport = &raw{wire: wi, probe: s.cfg.ProbeInterval}
	if kind == "sse" {
		var err error
		if t, err = newSSE(wi, s.cfg); err != nil {
			wi.abort()
			return
		}
	}
	switch s.follow(s.kill, key, st, t, off, end, follow) {
	case outcomeClosed:
		if es, ok := t.(*eventStream); ok {
			es.endStream(st.Info().Length)
		} else {
			wi.end()
		}
	case outcomeCaughtUp:
		wi.end()
	case outcomeDrained:
		if kind == "sse" {
			wi.end() // cleanly, without the end event, so that EventSource reconnects
		} else {
			wi.abort()
		}
	default:
		// Raw: abort, so the client sees an incomplete response and resumes from what it
		// counted; a clean end would mean "stream closed". SSE: after a purge, the
		// reconnect gets a 404 and stops.
		wi.abort()
	}
}

// transportKind picks the follower's transport: WebSocket on an upgrade, SSE when asked
// for by Accept or ?format=sse, the web viewer page ("html") for Accept: text/html or
// ?format=html, else raw bytes.
func transportKind(r *http.Request) (string, error) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return "websocket", nil
	}
	switch f := r.URL.Query().Get("format"); f {
	case "sse":
		return "sse", nil
	case "raw":
		return "raw", nil
	case "html":
		return "html", nil
	case "":
	default:
		return "", fmt.Errorf("%w: unknown format %q (want raw, sse or html)", errBadRequest, f)
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return "sse", nil
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		return "html", nil // a browser's navigation: the web viewer
	}
	return "raw", nil
}

// follow sends the stream's bytes from off on to t, waiting for more as the stream grows,
// until the stream is closed and sent, end (if not -1) or the stored length (unless
// following) is reached, the server drains, or the client goes. It waits for the stream
// of key in turns with its other followers (turns.go).
func (s *Server) follow(ctx context.Context, key string, st sluice.Stream, t transport, off, end int64, follow bool) outcome {
	var idle <-chan time.Time
	var timer *time.Timer
	if d := t.idle(); d > 0 {
		timer = time.NewTimer(d)
		defer timer.Stop()
		idle = timer.C
	}
	for {
		next, info, changed, err := s.catchUp(ctx, st, t, off, end, follow)
		switch {
		case errors.Is(err, sluice.ErrNotFound):
			return outcomePurged
		case err != nil:
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.metrics.slowDropped.Inc()
			}
			if s.drain.Err() != nil {
				return outcomeDrained
			}
			return outcomeGone
		case info.Closed && next >= info.Length:
			return outcomeClosed
		case end >= 0 && next >= end, !follow && next >= info.Length:
			return outcomeCaughtUp
		}
		off = next
		// The idle timer ticks whether or not bytes went out (the transport knows when it
		// last wrote), which spares a timer reset per write. A drain releases every waiter
		// (turns.stop), and catchUp then ends the follower.
		tn := s.turns.wait(key, changed)
		select {
		case <-tn.ready:
		case <-idle:
			s.turns.leave(key, tn)
			if err := t.keepalive(); err != nil {
				return outcomeGone
			}
			timer.Reset(t.idle())
		case <-ctx.Done():
			s.turns.leave(key, tn)
			return outcomeGone
		}
	}
}

// catchUp sends everything stored from off on (up to end) and returns the new offset,
// the Info of its last read and the channel that tells of the next change. It holds one
// pooled buffer while it works. A transport may hold back the last bytes it was given (an
// incomplete character); they are carried at the head of the buffer and sent with the
// bytes that follow them.
func (s *Server) catchUp(ctx context.Context, st sluice.Stream, t transport, off, end int64, follow bool) (int64, sluice.Info, <-chan struct{}, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	carry, wrote := 0, false
	for {
		if err := cmp.Or(ctx.Err(), s.drain.Err()); err != nil {
			return off, sluice.Info{}, nil, err // a long catch-up stops for a shutdown too
		}
		b, info, changed, err := st.Read(ctx, buf[carry:], off+int64(carry))
		if err != nil {
			return off, info, changed, err
		}
		if carry > 0 {
			b = buf[:carry+copy(buf[carry:], b)]
		}
		if end >= 0 && off+int64(len(b)) > end {
			b = b[:end-off]
		}
		reached := off+int64(len(b)) >= info.Length || (end >= 0 && off+int64(len(b)) >= end)
		if len(b) == 0 {
			if wrote {
				err = t.flush()
			}
			return off, info, changed, err
		}
		final := reached && (info.Closed || !follow || end >= 0)
		n, err := t.write(b, off, final)
		if err != nil {
			return off, info, changed, err
		}
		off += int64(n)
		wrote = wrote || n > 0
		carry = copy(buf, b[n:])
		if reached {
			if wrote {
				err = t.flush()
			}
			return off, info, changed, err
		}
	}
}

func (s *Server) addFollower(key, kind string) error {
	// Both checks and the counting happen under s.mu, so that followers arriving at
	// once cannot all pass a check before any is counted.
	s.mu.Lock()
	defer s.mu.Unlock()
	if max := s.cfg.MaxFollowers; max > 0 && s.followers.Load() >= int64(max) {
		return fmt.Errorf("%w: the server has %d (limit %d)", errTooManyFollowers, s.followers.Load(), max)
	}
	if max := s.cfg.MaxStreamFollowers; max > 0 && s.streamFollowed[key] >= max {
		return fmt.Errorf("%w: the stream has %d (limit %d)", errTooManyFollowers, s.streamFollowed[key], max)
	}
	s.streamFollowed[key]++
	s.followers.Add(1)
	s.metrics.followers.WithLabelValues(kind).Inc()
	return nil
}

func (s *Server) removeFollower(key, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streamFollowed[key]--; s.streamFollowed[key] == 0 {
		delete(s.streamFollowed, key)
	}
	s.followers.Add(-1)
	s.metrics.followers.WithLabelValues(kind).Dec()
}

// serveClosed serves a closed stream as an ordinary file: Content-Length, ETag, and 206
// with Content-Range for a Range request, from the store at the reader's pace.
func (s *Server) serveClosed(w http.ResponseWriter, r *http.Request, st sluice.Stream, info sluice.Info, off int64, rng *byteRange) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Stream-Offset", strconv.FormatInt(off, 10))
	setInfo(h, info)
	content := io.NewSectionReader(readerAt{r.Context(), st}, 0, info.Length)
	if rng == nil {
		// The offset came from Last-Event-ID or ?offset: serve from it, and let no Range
		// header apply on top.
		r = r.Clone(r.Context())
		r.Header.Del("Range")
		content = io.NewSectionReader(readerAt{r.Context(), st}, off, info.Length-off)
	}
	if off == 0 || rng != nil {
		h.Set("ETag", `"`+info.Version+"-"+strconv.FormatInt(info.Length, 10)+`"`)
	}
	http.ServeContent(w, r, "", time.Time{}, content)
}

// readerAt reads a stream at any offset, copying views of the store's memory into p.
type readerAt struct {
	ctx context.Context
	st  sluice.Stream
}

func (a readerAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		b, _, _, err := a.st.Read(a.ctx, p[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		if len(b) == 0 {
			return n, io.EOF
		}
		n += copy(p[n:], b)
	}
	return n, nil
}
