package file

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// BenchmarkAppend measures publishing: 80-byte lines (a log) and 32 KiB chunks (a
// bulk upload), with the server's default SyncInterval of 1s and with an fsync per
// append (SyncInterval 0). A follower is attached, as on a watched stream, so the tail is
// filled too. The stream is replaced every 256 MiB, untimed, to bound the disk used.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"line80", 80}, {"chunk32KiB", 32 << 10}} {
		for _, sync := range []struct {
			name     string
			interval time.Duration
		}{{"sync1s", time.Second}, {"fsync", 0}} {
			b.Run(size.name+"/"+sync.name, func(b *testing.B) {
				s := openStore(b, b.TempDir(), Options{SyncInterval: sync.interval})
				p := randBytes(6, size.n)
				gen := 0
				var h, follower sluice.Stream
				fresh := func() {
					if h != nil {
						h.Release()
						follower.Release()
						if err := s.Purge(ctx, fmt.Sprint("bench/", gen)); err != nil {
							b.Fatal(err)
						}
					}
					gen++
					create(b, s, fmt.Sprint("bench/", gen))
					h = open(b, s, fmt.Sprint("bench/", gen))
					follower = open(b, s, fmt.Sprint("bench/", gen))
					if _, _, _, err := follower.Read(context.Background(), make([]byte, 1), 0); err != nil {
						b.Fatal(err)
					}
				}
				fresh()
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				var off int64
				for b.Loop() {
					info, err := h.Append(ctx, off, p)
					if err != nil {
						b.Fatal(err)
					}
					if off = info.Length; off >= 256<<20 {
						b.StopTimer()
						fresh()
						off = 0
						b.StartTimer()
					}
				}
			})
		}
	}
}

// BenchmarkRead measures a follower's Read: "tail" reads recent bytes, a view of the
// shared in-memory tail (no copy, no allocation); "disk" reads bytes older than the tail
// from the data file into the caller's 32 KiB buffer, as a lagging follower does.
func BenchmarkRead(b *testing.B) {
	const size = 4 << 20
	s := openStore(b, b.TempDir(), Options{SyncInterval: time.Hour, TailSize: 1 << 20})
	create(b, s, "r")
	w := open(b, s, "r")
	r := open(b, s, "r")
	if _, _, _, err := r.Read(context.Background(), nil, 0); err != nil {
		b.Fatal(err)
	}
	p := randBytes(7, 32<<10)
	for off := int64(0); off < size; off += int64(len(p)) {
		mustAppend(b, w, off, p)
	}
	sn := r.(*handle).st.snap.Load()
	buf := make([]byte, 32<<10)
	for _, c := range []struct {
		name     string
		from, to int64
		view     bool
	}{
		{"tail", sn.Tail.Start(), size, true},
		{"disk", 0, sn.Tail.Start(), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			if !c.view {
				b.SetBytes(4096) // a view copies nothing: bytes per second would mean nothing
			}
			off := c.from
			for b.Loop() {
				got, _, _, err := r.Read(context.Background(), buf[:4096], off)
				if err != nil || len(got) == 0 || (&got[0] != &buf[0]) != c.view {
					b.Fatalf("Read(%d) = %d bytes, %v; want a view: %v", off, len(got), err, c.view)
				}
				if off += 4096 + 17; off >= c.to {
					off = c.from
				}
			}
		})
	}
}

// BenchmarkCreate measures creating streams: one at a time ("serial"), and 64 at once
// ("parallel64"), as when a burst of builds starts; each create is durable before it
// returns.
func BenchmarkCreate(b *testing.B) {
	for _, c := range []struct {
		name string
		p    int
	}{{"serial", 0}, {"parallel64", 64}} {
		b.Run(c.name, func(b *testing.B) {
			s := openStore(b, b.TempDir(), Options{SyncInterval: time.Second})
			var n atomic.Int64
			b.ReportAllocs()
			if c.p == 0 {
				for b.Loop() {
					create(b, s, fmt.Sprint("bench/", n.Add(1)))
				}
				return
			}
			b.SetParallelism(c.p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					create(b, s, fmt.Sprint("bench/", n.Add(1)))
				}
			})
		})
	}
}
