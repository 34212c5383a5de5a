package bench

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/sse"
)

// lines returns n lines of size bytes, sent at t.
func lines(n, size int, t time.Time) []byte {
	var b []byte
	for i := range n {
		b = appendLine(b, int64(i), t, size)
	}
	return b
}

// feedPieces passes p to consume in pieces of random sizes, as a network would.
func feedPieces(rng *rand.Rand, p []byte, consume func([]byte)) {
	for len(p) > 0 {
		k := min(len(p), 1+rng.IntN(300))
		consume(p[:k])
		p = p[k:]
	}
}

// TestLineFormat checks the self-describing line: the exact size asked, a header with
// the sequence number and send time, and a newline only at the end.
func TestLineFormat(t *testing.T) {
	at := time.Unix(1767312000, 123456789)
	for _, size := range []int{MinLineSize, 100, 128, 4096} {
		l := appendLine(nil, 42, at, size)
		if len(l) != size || bytes.IndexByte(l, '\n') != size-1 {
			t.Fatalf("size %d: line %q is %d bytes with its newline at %d", size, l, len(l), bytes.IndexByte(l, '\n'))
		}
		if want := "0000000042 1767312000123456789 "; string(l[:headerLen]) != want {
			t.Errorf("header %q, want %q", l[:headerLen], want)
		}
	}
}

// TestVerifierAcceptsAndMeasures feeds a verifier good lines in random pieces: no
// problem, every line counted and its latency recorded, the checksum the producer's.
func TestVerifierAcceptsAndMeasures(t *testing.T) {
	var lat Histogram
	v := verifier{lat: &lat}
	data := lines(500, 77, time.Now().Add(-5*time.Millisecond))
	feedPieces(rand.New(rand.NewPCG(1, 2)), data, func(p []byte) { v.consume(p, time.Now()) })
	if v.problem != "" || v.lines != 500 || v.n != int64(len(data)) || v.crc != crc32.Checksum(data, castagnoli) {
		t.Fatalf("problem %q, lines %d, bytes %d/%d, crc ok %v", v.problem, v.lines, v.n, len(data), v.crc == crc32.Checksum(data, castagnoli))
	}
	if lat.Count() != 500 || lat.Quantile(0.5) < 5*time.Millisecond {
		t.Errorf("latencies: %d recorded, p50 %v; want 500, at least 5ms", lat.Count(), lat.Quantile(0.5))
	}
}

// TestVerifierCatches proves the checks can fail: a line lost, a line twice, a byte
// changed (same length, same lines: only the checksum differs), a short line.
func TestVerifierCatches(t *testing.T) {
	good := lines(20, 64, time.Now())
	line := func(i int) []byte { return good[i*64 : (i+1)*64] }
	flipped := bytes.Clone(good)
	flipped[5*64+40] ^= 1
	for _, tc := range []struct {
		name, problem string
		data          []byte
		crcDiffers    bool
	}{
		{"lost", "line 4 arrived where line 3 was due", append(bytes.Clone(good[:3*64]), good[4*64:]...), true},
		{"twice", "line 3 arrived where line 4 was due", append(append(bytes.Clone(good[:4*64]), line(3)...), good[4*64:]...), true},
		{"changed", "", flipped, true},
		{"short", "shorter than its header", append(bytes.Clone(good[:64]), "0000000001 12\n"...), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v verifier
			v.consume(tc.data, time.Now())
			if tc.problem == "" && v.problem != "" || !strings.Contains(v.problem, tc.problem) {
				t.Errorf("problem %q, want %q", v.problem, tc.problem)
			}
			if (v.crc != crc32.Checksum(good, castagnoli)) != tc.crcDiffers {
				t.Errorf("checksum differs: %v, want %v", !tc.crcDiffers, tc.crcDiffers)
			}
		})
	}
}

// TestSSEReaderRoundTrip decodes what the server's encoder (sse.AppendEvents) writes,
// the events cut into lines by a small buffer as a follower's is: text events, base64
// events for bytes SSE cannot carry, keepalives and the end event. The bytes must come
// back exactly, every id must check, and the end be seen.
func TestSSEReaderRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var stream, events []byte
	events = sse.AppendRetry(events, time.Second)
	for i := range 200 {
		var run []byte
		switch i % 4 {
		case 0: // whole lines
			run = lines(1+rng.IntN(5), 40+rng.IntN(3000), time.Now())
		case 1: // bytes SSE cannot carry
			run = []byte("\r\x00 progress 50%\r")
		case 2: // a long line without newline, across the 4 KiB buffer
			run = bytes.Repeat([]byte("x"), 5000+rng.IntN(10000))
		case 3:
			events = sse.AppendKeepalive(events)
			run = []byte("\n\n")
		}
		var n int
		events, n = sse.AppendEvents(events, run, int64(len(stream)), true)
		if n != len(run) {
			t.Fatalf("AppendEvents consumed %d of %d", n, len(run))
		}
		stream = append(stream, run...)
	}
	events = sse.AppendEnd(events, int64(len(stream)))

	var v verifier
	r := newSSEReader(&v, ProtocolBusl)
	br := newLineReader(events)
	for {
		frag, complete, ok := br.next()
		if !ok {
			break
		}
		r.line(frag, complete, time.Now())
	}
	if v.n != int64(len(stream)) || v.crc != crc32.Checksum(stream, castagnoli) {
		t.Fatalf("got %d bytes (checksum ok %v), want %d", v.n, v.crc == crc32.Checksum(stream, castagnoli), len(stream))
	}
	if !r.ended {
		t.Error("the end event was not seen")
	}
	// The stream has lines of other shapes (binary, x-runs), so the line checks complain;
	// the framing checks must not.
	if strings.Contains(v.problem, "event") || strings.Contains(v.problem, "base64") || strings.Contains(v.problem, "CR") {
		t.Errorf("framing problem on good events: %s", v.problem)
	}
}

// TestSSEReaderCatches proves the framing checks can fail.
func TestSSEReaderCatches(t *testing.T) {
	for _, tc := range []struct{ name, events, problem string }{
		{"wrong id", "id: 3\ndata: ab\n\n", `event id "3" after 2 bytes`},
		{"no id", "data: ab\n\n", "without an id"},
		{"end with data", "event: end\nid: 0\ndata: x\n\n", "end event carries data"},
		{"data after end", "event: end\nid: 0\ndata: \n\nid: 1\ndata: a\n\n", "data after the end"},
		{"bad base64", "event: base64\nid: 3\ndata: !!!!\n\n", "does not decode"},
		{"CR", "id: 2\ndata: a\rb\n\n", "CR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v verifier
			r := newSSEReader(&v, ProtocolBusl)
			feedSSE(r, []byte(tc.events))
			if !strings.Contains(v.problem, tc.problem) {
				t.Errorf("problem %q, want %q", v.problem, tc.problem)
			}
		})
	}
}

// lineReader cuts b into lines the way bufio.Reader.ReadSlice does with a 4 KiB buffer.
type lineReader struct{ b []byte }

func newLineReader(b []byte) *lineReader { return &lineReader{b: b} }

func (l *lineReader) next() (frag []byte, complete, ok bool) {
	if len(l.b) == 0 {
		return nil, false, false
	}
	i := bytes.IndexByte(l.b, '\n')
	if i < 0 || i >= readBuf {
		k := min(len(l.b), readBuf)
		frag, l.b = l.b[:k], l.b[k:]
		return frag, false, true
	}
	frag, l.b = l.b[:i+1], l.b[i+1:]
	return frag, true, true
}
