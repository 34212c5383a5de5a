package http

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// subscribe serves GET /streams/{key}. See docs/protocol.md, "Following".
func (s *Server) subscribe(w http.ResponseWriter, r *http.Request, key string) {
	req, err := parseSubscribe(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.kind == "html" {
		s.serveViewer(w, r, key) // a browser: the web viewer page (viewer.go)
		return
	}
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.follow(w, r, key, st, req) {
		st.Release()
	}
}

// subscription is what a GET /streams/{key} asks for.
type subscription struct {
	off    int64      // the first byte
	rng    *byteRange // the Range it came from, if any
	follow bool       // wait for more once caught up
	kind   string     // raw, sse, websocket or html
}

func parseSubscribe(r *http.Request) (subscription, error) {
	var req subscription
	var err error
	if req.off, req.rng, err = startOffset(r); err != nil {
		return req, err
	}
	if req.follow, err = parseBool("follow", r.URL.Query().Get("follow"), true); err != nil {
		return req, err
	}
	req.kind, err = transportKind(r)
	return req, err
}

// follow answers a subscription to st: a closed stream's end or file, or a follower.
// It reports whether a follower now owns st (else the caller releases it).
func (s *Server) follow(w http.ResponseWriter, r *http.Request, key string, st sluice.Stream, req subscription) bool {
	info := st.Info()
	off, end := req.off, int64(-1)
	if req.rng != nil {
		if req.rng.suffix >= 0 {
			off = max(0, info.Length-req.rng.suffix)
		}
		end = req.rng.end
	}
	if info.Closed {
		switch {
		case off > info.Length:
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(info.Length, 10))
			setInfo(w.Header(), info)
			http.Error(w, fmt.Sprintf("offset %d is beyond the closed stream's length %d", off, info.Length), http.StatusRequestedRangeNotSatisfiable)
			return false
		case off == info.Length:
			setInfo(w.Header(), info)
			w.WriteHeader(http.StatusNoContent)
			return false
		case req.kind == "raw":
			s.serveClosed(w, r, st, info, off, req.rng)
			return false
		}
	}
	// Followers are never compressed, whatever Accept-Encoding says: they flush every
	// write as it comes, and an encoder would either hold bytes back or, flushed at each
	// write, add its framing to every run of a few bytes for little gain.
	m, err := s.fan.Join(key)
	if err != nil {
		s.fail(w, r, err)
		return false
	}
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Stream-Offset", strconv.FormatInt(off, 10))
	setInfo(h, info)
	if req.kind == "sse" {
		h.Set("Content-Type", "text/event-stream")
	} else if req.kind == "raw" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
	}
	f := &follower{s: s, m: m, st: st, key: key, kind: req.kind, off: off, end: end, follow: req.follow, done: requestOf(r.Context()).handOff()}
	return s.hijackFollower(w, r, f)
}

// follower is a follower on its hijacked connection: raw, SSE, Durable Streams SSE or
// WebSocket.
type follower struct {
	s        *Server
	m        *fanout.Member
	st       sluice.Stream
	key      string
	kind     string    // raw, sse, durable-sse or websocket
	in       io.Reader // websocket: what the client sends
	off, end int64
	follow   bool
	done     func(status int, bytes int64, attrs ...any) // logs the request when it ends
	cursor   string                                      // durable-sse: the client's cursor
	binary   bool                                        // durable-sse: bytes go as base64
}

// hijackFollower takes the connection of w and serves f on it: the Fanout owns the
// follower (a shutdown waits for it, and closes its connection after the grace), and
// parks it while it waits, without a goroutine, which frees the request's goroutine and
// net/http's buffers. It reports whether the follower owns st (and releases it). An
// HTTP/2 request's connection carries other requests and cannot be taken: its follower
// is served through the ResponseWriter, in the request's goroutine, before it returns.
func (s *Server) hijackFollower(w http.ResponseWriter, r *http.Request, f *follower) bool {
	s.metrics.followers.WithLabelValues(f.kind).Inc()
	hold := s.fan.Hold() // before the hijack, while http.Server.Shutdown still waits for it
	flushed, sent := s.metrics.flushSeconds, s.metrics.bytesOut.WithLabelValues(f.kind)
	if r.ProtoMajor >= 2 {
		defer hold()
		wi, err := fanout.Stream(w, r, s.cfg.WriteTimeout, flushed, sent)
		if err != nil {
			f.lost(err)
			return false
		}
		f.run(r.Context(), wi)
		return true
	}
	var wi *fanout.Wire
	var err error
	if f.kind == "websocket" {
		wi, f.in, err = s.upgrade(w, r)
	} else {
		wi, err = fanout.Hijack(w, r, s.cfg.WriteTimeout, flushed, sent)
	}
	if err != nil {
		hold()
		f.lost(err)
		return false
	}
	t, err := f.transport(wi)
	if err != nil {
		defer hold()
		f.stop(wi, nil, fanout.OutcomeGone, f.off)
		return true
	}
	s.fan.Serve(&fanout.Follower{
		Member: f.m, Stream: f.st, Transport: t, Wire: wi, Off: f.off, End: f.end, Follow: f.follow,
		Finish: func(o fanout.Outcome, reached int64) {
			defer hold()
			f.stop(wi, t, o, reached)
		},
	})
	return true
}

