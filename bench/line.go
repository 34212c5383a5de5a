package bench

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"
)

// Every published line is self-describing, so that a follower can measure its latency and
// check its order without knowing anything but the format:
//
//	0000000042 1767312000123456789 abcdefgh...xyz\n
//
// the line's sequence number in 10 digits, a space, the time it was handed to the
// connection in Unix nanoseconds in 19 digits, a space, then padding up to the line size,
// the last byte a newline. The producer and each follower keep a CRC-32C of all the bytes
// (hardware-accelerated, so it keeps up with loopback speeds) and compare them at the end.

const (
	seqDigits  = 10
	timeDigits = 19
	headerLen  = seqDigits + 1 + timeDigits + 1
	// MinLineSize is the smallest line: the header and the newline.
	MinLineSize = headerLen + 1
	// MaxLineSize bounds a line, so that a producer batch holds at least one.
	MaxLineSize = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const padding = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// appendLine appends line seq, sent at t, of size bytes (at least MinLineSize).
func appendLine(dst []byte, seq int64, t time.Time, size int) []byte {
	dst = appendPadded(dst, seq, seqDigits)
	dst = append(dst, ' ')
	dst = appendPadded(dst, t.UnixNano(), timeDigits)
	dst = append(dst, ' ')
	for n := size - headerLen - 1; n > 0; {
		k := min(n, len(padding))
		dst = append(dst, padding[:k]...)
		n -= k
	}
	return append(dst, '\n')
}

// appendPadded appends v in decimal, zero-padded to width digits.
func appendPadded(dst []byte, v int64, width int) []byte {
	var b [20]byte
	s := strconv.AppendInt(b[:0], v, 10)
	for range width - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// parseDigits parses an all-digit field; ok is false for anything else.
func parseDigits(b []byte) (v int64, ok bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// verifier checks the bytes one follower receives: it counts and checksums them, and
// parses each line's header to check the sequence and record the latency. It holds a
// few dozen bytes, whatever the stream's size.
type verifier struct {
	lat     *Histogram // shared by all followers of a run
	crc     uint32
	n       int64 // bytes received
	lines   int64 // line headers parsed
	hdr     [headerLen]byte
	hdrLen  int  // bytes of the current line's header collected so far
	inBody  bool // the current line's header is complete: skip to its newline
	problem string
}

// consume takes the next bytes received, at time now.
func (v *verifier) consume(p []byte, now time.Time) {
	v.crc = crc32.Update(v.crc, castagnoli, p)
	v.n += int64(len(p))
	for len(p) > 0 {
		if v.inBody {
			i := indexNewline(p)
			if i < 0 {
				return
			}
			p, v.inBody = p[i+1:], false
			continue
		}
		k := copy(v.hdr[v.hdrLen:], p)
		if i := indexNewline(p[:k]); i >= 0 {
			v.fail(fmt.Sprintf("line %d is %d bytes, shorter than its header", v.lines, v.hdrLen+i+1))
			v.hdrLen, p = 0, p[i+1:]
			continue
		}
		v.hdrLen += k
		p = p[k:]
		if v.hdrLen < headerLen {
			return
		}
		v.line(now)
		v.hdrLen, v.inBody = 0, true
	}
}

// line checks a complete header and records the line's latency.
func (v *verifier) line(now time.Time) {
	seq, ok1 := parseDigits(v.hdr[:seqDigits])
	sent, ok2 := parseDigits(v.hdr[seqDigits+1 : seqDigits+1+timeDigits])
	if !ok1 || !ok2 || v.hdr[seqDigits] != ' ' || v.hdr[headerLen-1] != ' ' {
		v.fail(fmt.Sprintf("line %d has a malformed header %q", v.lines, v.hdr[:]))
	} else if seq != v.lines {
		v.fail(fmt.Sprintf("line %d arrived where line %d was due (at byte %d)", seq, v.lines, v.n))
	} else if v.lat != nil {
		v.lat.Record(now.Sub(time.Unix(0, sent)))
	}
	v.lines++
}

// fail records the first problem seen; the follower is then incomplete.
func (v *verifier) fail(s string) {
	if v.problem == "" {
		v.problem = s
	}
}

func indexNewline(p []byte) int { return bytes.IndexByte(p, '\n') }
