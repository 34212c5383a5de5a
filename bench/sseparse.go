package bench

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"time"
)

// sseReader turns a Sluice event stream back into stream bytes as its lines arrive,
// without holding an event: a follower keeps only a 4 KiB line buffer, however long the
// events. It checks the framing the contract promises (PROTOCOL.md, "Server-Sent
// Events"): every event's id is the offset just after its bytes, base64 events decode,
// the stream ends with "event: end" whose id is the length, and nothing comes after it.
// The data lines of an event, joined with "\n", are its bytes, so each data line but the
// first is passed on after a "\n".
//
// Following Nchan (proto nchan), the same holds but for two things: an event's id is
// Nchan's message id ("1767312000:3"), not an offset, so only its presence is checked;
// and the end of the stream is the comment ":410: 410 Gone" that Nchan sends when the
// channel is deleted, before it closes the response.
//
// In Durable Streams (proto durable-streams) the events are "data", whose data lines
// joined with "\n" are bytes of the stream, and "control", whose JSON says where they
// end (durable.go).
type sseReader struct {
	v       *verifier
	proto   string          // busl, nchan or durable-streams: whose framing
	types   map[string]byte // the event types of that framing
	typ     byte            // of the current event: 0 bytes (text), 'b' base64, 'e' end, 'c' control
	hasData bool            // the current event had a data line
	id      [20]byte
	idLen   int  // -1: the current event has no id yet
	cont    byte // a line longer than the buffer continues: 'd' data, 's' skipped
	carry   [4]byte
	carryN  int    // base64 characters waiting for a full group of four
	out     []byte // decoded base64, allocated at the first base64 event
	ended   bool   // the end event arrived

	// Durable Streams: the data of the current control event, the streamNextOffset of
	// the last, how many there were, and whether data events came after it.
	ctl       []byte
	next      string
	controls  int
	unsettled bool
}

var newline = []byte{'\n'}

// buslEvents and durableEvents are the SSE event types ("event: " lines) of busl's
// framing (and Nchan's, whose events have none), and of Durable Streams', and the type
// byte each sets.
var (
	buslEvents    = map[string]byte{"": 0, "base64": 'b', "end": 'e'}
	durableEvents = map[string]byte{"data": 0, "control": 'c'}
)

// newSSEReader returns a reader of proto's event streams that passes bytes on to v.
func newSSEReader(v *verifier, proto string) *sseReader {
	r := &sseReader{v: v, proto: proto, types: buslEvents, idLen: -1}
	if proto == ProtocolDurable {
		r.types = durableEvents
	}
	return r
}

// line takes the next line, or a piece of it when it is longer than the buffer:
// complete is false for every piece but the last, which ends in "\n".
func (r *sseReader) line(frag []byte, complete bool, now time.Time) {
	line := frag
	if complete {
		line = frag[:len(frag)-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		r.v.fail("a CR in the event stream: bytes SSE cannot carry must be base64")
	}
	if r.cont != 0 {
		if r.cont == 'd' {
			r.emit(line, now)
		}
		if complete {
			r.cont = 0
		}
		return
	}
	if len(line) == 0 {
		r.dispatch()
		return
	}
	if line[0] == ':' { // a comment: the keepalive, or Nchan's end
		if !complete {
			r.cont = 's'
		}
		if r.proto == protocolNchan && bytes.HasPrefix(line, []byte(":410")) {
			r.ended = true
		}
		return
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], bytes.TrimPrefix(line[i+1:], []byte(" "))
	}
	if !complete && string(name) != "data" {
		r.v.fail(fmt.Sprintf("an SSE %q line longer than the line buffer", name))
		r.cont = 's'
		return
	}
	switch string(name) {
	case "data":
		r.data(value, now)
		if !complete {
			r.cont = 'd'
		}
	case "id":
		if len(value) > len(r.id) && r.proto == ProtocolBusl {
			r.v.fail(fmt.Sprintf("event id %q is not an offset", value))
			return
		}
		r.idLen = copy(r.id[:], value)
	case "event":
		if r.hasData {
			r.v.fail("an event field after the event's data")
		}
		typ, ok := r.types[string(value)]
		if !ok {
			r.v.fail(fmt.Sprintf("unknown event type %q", value))
		}
		r.typ = typ
	}
}

// data starts a data line of the current event.
func (r *sseReader) data(value []byte, now time.Time) {
	if r.ended {
		r.v.fail("data after the end event")
	}
	switch {
	case r.typ == 'e':
		if len(value) > 0 {
			r.v.fail("the end event carries data")
		}
	case r.hasData && r.typ == 'b':
		r.v.fail("a base64 event with more than one data line")
	case r.hasData:
		r.emit(newline, now)
	}
	r.hasData = true
	if r.typ != 'e' {
		r.emit(value, now)
	}
}

// emit passes on a piece of a data line: as is for text, decoded for base64; a control
// event's is kept until the event ends.
func (r *sseReader) emit(p []byte, now time.Time) {
	switch {
	case r.typ == 'c':
		r.controlData(p)
		return
	case r.typ != 'b':
		if len(p) > 0 {
			r.v.consume(p, now)
		}
		return
	}
	if r.out == nil {
		r.out = make([]byte, 3<<10)
	}
	for len(p) > 0 {
		if r.carryN > 0 || len(p) < 4 {
			k := copy(r.carry[r.carryN:], p)
			r.carryN += k
			p = p[k:]
			if r.carryN < 4 {
				return
			}
			r.decode(r.carry[:], now)
			r.carryN = 0
			continue
		}
		k := min(len(p)/4*4, len(r.out)/3*4)
		r.decode(p[:k], now)
		p = p[k:]
	}
}

func (r *sseReader) decode(src []byte, now time.Time) {
	n, err := base64.StdEncoding.Decode(r.out, src)
	if err != nil {
		r.v.fail(fmt.Sprintf("a base64 event that does not decode: %v", err))
		return
	}
	r.v.consume(r.out[:n], now)
}

// dispatch ends an event at a blank line and checks its id against the bytes received
// (in Durable Streams, which has no ids, its control event: durableEvent).
func (r *sseReader) dispatch() {
	if r.hasData && r.proto == ProtocolDurable {
		r.durableEvent()
	} else if r.hasData {
		switch id, ok := parseDigits(r.id[:max(r.idLen, 0)]); {
		case r.idLen < 0:
			r.v.fail(fmt.Sprintf("an event without an id after byte %d", r.v.n))
		case r.proto == protocolNchan: // Nchan's message ids are not offsets
		case !ok || id != r.v.n:
			r.v.fail(fmt.Sprintf("event id %q after %d bytes: the id must be the offset after the event", r.id[:r.idLen], r.v.n))
		}
		if r.carryN != 0 {
			r.v.fail("a base64 event whose length is not a multiple of 4")
		}
		if r.typ == 'e' {
			r.ended = true
		}
	}
	r.typ, r.hasData, r.idLen, r.carryN = 0, false, -1, 0
}
