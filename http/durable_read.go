package http

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
)

// durableHead serves HEAD /v1/stream/{key}: the stream's configuration and end. It
// renews no TTL: polling HEAD must see a stream expire.
func (s *Server) durableHead(w http.ResponseWriter, r *http.Request, key string) {
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	info := st.Info()
	st.Release()
	h := w.Header()
	setConfig(h, info.Config)
	setNext(h, info)
	h.Set("Cache-Control", "no-store")
	h.Set("ETag", etag(info, info.Length, info.Length))
	w.WriteHeader(http.StatusOK)
}

// readRequest is what a GET /v1/stream/{key} asks for.
type readRequest struct {
	offset string // as given; "" for none
	live   string // "", "long-poll" or "sse"
	cursor string
}

func parseRead(r *http.Request) (readRequest, error) {
	q := r.URL.Query()
	req := readRequest{live: q.Get("live"), cursor: q.Get("cursor")}
	offs, has := q["offset"]
	switch {
	case len(offs) > 1:
		return req, fmt.Errorf("%w: offset given %d times", errBadRequest, len(offs))
	case has && offs[0] == "":
		return req, fmt.Errorf("%w: empty offset", errBadRequest)
	case has:
		req.offset = offs[0]
	}
	switch req.live {
	case "":
	case "long-poll", "sse":
		if !has {
			return req, fmt.Errorf("%w: live=%s needs an offset", errBadRequest, req.live)
		}
	default:
		return req, fmt.Errorf("%w: live=%q: want long-poll or sse", errBadRequest, req.live)
	}
	return req, nil
}

// durableRead serves GET /v1/stream/{key}: a catch-up read, a long-poll or SSE.
func (s *Server) durableRead(w http.ResponseWriter, r *http.Request, key string) {
	req, err := parseRead(r)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	// The stream is released however this ends, a catch-up cut short by a vanished
	// client (http.ErrAbortHandler) included, unless an SSE follower took it over.
	kept := false
	defer func() {
		if !kept {
			st.Release()
		}
	}()
	off := int64(0)
	if req.offset != "" {
		if off, err = parseOffset(req.offset, st.Info().Length); err != nil {
			s.durableFail(w, r, err)
			return
		}
	}
	// A read renews the stream's TTL, whatever it returns.
	_, info, changed, err := st.Read(r.Context(), nil, min(off, st.Info().Length))
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	off = min(off, info.Length)
	switch req.live {
	case "sse":
		kept = s.durableSSE(w, r, key, st, off)
	case "long-poll":
		s.longPoll(w, r, key, st, off, changed, req.cursor)
	default:
		s.catchUp(w, r, st, info, off, req.offset == "now", "")
	}
}

