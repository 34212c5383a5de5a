package http

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// The Durable Streams form of Server-Sent Events: each run of bytes is an event "data"
// (text as data: lines, a JSON stream's messages as one JSON array, other bytes as one
// base64 line), followed at once by an event "control" that says where the run ends
// (streamNextOffset), with a cursor, whether the client is up to date, and at the end
// of a closed stream that it is (streamClosed), after which the response ends:
//
//	event: data
//	data:hello
//
//	event: control
//	data:{"streamNextOffset":"0000000000000000_0000000000000005","streamCursor":"3392760","upToDate":true}
//
// Its followers are served by the same fan-out as busl's (internal/fanout), on their
// hijacked connection.

// durableSSE serves a live=sse read of st from off. It reports whether a follower now
// owns st (else the caller releases it).
func (s *Server) durableSSE(w http.ResponseWriter, r *http.Request, key string, st sluice.Stream, off int64) bool {
	m, err := s.fan.Join(key)
	if err != nil {
		s.durableFail(w, r, err)
		return false
	}
	info := st.Info()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	binary := !info.Config.Records() && !strings.HasPrefix(mediaType(info.Config), "text/")
	if binary {
		h.Set("Stream-SSE-Data-Encoding", "base64")
	}
	f := &follower{s: s, m: m, st: st, kind: "durable-sse", off: off, end: -1, follow: true,
		done: requestOf(r.Context()).handOff(), cursor: r.URL.Query().Get("cursor"), binary: binary}
	return s.hijackFollower(w, r, f)
}

// durableEvents is the Transport of a Durable Streams SSE follower.
type durableEvents struct {
	wire      *fanout.Wire
	cfg       Config
	records   bool   // the stream's messages go as JSON arrays
	binary    bool   // its bytes go as base64
	cursor    string // the client's, then the last one sent
	pending   []byte // the start of a JSON message not yet whole
	closed    bool   // the control event of the stream's end went out
	lastWrite time.Time
}

// newDurableEvents starts the event stream of a follower at off of a stream in state
// info: a first control event if there is nothing to send yet.
func newDurableEvents(wi *fanout.Wire, cfg Config, info sluice.Info, off int64, cursor string, binary bool) (*durableEvents, error) {
	t := &durableEvents{wire: wi, cfg: cfg, records: info.Config.Records(), binary: binary, cursor: cursor, lastWrite: time.Now()}
	if off < info.Length {
		return t, wi.Flush() // the head; the first events come with the bytes
	}
	if err := wi.Commit(t.appendControl(wi.Buffer(), info, off)); err != nil {
		return nil, err
	}
	return t, wi.Flush()
}

func (t *durableEvents) Write(b []byte, off int64, info sluice.Info, final bool) (int, error) {
	n := len(b)
	run := b
	switch {
	case t.records:
		// Only whole messages go out; the start of one is kept for the next write.
		start := off - int64(len(t.pending))
		run = append(t.pending, b...)
		cut := sluice.WholeRecords(run)
		t.pending = bytes.Clone(run[cut:])
		run, off = run[:cut], start
	case !t.binary && !final:
		// A character split across writes waits for its end, so that text stays UTF-8.
		n -= partialRune(b)
		run = b[:n]
	}
	if len(run) == 0 {
		return n, nil
	}
	out := t.appendData(t.wire.Buffer(), run)
	out = t.appendControl(out, info, off+int64(len(run)))
	t.lastWrite = time.Now()
	return n, t.wire.Commit(out)
}

// appendData appends the event "data" of run.
func (t *durableEvents) appendData(dst, run []byte) []byte {
	dst = append(dst, "event: data\n"...)
	switch {
	case t.records:
		dst = append(dst, "data:["...)
		for i, rec := range bytes.SplitAfter(run[:len(run)-1], []byte("\n")) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, bytes.TrimSuffix(rec, []byte("\n"))...)
		}
		dst = append(dst, "]\n"...)
	case t.binary:
		dst = append(dst, "data:"...)
		dst = base64.StdEncoding.AppendEncode(dst, run)
		dst = append(dst, '\n')
	default:
		// Lines end at \r\n, \r or \n, as SSE parsers split them, so that no line of the
		// stream can pass for a field of its own.
		for _, line := range splitLines(run) {
			dst = append(dst, "data:"...)
			dst = append(dst, line...)
			dst = append(dst, '\n')
		}
	}
	return append(dst, '\n')
}

// control is the JSON of an event "control".
type control struct {
	StreamNextOffset string `json:"streamNextOffset"`
	StreamCursor     string `json:"streamCursor,omitempty"`
	UpToDate         bool   `json:"upToDate,omitempty"`
	StreamClosed     bool   `json:"streamClosed,omitempty"`
}

// appendControl appends the event "control" for a follower that has the stream up to
// next.
func (t *durableEvents) appendControl(dst []byte, info sluice.Info, next int64) []byte {
	c := control{StreamNextOffset: formatOffset(next), UpToDate: next >= info.Length}
	if info.Closed && next >= info.Length {
		c.StreamClosed, t.closed = true, true
	} else {
		t.cursor = nextCursor(t.cursor, time.Now())
		c.StreamCursor = t.cursor
	}
	b, _ := json.Marshal(c)
	dst = append(dst, "event: control\ndata:"...)
	dst = append(dst, b...)
	return append(dst, "\n\n"...)
}

func (t *durableEvents) Flush() error { return t.wire.Flush() }

// Keepalive checks that the follower is still there and sends it a comment if it would
// otherwise go without a byte for longer than the keepalive interval.
func (t *durableEvents) Keepalive() error {
	if !t.wire.Alive() {
		return fanout.ErrGone
	}
	if time.Since(t.lastWrite)+t.Idle() <= t.cfg.SSEKeepalive {
		return nil
	}
	t.lastWrite = time.Now()
	if err := t.wire.Commit(append(t.wire.Buffer(), ":\n\n"...)); err != nil {
		return err
	}
	return t.wire.Flush()
}

func (t *durableEvents) Idle() time.Duration { return min(t.cfg.SSEKeepalive, t.cfg.ProbeInterval) }

// end tells a follower the stream is closed, unless it was told with the last bytes,
// and ends the response.
func (t *durableEvents) end(info sluice.Info) {
	if !t.closed && t.wire.Commit(t.appendControl(t.wire.Buffer(), info, info.Length)) != nil {
		t.wire.Abort()
		return
	}
	t.wire.End()
}

// splitLines splits text at \r\n, \r and \n.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			return append(lines, b)
		}
		lines = append(lines, b[:i])
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
}

// partialRune is the length of an incomplete UTF-8 sequence at the end of p: 0 to 3
// bytes that could still become a character.
func partialRune(p []byte) int {
	for n := 1; n <= min(utf8.UTFMax-1, len(p)); n++ {
		c := p[len(p)-n]
		if !utf8.RuneStart(c) {
			continue
		}
		if want := runeLen(c); want > n {
			return n
		}
		return 0
	}
	return 0
}

// runeLen is the length of the UTF-8 sequence that starts with c.
func runeLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	case c >= 0xC0:
		return 2
	}
	return 1
}
