// Package sse encodes and decodes the Server-Sent Events (text/event-stream)
// form of Sluice's live byte streams.
//
// A stream is a sequence of bytes; each event carries a run of consecutive
// bytes and its id is the stream offset just after the run's last byte, so a
// browser's automatic Last-Event-ID on reconnect is exactly the offset to
// resume from. The framing is busl's, byte for byte:
//
//	id: 6
//	data: hello
//	data:
//
// carries "hello\n": the data lines joined with "\n" give the bytes back.
//
// SSE is a UTF-8 text format in which "\r" ends a line, so it cannot carry
// "\r", NUL or invalid UTF-8. Runs containing such bytes are sent as
//
//	id: 10
//	event: base64
//	data: <standard base64 of the run>
//
// Only the lines holding such bytes are base64-encoded, so one progress bar
// does not turn a whole log into base64.
//
// The Decoder reads any event stream following the WHATWG parsing rules;
// Event.Bytes turns both kinds of event back into stream bytes.
package sse

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxEventData bounds the data bytes carried by one event, before base64,
// so that neither side needs unbounded memory for one event however long a
// line the stream holds.
const MaxEventData = 64 << 10

// AppendEvents appends to dst the events that carry data, whose first byte is
// at stream offset off, and returns the extended buffer and how many bytes of
// data it consumed.
//
// Unless final is true it holds back a trailing incomplete UTF-8 sequence
// (1-3 bytes that could still become a valid character when more bytes
// arrive), so a character split across writes never forces base64; the caller
// passes those bytes again, followed by the next ones, on its next call.
// When final is true everything is consumed.
//
// AppendEvents does not allocate when dst has enough capacity.
func AppendEvents(dst, data []byte, off int64, final bool) ([]byte, int) {
	return appendEvents(dst, data, off, final, MaxEventData)
}

// appendEvents is AppendEvents with the event size limit as a parameter, so
// that tests can exercise event splitting with small inputs.
// limit must be at least utf8.UTFMax, so that every window holds a rune boundary.
func appendEvents(dst, data []byte, off int64, final bool, limit int) ([]byte, int) {
	n := len(data)
	if !final {
		n -= partialRune(data)
	}
	run := data[:n]
	for i := 0; i < n; {
		bs, be := badSpan(run, i)
		dst = appendText(dst, run[i:bs], off+int64(i), limit)
		dst = appendBase64(dst, run[bs:be], off+int64(bs), limit)
		i = be
	}
	return dst, n
}

// AppendRetry appends a block that sets the client's reconnection delay to d.
// The blank line ends the block, so it cannot merge with a following event.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, max(d.Milliseconds(), 0), 10)
	return append(dst, "\n\n"...)
}

// AppendKeepalive appends a comment block. Clients ignore it, but it keeps
// idle connections from being closed by proxies and lets the server notice
// clients that went away.
func AppendKeepalive(dst []byte) []byte {
	return append(dst, ":keepalive\n\n"...)
}

// AppendEnd appends the event that tells the client the stream is complete
// at length bytes. Its data line is empty but present, because clients do not
// dispatch an event without one.
func AppendEnd(dst []byte, length int64) []byte {
	dst = append(dst, "event: end\nid: "...)
	dst = strconv.AppendInt(dst, length, 10)
	return append(dst, "\ndata: \n\n"...)
}

// partialRune returns the length of the incomplete UTF-8 sequence that ends
// p and could still become a valid character, or 0 if there is none.
func partialRune(p []byte) int {
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		c := p[len(p)-k]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			// FullRune reports an invalid prefix as a full (error) rune,
			// so it is false only for a prefix of a valid character.
			if !utf8.FullRune(p[len(p)-k:]) {
				return k
			}
			return 0
		}
	}
	return 0
}

// badSpan returns the first span of run at or after i that must be sent as
// base64: the lines, from just after a '\n' to and including the next one (or
// the end of run), holding bytes a text event cannot carry, with adjacent such
// lines merged. It returns len(run), len(run) if run[i:] is clean.
func badSpan(run []byte, i int) (start, end int) {
	b := i + firstBad(run[i:])
	if b == len(run) {
		return b, b
	}
	start = i + bytes.LastIndexByte(run[i:b], '\n') + 1
	end = lineEnd(run, b)
	for end < len(run) {
		next := lineEnd(run, end)
		if firstBad(run[end:next]) == next-end {
			break
		}
		end = next
	}
	return start, end
}

// lineEnd returns the index just after the first '\n' in run at or after i,
// or len(run).
func lineEnd(run []byte, i int) int {
	if j := bytes.IndexByte(run[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(run)
}

// firstBad returns the index of the first byte of p that a text event cannot
// carry ('\r', NUL or the start of invalid UTF-8), or len(p).
func firstBad(p []byte) int {
	const crs = '\r' * ones
	i := 0
	for i < len(p) {
		// Logs are mostly ASCII: check 8 bytes at a time.
		for i+8 <= len(p) {
			x := binary.LittleEndian.Uint64(p[i:])
			if x&highs != 0 || hasZero(x) || hasZero(x^crs) {
				break
			}
			i += 8
		}
		if i == len(p) {
			break
		}
		if c := p[i]; c < utf8.RuneSelf {
			if c == '\r' || c == 0 {
				return i
			}
			i++
			continue
		}
		_, size := utf8.DecodeRune(p[i:])
		if size == 1 { // valid non-ASCII runes are at least 2 bytes
			return i
		}
		i += size
	}
	return len(p)
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasZero reports whether any byte of x is zero.
func hasZero(x uint64) bool { return (x-ones)&^x&highs != 0 }

// appendText appends text events carrying the clean bytes p, whose first byte
// is at offset off, splitting p into events of at most limit bytes.
func appendText(dst, p []byte, off int64, limit int) []byte {
	for len(p) > 0 {
		n := len(p)
		if n > limit {
			n = textCut(p, limit)
		}
		off += int64(n)
		dst = append(dst, "id: "...)
		dst = strconv.AppendInt(dst, off, 10)
		dst = append(dst, '\n')
		q := p[:n]
		for {
			j := bytes.IndexByte(q, '\n')
			if j < 0 {
				break
			}
			dst = append(dst, "data: "...)
			dst = append(dst, q[:j+1]...)
			q = q[j+1:]
		}
		dst = append(dst, "data: "...)
		dst = append(dst, q...)
		dst = append(dst, "\n\n"...)
		p = p[n:]
	}
	return dst
}

// textCut returns where to end the first event of the clean bytes p, which
// are longer than limit: just after a '\n' in the second half of the window
// if there is one, so that events hold whole lines, otherwise at the last
// rune boundary, so that each event is valid UTF-8 on its own.
func textCut(p []byte, limit int) int {
	if j := bytes.LastIndexByte(p[limit/2:limit], '\n'); j >= 0 {
		return limit/2 + j + 1
	}
	n := limit
	for !utf8.RuneStart(p[n]) {
		n--
	}
	return n
}

// appendBase64 appends base64 events carrying p, whose first byte is at
// offset off, in pieces of at most limit bytes.
func appendBase64(dst, p []byte, off int64, limit int) []byte {
	for len(p) > 0 {
		n := min(len(p), limit)
		off += int64(n)
		dst = append(dst, "id: "...)
		dst = strconv.AppendInt(dst, off, 10)
		dst = append(dst, "\nevent: base64\ndata: "...)
		dst = base64.StdEncoding.AppendEncode(dst, p[:n])
		dst = append(dst, "\n\n"...)
		p = p[n:]
	}
	return dst
}