// longPoll answers at once with what the stream holds past off, or with the stream
// closed there; else it waits, in turns with the stream's other followers, until the
// stream grows (200), closes, or LongPollTimeout passes (204).
func (s *Server) longPoll(w http.ResponseWriter, r *http.Request, key string, st sluice.Stream, off int64, changed <-chan struct{}, cursor string) {
	m, err := s.fan.Join(key)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	defer m.Leave()
	s.metrics.followers.WithLabelValues("long-poll").Inc()
	defer s.metrics.followers.WithLabelValues("long-poll").Dec()
	deadline := time.Now().Add(s.cfg.LongPollTimeout)
	for {
		_, info, next, err := st.Read(r.Context(), nil, off)
		if err != nil {
			s.durableFail(w, r, err)
			return
		}
		if off < info.Length {
			s.catchUp(w, r, st, info, off, false, nextCursor(cursor, time.Now()))
			return
		}
		left := time.Until(deadline)
		if info.Closed || left <= 0 {
			h := w.Header()
			setNext(h, info)
			h.Set("Stream-Up-To-Date", "true")
			if !info.Closed {
				h.Set("Stream-Cursor", nextCursor(cursor, time.Now()))
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if changed == nil {
			changed = next
		}
		if !s.fan.Wait(r.Context(), m, changed, left) {
			if r.Context().Err() != nil {
				return // the client went
			}
			// Timed out, or the server drains, or End ended the stream's followers:
			// answer now with what the stream is (a 404 if it was purged, a 204 with
			// its offset else), and the client asks again.
			deadline = time.Now()
		}
		changed = nil
	}
}

// catchUp answers with the stream's bytes from off on: at most MaxRead of them, or
// whole JSON messages (as one JSON array), with where they end, whether that is the
// stream's end, and an ETag, so that an unchanged read gets 304. now (offset=now) is a
// read at the end, which no cache may keep.
func (s *Server) catchUp(w http.ResponseWriter, r *http.Request, st sluice.Stream, info sluice.Info, off int64, now bool, cursor string) {
	end := min(info.Length, off+s.cfg.MaxRead)
	records := info.Config.Records()
	if records && end < info.Length {
		var err error
		if end, err = recordCut(r.Context(), st, off, end, info.Length); err != nil {
			s.durableFail(w, r, err)
			return
		}
	}
	h := w.Header()
	setConfig(h, info.Config)
	h.Set("Stream-Next-Offset", formatOffset(end))
	upToDate := end == info.Length
	if upToDate {
		h.Set("Stream-Up-To-Date", "true")
		if info.Closed {
			h.Set("Stream-Closed", "true")
		}
	}
	if cursor != "" {
		h.Set("Stream-Cursor", cursor)
	}
	switch {
	case now:
		h.Set("Cache-Control", "no-store")
	case !upToDate:
		// Bytes before the end never change: a cache may keep them.
		h.Set("Cache-Control", "public, max-age=60, stale-while-revalidate=300")
	}
	if !now {
		tag := etag(info, off, end)
		h.Set("ETag", tag)
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	n := end - off
	if records {
		n++ // "[" and "]" for the messages' ends, "," between them
		if end == off {
			n = 2
		}
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		s.copyRange(w, r.Context(), st, off, end, records)
	}
}

// copyRange writes the stream's bytes from off to end to w; for JSON records, as a
// JSON array: '[', each record with its '\n' turned into ',', the last into ']'.
func (s *Server) copyRange(w http.ResponseWriter, ctx context.Context, st sluice.Stream, off, end int64, records bool) {
	if records {
		w.Write([]byte("["))
		if off == end {
			w.Write([]byte("]"))
			return
		}
	}
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	for off < end {
		b, _, _, err := st.Read(ctx, (*bp)[:min(int64(len(*bp)), end-off)], off)
		if err != nil || len(b) == 0 {
			logger(ctx).Warn("durable read cut short", "err", err)
			panic(http.ErrAbortHandler) // the client sees a response shorter than its length
		}
		b = b[:min(int64(len(b)), end-off)]
		off += int64(len(b))
		if records {
			c := (*bp)[:copy(*bp, b)]
			for i, x := range c {
				if x == '\n' {
					c[i] = ','
					if off == end && i == len(c)-1 {
						c[i] = ']'
					}
				}
			}
			b = c
		}
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// copyPool holds the buffers that catch-up reads copy through.
var copyPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// recordCut returns where a read of a JSON stream from off that may go up to end
// stops: after the last whole message before end, or after the first message if that
// alone goes past end.
func recordCut(ctx context.Context, st sluice.Stream, off, end, length int64) (int64, error) {
	buf := make([]byte, 32<<10)
	for hi := end; hi > off; {
		lo := max(off, hi-int64(len(buf)))
		b, _, _, err := st.Read(ctx, buf[:hi-lo], lo)
		if err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b[:min(int64(len(b)), hi-lo)], '\n'); i >= 0 {
			return lo + int64(i) + 1, nil
		}
		hi = lo
	}
	return recordEnd(ctx, st, off, length, buf)
}

// etag names the bytes from off to end of the stream's version, and whether they end
// the stream closed, so that a stream's close changes it too.
func etag(info sluice.Info, off, end int64) string {
	tag := `"` + info.Version + ":" + strconv.FormatInt(off, 10) + ":" + strconv.FormatInt(end, 10)
	if info.Closed && end == info.Length {
		tag += ":c"
	}
	return tag + `"`
}
