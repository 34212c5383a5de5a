package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

func TestAppendEvents(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		off   int64
		final bool
		want  string
		n     int
	}{
		{"empty", "", 0, true, "", 0},
		{"line", "hello\n", 0, false, "id: 6\ndata: hello\ndata: \n\n", 6},
		{"no trailing newline", "a\nb", 0, false, "id: 3\ndata: a\ndata: b\n\n", 3},
		{"multi-line with offset", "one\ntwo\nthree\n", 100, false,
			"id: 114\ndata: one\ndata: two\ndata: three\ndata: \n\n", 14},
		{"blank lines", "\n\n", 0, false, "id: 2\ndata: \ndata: \ndata: \n\n", 2},
		{"leading space kept", " x", 0, false, "id: 2\ndata:  x\n\n", 2},
		{"utf-8", "héllo €\n", 0, false, "id: 11\ndata: héllo €\ndata: \n\n", 11},
		{"carriage return line", "ok\nprogress 10%\r20%\r\ndone\n", 0, false,
			"id: 3\ndata: ok\ndata: \n\n" +
				"id: 21\nevent: base64\ndata: cHJvZ3Jlc3MgMTAlDTIwJQ0K\n\n" +
				"id: 26\ndata: done\ndata: \n\n", 26},
		{"crlf", "\r\n\r\nx\n", 0, false,
			"id: 4\nevent: base64\ndata: DQoNCg==\n\n" +
				"id: 6\ndata: x\ndata: \n\n", 6},
		{"nul", "a\x00b", 5, false, "id: 8\nevent: base64\ndata: YQBi\n\n", 3},
		{"invalid utf-8 line", "ok\nbad \xff\nok\n", 0, false,
			"id: 3\ndata: ok\ndata: \n\n" +
				"id: 9\nevent: base64\ndata: YmFkIP8K\n\n" +
				"id: 12\ndata: ok\ndata: \n\n", 12},
		{"adjacent bad lines merge", "x\ry\n\x00\nz", 0, false,
			"id: 6\nevent: base64\ndata: eA15CgAK\n\n" +
				"id: 7\ndata: z\n\n", 7},
		{"partial rune held back", "h\xc3", 0, false, "id: 1\ndata: h\n\n", 1},
		{"only partial rune", "\xe2\x82", 0, false, "", 0},
		{"partial rune flushed when final", "\xe2\x82", 0, true, "id: 2\nevent: base64\ndata: 4oI=\n\n", 2},
		{"invalid tail not held back", "a\xff", 0, false, "id: 2\nevent: base64\ndata: Yf8=\n\n", 2},
		{"broken sequence not held back", "a\xe2A", 0, false, "id: 3\nevent: base64\ndata: YeJB\n\n", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := AppendEvents([]byte("prefix"), []byte(tt.data), tt.off, tt.final)
			if string(got) != "prefix"+tt.want || n != tt.n {
				t.Errorf("AppendEvents(%q, %d, %v) = %q, %d; want %q, %d",
					tt.data, tt.off, tt.final, got[6:], n, tt.want, tt.n)
			}
		})
	}
}

func TestSplitCharacter(t *testing.T) {
	// "€" is E2 82 AC; a write boundary falls inside it.
	out, n := AppendEvents(nil, []byte("price: \xe2\x82"), 0, false)
	if want := "id: 7\ndata: price: \n\n"; string(out) != want || n != 7 {
		t.Fatalf("first call = %q, %d; want %q, 7", out, n, want)
	}
	out, n = AppendEvents(nil, []byte("\xe2\x82\xac5\n"), 7, false)
	if want := "id: 12\ndata: €5\ndata: \n\n"; string(out) != want || n != 5 {
		t.Fatalf("second call = %q, %d; want %q, 5", out, n, want)
	}
}

