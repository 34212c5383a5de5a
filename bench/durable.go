package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Durable Streams (github.com/durable-streams/durable-streams, PROTOCOL.md) is the open
// protocol that Sluice also speaks, at /v1/stream/{key}. With Config.Target
// "durable-streams" (any server of it) or Config.Protocol "durable-streams" (Sluice's
// side of it), a run drives its streams as the protocol's clients do, with the same
// lines and the same checks:
//
//   - each stream is created with PUT /v1/stream/{key}, Content-Type: text/plain: text,
//     so that SSE carries the lines as they are, not in base64;
//   - the producer POSTs each line as one message of that type (messages.go), each
//     answered 204 (or 200) before the next, and ends the stream with an empty POST with
//     Stream-Closed: true;
//   - SSE followers GET ?offset=-1&live=sse. The data lines of each "data" event, joined
//     with "\n", are bytes of the stream (a server splits text at its line ends, so the
//     newline at the end of a line is the empty data line after it), and each "control"
//     event's JSON says where the bytes so far end (streamNextOffset), the last one with
//     streamClosed: true, after which the server ends the response. Offsets are opaque
//     but ordered: a control event's must not be below the one before, and must be above
//     it when data came between. A server may end an event stream early (the protocol
//     advises every 60 s, for CDNs); the follower then GETs again from the last control
//     event's offset, as the protocol asks of clients, on the same connection if the
//     server kept it open;
//   - long-poll followers GET ?offset=-1, a catch-up read (they count as connected when
//     it is answered), then ?offset=X&live=long-poll&cursor=C again and again, X being the
//     last answer's Stream-Next-Offset and C its Stream-Cursor: 200 with bytes, or 204
//     when the server's wait ran out, until an answer says Stream-Closed: true.
//
// Every request of a follower goes on one keep-alive connection (msgConn), which it
// dials again if the server closes it.

// durableContentType is the content type of the streams a run creates in Durable Streams.
const durableContentType = "text/plain"

// maxControl bounds the JSON of a control event: an offset, a cursor and two flags.
const maxControl = 1 << 10

// control is what a follower reads of a control event.
type control struct {
	Next   string `json:"streamNextOffset"`
	Closed bool   `json:"streamClosed"`
}

// closeDurable ends a stream in Durable Streams: an empty POST with Stream-Closed: true,
// which the answer confirms.
func closeDurable(m *msgConn, path string) error {
	resp, err := m.do(http.MethodPost, path, "Stream-Closed: true\r\n", nil)
	switch {
	case err != nil:
		return fmt.Errorf("close the stream: %w", err)
	case resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK:
		return fmt.Errorf("close the stream: %s", resp.Status)
	case !strings.EqualFold(resp.Header.Get("Stream-Closed"), "true"):
		return errors.New("close the stream: the answer lacks Stream-Closed: true")
	}
	return nil
}

// controlData collects a piece of the current control event's data.
func (r *sseReader) controlData(p []byte) {
	if len(r.ctl)+len(p) > maxControl {
		r.v.fail(fmt.Sprintf("a control event of more than %d bytes", maxControl))
		return
	}
	r.ctl = append(r.ctl, p...)
}

// durableEvent checks a Durable Streams event at its end: a control event's offset, and
// whether it closes the stream.
func (r *sseReader) durableEvent() {
	defer func() { r.ctl = r.ctl[:0] }()
	if r.typ != 'c' {
		r.unsettled = true
		return
	}
	var c control
	if err := json.Unmarshal(r.ctl, &c); err != nil {
		r.v.fail(fmt.Sprintf("a control event that is not JSON: %v", err))
		return
	}
	if why := offsetProblem(r.next, c.Next, r.unsettled); why != "" {
		r.v.fail("control event: " + why)
	}
	r.next, r.unsettled, r.ended = c.Next, false, c.Closed
	r.controls++
}

// between reports whether the reader is between events: not in one, nor in a line.
func (r *sseReader) between() bool { return r.typ == 0 && !r.hasData && r.cont == 0 }

// offsetProblem says what is wrong with the offset next that a server gave after prev
// ("" for none yet), grew telling whether bytes came between: "" if nothing is.
func offsetProblem(prev, next string, grew bool) string {
	switch {
	case next == "" || next == "-1" || next == "now":
		return fmt.Sprintf("offset %q is not one of a stream's", next)
	case next < prev:
		return fmt.Sprintf("offset %q after %q: offsets never go back", next, prev)
	case grew && next == prev:
		return fmt.Sprintf("offset %q again after more bytes", next)
	}
	return ""
}