// lost ends a follower whose response could not start.
func (f *follower) lost(err error) {
	f.m.Leave()
	f.s.metrics.followers.WithLabelValues(f.kind).Dec()
	f.done(f.status(), 0, "outcome", "lost", "err", err)
}

// status is the status of the follower's response, for its log line.
func (f *follower) status() int {
	if f.kind == "websocket" {
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK
}

// run follows the stream until ctx is done, in the request's goroutine (HTTP/2).
func (f *follower) run(ctx context.Context, wi *fanout.Wire) {
	t, err := f.transport(wi)
	if err != nil {
		f.stop(wi, nil, fanout.OutcomeGone, f.off)
		return
	}
	outcome, reached := f.s.fan.Follow(ctx, f.m, f.st, t, f.off, f.end, f.follow)
	f.stop(wi, t, outcome, reached)
}

// stop ends the response as the outcome says, logs the request and releases what the
// follower holds; the deferred calls run even when an HTTP/2 Abort panics.
func (f *follower) stop(wi *fanout.Wire, t fanout.Transport, outcome fanout.Outcome, reached int64) {
	defer f.st.Release()
	defer f.m.Leave()
	defer f.s.metrics.followers.WithLabelValues(f.kind).Dec()
	defer func() {
		f.done(f.status(), wi.Sent(), "outcome", outcomeName[outcome], "from", f.off, "to", reached)
	}()
	if outcome == fanout.OutcomeStalled {
		f.s.metrics.slowDropped.Inc()
	}
	f.finish(wi, t, outcome)
}

// transport starts the follower's response body in its framing.
func (f *follower) transport(wi *fanout.Wire) (fanout.Transport, error) {
	switch f.kind {
	case "sse":
		return newSSE(wi, f.s.cfg)
	case "durable-sse":
		return newDurableEvents(wi, f.s.cfg, f.st.Info(), f.off, f.cursor, f.binary)
	case "websocket":
		return newWebSocket(wi, f.in, f.s.cfg, func() { f.s.fan.Wake(f.key) }), nil
	}
	return &raw{wire: wi, probe: f.s.cfg.ProbeInterval}, nil
}

// finish ends the response as the outcome says.
func (f *follower) finish(wi *fanout.Wire, t fanout.Transport, outcome fanout.Outcome) {
	if ws, ok := t.(*webSocket); ok {
		ws.end(outcome)
		return
	}
	switch {
	case outcome == fanout.OutcomeClosed:
		switch t := t.(type) {
		case *eventStream:
			t.endStream(f.st.Info().Length)
		case *durableEvents:
			t.end(f.st.Info())
		default:
			wi.End()
		}
	case outcome == fanout.OutcomeCaughtUp:
		wi.End()
	case f.kind == "durable-sse" && outcome != fanout.OutcomeGone && outcome != fanout.OutcomeStalled:
		wi.End() // the client reconnects from its last offset, and learns why
	case f.kind == "sse" && outcome == fanout.OutcomeDrained:
		wi.End() // cleanly, without the end event, so that EventSource reconnects
	default:
		// Raw: abort, so the client sees an incomplete response and resumes from what it
		// counted; a clean end would mean "stream closed". SSE: after a purge, the
		// reconnect gets a 404 and stops.
		wi.Abort()
	}
}

// outcomeName names outcomes in the request log.
var outcomeName = map[fanout.Outcome]string{
	fanout.OutcomeClosed:   "closed",
	fanout.OutcomeCaughtUp: "caught_up",
	fanout.OutcomeDrained:  "drained",
	fanout.OutcomePurged:   "purged",
	fanout.OutcomeEnded:    "ended",
	fanout.OutcomeGone:     "gone",
	fanout.OutcomeStalled:  "stalled",
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

// serveClosed serves a closed stream as an ordinary file: Content-Length, ETag, and 206
// with Content-Range for a Range request, from the store at the reader's pace. A whole
// read is compressed if the client accepts it (compress.go); a read from an offset or of
// a range never is, so that its bytes and Content-Range stay the stored ones.
func (s *Server) serveClosed(w http.ResponseWriter, r *http.Request, st sluice.Stream, info sluice.Info, off int64, rng *byteRange) {
	h := w.Header()
	setFileHeaders(h, info, off)
	if wholeRead(r) {
		h.Add("Vary", "Accept-Encoding")
		if c, release := s.compression(r, info); c != nil {
			defer release()
			if err := s.serveCompressed(w, r, st, info, c); err != nil { // compress.go
				// Abort, never end cleanly (the last chunk) short of the stream's end:
				// the client must see the response incomplete, as it would without
				// its Content-Length. The panic skips the caller's Release.
				st.Release()
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
	content := io.NewSectionReader(fanout.ReaderAt{Ctx: r.Context(), Stream: st}, 0, info.Length)
	if rng == nil {
		// The offset came from Last-Event-ID or ?offset: serve from it, and let no Range
		// header apply on top.
		r = r.Clone(r.Context())
		r.Header.Del("Range")
		content = io.NewSectionReader(fanout.ReaderAt{Ctx: r.Context(), Stream: st}, off, info.Length-off)
	}
	if off == 0 || rng != nil {
		h.Set("ETag", identityETag(info))
	}
	http.ServeContent(w, r, "", time.Time{}, content)
}

// setFileHeaders sets the headers of a closed stream read as a file from off.
func setFileHeaders(h http.Header, info sluice.Info, off int64) {
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Stream-Offset", strconv.FormatInt(off, 10))
	setInfo(h, info)
}