func TestAppendControl(t *testing.T) {
	tests := []struct{ got, want string }{
		{string(AppendRetry(nil, 3*time.Second)), "retry: 3000\n\n"},
		{string(AppendRetry(nil, 1500*time.Microsecond)), "retry: 1\n\n"},
		{string(AppendRetry(nil, -time.Second)), "retry: 0\n\n"},
		{string(AppendKeepalive(nil)), ":keepalive\n\n"},
		{string(AppendEnd(nil, 0)), "event: end\nid: 0\ndata: \n\n"},
		{string(AppendEnd([]byte("x"), 12345)), "xevent: end\nid: 12345\ndata: \n\n"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q; want %q", tt.got, tt.want)
		}
	}
}

func TestLongLine(t *testing.T) {
	// 200 KiB without a newline, of 2- to 4-byte characters, so that
	// a cut at exactly MaxEventData would fall inside "😀" (65536 % 9 == 7).
	var b strings.Builder
	for b.Len() < 200<<10 {
		b.WriteString("é€😀")
	}
	data := b.String()
	events := roundTrip(t, [][]byte{[]byte(data)}, 0, MaxEventData)
	if len(events) < 4 {
		t.Fatalf("got %d events; want at least 4", len(events))
	}
	if n := len(events[0].Data); n != MaxEventData-2 {
		t.Errorf("first event carries %d bytes; want %d", n, MaxEventData-2)
	}
	for i, e := range events {
		if e.Type != "" {
			t.Errorf("event %d has type %q; want text", i, e.Type)
		}
		if i < len(events)-1 && len(e.Data) < MaxEventData-utf8.UTFMax {
			t.Errorf("event %d carries %d bytes; want close to %d", i, len(e.Data), MaxEventData)
		}
	}
}

func TestLongRunSplitsAtLines(t *testing.T) {
	line := strings.Repeat("x", 999) + "\n"
	data := strings.Repeat(line, 200) // 200 kB
	events := roundTrip(t, [][]byte{[]byte(data)}, 0, MaxEventData)
	for i, e := range events[:len(events)-1] {
		if len(e.Data)%len(line) != 0 || len(e.Data) < MaxEventData/2 {
			t.Errorf("event %d: %d bytes, does not end just after a line", i, len(e.Data))
		}
	}
}

func TestLongBinary(t *testing.T) {
	data := bytes.Repeat([]byte{0, 1, 2, 0xff, '\r'}, 30000)
	events := roundTrip(t, [][]byte{data}, 7, MaxEventData)
	if len(events) != 3 {
		t.Fatalf("got %d events; want 3", len(events))
	}
	for _, e := range events {
		if e.Type != "base64" {
			t.Errorf("event %s has type %q; want base64", e.ID, e.Type)
		}
	}
}

func TestManyShortLines(t *testing.T) {
	var b bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	out, n := AppendEvents(nil, b.Bytes(), 0, false)
	if n != b.Len() {
		t.Fatalf("consumed %d of %d", n, b.Len())
	}
	if c := bytes.Count(out, []byte("id: ")); c != 1 {
		t.Errorf("got %d events; want 1", c)
	}
	if c := bytes.Count(out, []byte("data: ")); c != 2001 {
		t.Errorf("got %d data lines; want 2001", c)
	}
}

func TestIDs(t *testing.T) {
	data := []byte("a\nb\r\nc\xffd\n" + strings.Repeat("z", 70000))
	var ids []int64
	for _, e := range roundTrip(t, [][]byte{data}, 1000, MaxEventData) {
		id, _ := strconv.ParseInt(e.ID, 10, 64)
		ids = append(ids, id)
	}
	// "b\r\n" and "c\xffd\n" go in one base64 event.
	want := []int64{1002, 1009, 1009 + MaxEventData, 1000 + int64(len(data))}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("ids = %v; want %v", ids, want)
	}
}

func TestAllocs(t *testing.T) {
	data := []byte(strings.Repeat("log line with some text\n", 100) + "bin\x00ary\n")
	dst := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		dst, _ = AppendEvents(dst[:0], data, 1<<40, false)
	})
	if allocs != 0 {
		t.Errorf("AppendEvents allocates %v times; want 0", allocs)
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", " ", "\n", "\r", "\x00", "é", "€", "😀", "\xff", "\xe2", "\x82", "\xac"}
	for range 500 {
		var b bytes.Buffer
		for range r.IntN(300) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		data := b.Bytes()
		var chunks [][]byte
		for len(data) > 0 {
			k := min(len(data), r.IntN(20))
			chunks, data = append(chunks, data[:k]), data[k:]
		}
		roundTrip(t, chunks, int64(r.IntN(1000)), 4+r.IntN(60))
	}
}