// durableFollow is a Durable Streams follower, SSE or long-poll.
type durableFollow struct {
	m      *msgConn
	cancel context.CancelFunc // ends its requests: close
	path   string             // the stream's
	resp   *http.Response     // the answer being read, its head checked
	next   string             // the last offset the server gave ("": none yet)
	cursor string             // long-poll: the last Stream-Cursor, to echo

	sse   *sseReader    // an SSE follower's, kept from one event stream to the next
	lines *bufio.Reader // of the event stream
	buf   []byte        // a long-poll follower's
}

// openDurable connects f to the stream at path with its first GET, and reads the
// answer's head, within the target's timeout; its connection's deadline is then the
// run's.
func openDurable(ctx context.Context, t *target, f *follower, path, id string, deadline time.Time) (*durableFollow, error) {
	ctx, cancel := context.WithCancel(ctx)
	d := &durableFollow{path: path, cancel: cancel}
	d.m = &msgConn{t: t, ctx: ctx, i: f.id, id: id, deadline: time.Now().Add(t.timeout)}
	if d.m.deadline.After(deadline) {
		d.m.deadline = deadline
	}
	if f.kind == "sse" {
		d.sse, d.lines = newSSEReader(&f.v, ProtocolDurable), bufio.NewReaderSize(nil, readBuf)
	} else {
		d.buf = make([]byte, readBuf)
	}
	var err error
	if d.resp, err = d.get(); err != nil {
		cancel()
		return nil, err
	}
	d.m.setDeadline(deadline)
	return d, nil
}

func (d *durableFollow) close() { d.cancel() }

// read reads answer after answer until one ends the stream.
func (d *durableFollow) read(f *follower) error {
	for {
		var err error
		if d.sse != nil {
			err = d.events(f)
		} else {
			err = d.poll(f)
		}
		d.m.done(d.resp, err)
		if err != nil || f.ended {
			return err
		}
		if d.resp, err = d.get(); err != nil {
			return err
		}
		f.requests++
	}
}

// get sends the follower's next GET, from the last offset the server gave, and checks
// the answer's head.
func (d *durableFollow) get() (*http.Response, error) {
	uri, header := d.path+"?offset=-1", ""
	if d.next != "" {
		uri = d.path + "?offset=" + url.QueryEscape(d.next)
	}
	switch {
	case d.sse != nil:
		uri, header = uri+"&live=sse", "Accept: text/event-stream\r\n"
	case d.next != "" && d.cursor != "":
		uri += "&live=long-poll&cursor=" + url.QueryEscape(d.cursor)
	case d.next != "":
		uri += "&live=long-poll"
	}
	resp, err := d.m.request(http.MethodGet, uri, header, nil)
	if err != nil {
		return nil, err
	}
	h := resp.Header
	switch {
	case resp.StatusCode == http.StatusNoContent && d.sse == nil && d.next != "": // the wait ran out
	case resp.StatusCode != http.StatusOK:
		err = statusError(resp)
	case d.sse == nil:
	case !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream"):
		err = fmt.Errorf("Content-Type %q, want text/event-stream", h.Get("Content-Type"))
	case h.Get("Stream-SSE-Data-Encoding") != "":
		err = fmt.Errorf("Stream-SSE-Data-Encoding %q for a %s stream", h.Get("Stream-SSE-Data-Encoding"), durableContentType)
	}
	if err != nil {
		d.m.done(resp, err)
		return nil, err
	}
	return resp, nil
}

// events reads an event stream to its end. One that the server ends early, between
// events and after a control event, is resumed at that event's offset.
func (d *durableFollow) events(f *follower) error {
	r, controls := d.sse, d.sse.controls
	d.lines.Reset(d.resp.Body)
	switch err := feedLines(d.lines, r); {
	case err != io.EOF:
		return err
	case r.ended:
		f.ended = true
		return nil
	case !r.between():
		return errors.New("the event stream ended in the middle of an event")
	case r.unsettled:
		return errors.New("the event stream ended after data without its control event")
	case r.controls == controls:
		return errors.New("the event stream ended without a control event")
	}
	d.next = r.next
	return nil
}

// poll reads the answer to a catch-up read or a long-poll: its bytes, and where the
// next request starts.
func (d *durableFollow) poll(f *follower) error {
	before := f.v.n
	if err := consumeAll(d.resp.Body, d.buf, &f.v); err != nil {
		return err
	}
	h := d.resp.Header
	next := h.Get("Stream-Next-Offset")
	if why := offsetProblem(d.next, next, f.v.n > before); why != "" {
		return errors.New("Stream-Next-Offset: " + why)
	}
	d.next, d.cursor = next, h.Get("Stream-Cursor")
	f.ended = strings.EqualFold(h.Get("Stream-Closed"), "true")
	return nil
}
