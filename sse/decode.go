package sse

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// maxLine bounds both one line and the data of one event that the Decoder
// accepts. It is far above what AppendEvents writes (MaxEventData of base64
// is about 87 KiB), yet keeps a misbehaving server from exhausting memory.
const maxLine = 1 << 20

// ErrTooLong is returned by Decoder.Next for a line or an event's data longer
// than 1 MiB.
var ErrTooLong = errors.New("sse: line or event too long")

// Event is one decoded server-sent event.
type Event struct {
	// ID is the last event id the stream set, which persists across events
	// as in a browser's EventSource. For Sluice it is the stream offset just
	// after the event's bytes.
	ID string
	// Type is the event type: "" (a browser's "message") for text,
	// "base64" for bytes SSE cannot carry as text, "end" at the end.
	Type string
	// Data is the event's data lines joined with "\n".
	// It is not checked to be valid UTF-8.
	Data string
}

// Bytes returns the stream bytes an event carries: its data for a text
// event, the decoded base64 for Type "base64".
func (e Event) Bytes() ([]byte, error) {
	if e.Type != "base64" {
		return []byte(e.Data), nil
	}
	b, err := base64.StdEncoding.DecodeString(e.Data)
	if err != nil {
		return nil, fmt.Errorf("sse: event %s: %w", e.ID, err)
	}
	return b, nil
}

// Decoder reads events from an SSE stream.
type Decoder struct {
	r        *bufio.Reader
	line     []byte // a line spanning several buffer fills
	data     []byte // data lines of the pending event, each ending in '\n'
	typ      string
	id       string
	retry    time.Duration
	hasRetry bool
	pending  bool // a field was read since the last blank line
	skipLF   bool // the last line ended in '\r': a '\n' next belongs to it
	started  bool // the first line, which may begin with a BOM, was read
	err      error
}

// NewDecoder returns a Decoder that reads from r. Its memory use is bounded:
// a line or an event's data longer than 1 MiB makes Next fail with ErrTooLong.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// Retry returns the reconnection delay most recently set by a retry field,
// and whether one was set. Retry fields are recorded rather than returned
// as events because, as in a browser, they configure the connection and
// carry no stream bytes.
func (d *Decoder) Retry() (time.Duration, bool) {
	return d.retry, d.hasRetry
}

// Next returns the next event, following the WHATWG event-stream parsing
// rules: lines end at "\n", "\r\n" or "\r"; lines starting with ':' are
// comments; a blank line dispatches the event if it has a data field; "data"
// fields are joined with "\n"; a single space after the field's colon is
// dropped; unknown fields are ignored.
//
// At the end of the stream Next returns io.EOF, or io.ErrUnexpectedEOF if the
// stream ended inside an event, which is then discarded. Errors are sticky.
func (d *Decoder) Next() (Event, error) {
	if d.err != nil {
		return Event{}, d.err
	}
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && (d.pending || len(d.line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			d.err = err
			return Event{}, err
		}
		if !d.started {
			d.started = true
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		if len(line) == 0 {
			d.pending = false
			if len(d.data) == 0 {
				d.typ = ""
				continue
			}
			e := Event{ID: d.id, Type: d.typ, Data: string(d.data[:len(d.data)-1])}
			d.data, d.typ = d.data[:0], ""
			return e, nil
		}
		if err := d.field(line); err != nil {
			d.err = err
			return Event{}, err
		}
	}
}

// field processes one non-blank line.
func (d *Decoder) field(line []byte) error {
	if line[0] == ':' {
		return nil
	}
	d.pending = true
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		value = bytes.TrimPrefix(value, []byte(" "))
	}
	switch string(name) {
	case "data":
		if len(d.data)+len(value)+1 > maxLine {
			return ErrTooLong
		}
		d.data = append(d.data, value...)
		d.data = append(d.data, '\n')
	case "event":
		d.typ = string(value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.id = string(value)
		}
	case "retry":
		if ms, ok := parseMillis(value); ok {
			d.retry, d.hasRetry = time.Duration(ms)*time.Millisecond, true
		}
	}
	return nil
}

// parseMillis parses a retry value, which must be ASCII digits only.
// Values too large for a time.Duration are ignored.
func parseMillis(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	ms, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || ms > math.MaxInt64/int64(time.Millisecond) {
		return 0, false
	}
	return ms, true
}

// readLine returns the next line without its terminator. The line is valid
// until the next call. At the end of the stream it returns io.EOF and leaves
// an unterminated last line in d.line.
func (d *Decoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		// Peek only what is buffered (at least one byte) so that a line
		// end already received never waits for more input.
		if _, err := d.r.Peek(1); err != nil {
			return nil, err
		}
		buf, _ := d.r.Peek(d.r.Buffered())
		if d.skipLF {
			d.skipLF = false
			if buf[0] == '\n' {
				d.r.Discard(1)
				continue
			}
		}
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			i = len(buf)
		}
		if j := bytes.IndexByte(buf[:i], '\r'); j >= 0 {
			i = j
		}
		if i == len(buf) { // no line end yet
			if len(d.line)+len(buf) > maxLine {
				return nil, ErrTooLong
			}
			d.line = append(d.line, buf...)
			d.r.Discard(len(buf))
			continue
		}
		if len(d.line)+i > maxLine {
			return nil, ErrTooLong
		}
		d.skipLF = buf[i] == '\r'
		line := buf[:i]
		if len(d.line) > 0 {
			d.line = append(d.line, line...)
			line = d.line
		}
		// Discard does not overwrite the buffer, so line stays valid
		// until the next Peek.
		d.r.Discard(i + 1)
		return line, nil
	}
}