// encode encodes the stream that starts at offset off and is written in the
// given chunks, as a server does: bytes held back are passed again with the
// next chunk, and the last call is final.
func encode(t testing.TB, chunks [][]byte, off int64, limit int) []byte {
	var wire, pending []byte
	for i, c := range chunks {
		final := i == len(chunks)-1
		pending = append(pending, c...)
		var n int
		wire, n = appendEvents(wire, pending, off, final, limit)
		if final && n != len(pending) {
			t.Fatalf("final call consumed %d of %d bytes", n, len(pending))
		}
		if k := len(pending) - n; k > 0 && (k >= utf8.UTFMax || utf8.FullRune(pending[n:]) || !utf8.RuneStart(pending[n])) {
			t.Fatalf("held back %q, not an incomplete character", pending[n:])
		}
		off += int64(n)
		pending = append(pending[:0], pending[n:]...)
	}
	return wire
}

// roundTrip encodes the chunks, decodes the result and checks that it gives
// back the bytes, with each event's id the offset after its bytes, no event
// carrying more than limit bytes and text events carrying clean text.
// It returns the decoded events.
func roundTrip(t testing.TB, chunks [][]byte, off int64, limit int) []Event {
	t.Helper()
	wire := encode(t, chunks, off, limit)
	want := bytes.Join(chunks, nil)
	var got []byte
	var events []Event
	d := NewDecoder(bytes.NewReader(wire))
	for {
		e, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		events = append(events, e)
		b, err := e.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		switch e.Type {
		case "":
			if !utf8.ValidString(e.Data) || strings.ContainsAny(e.Data, "\r\x00") {
				t.Errorf("text event %s carries %q", e.ID, e.Data)
			}
		case "base64":
		default:
			t.Errorf("event %s has type %q", e.ID, e.Type)
		}
		if len(b) == 0 || len(b) > limit {
			t.Errorf("event %s carries %d bytes; want 1 to %d", e.ID, len(b), limit)
		}
		got = append(got, b...)
		if want := strconv.FormatInt(off+int64(len(got)), 10); e.ID != want {
			t.Errorf("event id %s; want %s", e.ID, want)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip of %q gave %q", want, got)
	}
	if utf8.Valid(want) && !bytes.ContainsAny(want, "\r\x00") {
		for _, e := range events {
			if e.Type != "" {
				t.Fatalf("clean text %q, written in %q, gave a %s event", want, chunks, e.Type)
			}
		}
	}
	return events
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []Event
		err    error
	}{
		{"empty", "", nil, io.EOF},
		{"one event", "id: 6\ndata: hello\ndata: \n\n", []Event{{ID: "6", Data: "hello\n"}}, io.EOF},
		{"crlf and cr line ends", "data: a\r\ndata: b\rdata: c\r\r\n", []Event{{Data: "a\nb\nc"}}, io.EOF},
		{"comments", ":keepalive\n\n:x\ndata: a\n:y\n\n", []Event{{Data: "a"}}, io.EOF},
		{"bom", "\uFEFFdata: a\n\n", []Event{{Data: "a"}}, io.EOF},
		{"only one space stripped", "data:a\ndata:  b\n\n", []Event{{Data: "a\n b"}}, io.EOF},
		{"field without colon", "data\ndata\n\n", []Event{{Data: "\n"}}, io.EOF},
		{"event type resets", "event: base64\ndata: YQ==\n\ndata: b\n\n",
			[]Event{{Type: "base64", Data: "YQ=="}, {Data: "b"}}, io.EOF},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
			[]Event{{ID: "1", Data: "a"}, {ID: "1", Data: "b"}, {Data: "c"}}, io.EOF},
		{"id with nul ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			[]Event{{ID: "1", Data: "a"}, {ID: "1", Data: "b"}}, io.EOF},
		{"no data no event", "event: x\nid: 3\n\nretry: 10\n\n", nil, io.EOF},
		{"event type of dataless block dropped", "event: x\n\ndata: a\n\n", []Event{{Data: "a"}}, io.EOF},
		{"end event", "event: end\nid: 12\ndata: \n\n", []Event{{ID: "12", Type: "end"}}, io.EOF},
		{"unknown fields", "foo: bar\ndata: a\nDATA: b\n\n", []Event{{Data: "a"}}, io.EOF},
		{"truncated event", "data: a\n\ndata: b\n", []Event{{Data: "a"}}, io.ErrUnexpectedEOF},
		{"truncated line", "data: a\n\ndata", []Event{{Data: "a"}}, io.ErrUnexpectedEOF},
		{"truncated comment", "data: a\n\n:keep", []Event{{Data: "a"}}, io.ErrUnexpectedEOF},
		{"line too long", "data: " + strings.Repeat("x", maxLine) + "\n\n", nil, ErrTooLong},
		{"event too long", strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", 1100), nil, ErrTooLong},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"bytewise": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, reader := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				got, err := decodeAll(reader(tt.stream))
				if !errors.Is(err, tt.err) {
					t.Errorf("error %v; want %v", err, tt.err)
				}
				if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
					t.Errorf("events %q; want %q", got, tt.want)
				}
			})
		}
	}
}

