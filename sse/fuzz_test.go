package sse

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzRoundTrip writes data in chunks whose sizes are the bytes of splits,
// encodes them as a server does and checks that decoding gives data back,
// with offsets as ids, events within size and text events clean.
// Each chunk size byte also picks an event size limit, so that small inputs
// exercise event splitting.
func FuzzRoundTrip(f *testing.F) {
	seeds := []struct{ data, splits string }{
		{"hello\n", ""},
		{"a\nb", "\x01"},
		{"ok\nprogress 10%\r20%\r\ndone\n", "\x05\x07"},
		{"\r\n\r\n", "\x01\x01\x01"},
		{"a\x00b\n", ""},
		{"bad \xff\nok\n", "\x04"},
		{"price: €5\n", "\x08\x01"},
		{"😀😀😀", "\x01\x01\x01\x01\x01\x01"},
		{"\xe2\x82", "\x01"},
		{"é€😀é€😀é€😀é€😀", "\x00"},
		{strings.Repeat("line\n", 50), "\x10\x20"},
		{"\xf0\x9f\x98", "\x02"},
		{"\xed\xa0\x80", ""}, // surrogate half: invalid
	}
	for _, s := range seeds {
		f.Add([]byte(s.data), []byte(s.splits))
	}
	f.Fuzz(func(t *testing.T, data, splits []byte) {
		var chunks [][]byte
		for _, s := range splits {
			k := min(len(data), int(s))
			chunks, data = append(chunks, data[:k]), data[k:]
		}
		chunks = append(chunks, data)
		limit := MaxEventData
		if len(splits) > 0 {
			limit = 4 + int(splits[0])%64
		}
		roundTrip(t, chunks, int64(len(splits)), limit)
		roundTrip(t, chunks, 0, MaxEventData)
	})
}

// FuzzDecoder checks that the decoder neither panics nor loops on any input,
// and that how the input is split into reads does not change the events.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("retry: 3000\n\nid: 6\ndata: hello\ndata: \n\n:keepalive\n\nevent: end\nid: 6\ndata: \n\n"))
	f.Add([]byte("id: 4\nevent: base64\ndata: DQoNCg==\n\n"))
	f.Add([]byte("\uFEFFdata:a\r\rdata\r\n\r\nid: 1\x00\nretry: 12x\n\n"))
	f.Add([]byte("data: a\n\ndata"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		whole, err1 := decodeAll(bytes.NewReader(stream))
		bytewise, err2 := decodeAll(iotest.OneByteReader(bytes.NewReader(stream)))
		if err1 != err2 || len(whole) != len(bytewise) {
			t.Fatalf("whole: %q, %v; bytewise: %q, %v", whole, err1, bytewise, err2)
		}
		if err1 != io.EOF && err1 != io.ErrUnexpectedEOF {
			t.Fatalf("error %v", err1)
		}
		for i := range whole {
			if whole[i] != bytewise[i] {
				t.Fatalf("event %d: whole %q, bytewise %q", i, whole[i], bytewise[i])
			}
			whole[i].Bytes()
		}
		if len(whole) > len(stream)/2 {
			t.Fatalf("%d events from %d bytes", len(whole), len(stream))
		}
	})
}
