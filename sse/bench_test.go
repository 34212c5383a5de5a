package sse

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func BenchmarkAppendEvents(b *testing.B) {
	// An 80-byte log line.
	line := "2024-05-01T12:00:00Z app[web.1]: GET /api/items 200 12ms user=42 bytes=18340 ok\n"
	var log strings.Builder
	for i := 0; log.Len() < 16<<10; i++ {
		fmt.Fprintf(&log, "2024-05-01T12:00:%02dZ app[web.1]: step %d done in %dms\n", i%60, i, i*7%1000)
	}
	binary := make([]byte, 16<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range binary {
		binary[i] = byte(r.Uint32())
	}
	for _, bm := range []struct {
		name string
		data []byte
	}{
		{"line80", []byte(line)},
		{"log16K", []byte(log.String()[:16<<10])},
		{"binary16K", binary},
	} {
		b.Run(bm.name, func(b *testing.B) {
			dst := make([]byte, 0, 64<<10)
			b.SetBytes(int64(len(bm.data)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = AppendEvents(dst[:0], bm.data, 1<<30, false)
			}
		})
	}
}

func BenchmarkDecoder(b *testing.B) {
	var log strings.Builder
	for i := 0; log.Len() < 1<<20; i++ {
		fmt.Fprintf(&log, "2024-05-01T12:00:%02dZ app[web.1]: step %d done in %dms\n", i%60, i, i*7%1000)
	}
	var wire []byte
	for off, s := 0, log.String(); off < len(s); off += 16 << 10 {
		wire, _ = AppendEvents(wire, []byte(s[off:min(off+16<<10, len(s))]), int64(off), true)
	}
	b.SetBytes(int64(log.Len()))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecoder(bytes.NewReader(wire))
		for {
			if _, err := d.Next(); err != nil {
				break
			}
		}
	}
}