// decodeAll returns the events of the stream r, and the error that ended it.
func decodeAll(r io.Reader) ([]Event, error) {
	var events []Event
	d := NewDecoder(r)
	for {
		e, err := d.Next()
		if err != nil {
			if _, err2 := d.Next(); err2 != err {
				return events, fmt.Errorf("error %v not sticky: then %v", err, err2)
			}
			return events, err
		}
		events = append(events, e)
	}
}

func TestDecoderRetry(t *testing.T) {
	d := NewDecoder(strings.NewReader("retry: 3000\n\nretry: x\nretry: 1e3\nretry\nretry: 99999999999999999999\ndata: a\n\n"))
	if _, ok := d.Retry(); ok {
		t.Error("Retry set before reading")
	}
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	if r, ok := d.Retry(); r != 3*time.Second || !ok {
		t.Errorf("Retry() = %v, %v; want 3s, true", r, ok)
	}
}

// A line end already received must not wait for more input, and the '\n'
// of a "\r\n" split across reads must not end another line.
func TestDecoderLive(t *testing.T) {
	pr, pw := io.Pipe()
	d := NewDecoder(pr)
	more := make(chan bool)
	go func() {
		pw.Write([]byte("data: a\r"))
		pw.Write([]byte("\r"))
		<-more
		pw.Write([]byte("\ndata: b\r"))
		pw.Write([]byte("\n\r\n"))
		pw.Close()
	}()
	e, err := d.Next() // deadlocks if Next waits for more input
	if err != nil || e.Data != "a" {
		t.Fatalf("Next() = %q, %v; want data a", e, err)
	}
	close(more)
	e, err = d.Next()
	if err != nil || e.Data != "b" {
		t.Fatalf("Next() = %q, %v; want data b", e, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("Next() error %v; want EOF", err)
	}
}

func TestEventBytes(t *testing.T) {
	tests := []struct {
		e    Event
		want string
		ok   bool
	}{
		{Event{Data: "a\nb"}, "a\nb", true},
		{Event{Type: "base64", Data: "YQBi"}, "a\x00b", true},
		{Event{Type: "end"}, "", true},
		{Event{Type: "base64", Data: "YQB"}, "", false},
		{Event{Type: "base64", Data: "YQ Bi"}, "", false},
	}
	for _, tt := range tests {
		b, err := tt.e.Bytes()
		if string(b) != tt.want || (err == nil) != tt.ok {
			t.Errorf("%q.Bytes() = %q, %v; want %q, ok %v", tt.e, b, err, tt.want, tt.ok)
		}
	}
}
