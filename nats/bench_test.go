package nats

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// BenchmarkAppend measures one producer's throughput into one stream, JetStream (3
// replicas) beside the local file store (fsync every append, its strictest setting, and
// every second, its default), on the same machine.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{100, 64 << 10} {
		p := make([]byte, size)
		b.Run(fmt.Sprintf("nats/%d", size), func(b *testing.B) {
			s := newBenchStore(b)
			key := fmt.Sprintf("bench-append-%d-%d", size, time.Now().UnixNano())
			s.Create(ctx, key)
			h, _ := s.Open(ctx, key)
			defer h.Release()
			benchAppend(b, h, p)
		})
		for _, sync := range []time.Duration{0, time.Second} {
			b.Run(fmt.Sprintf("file-sync%v/%d", sync, size), func(b *testing.B) {
				fs, err := file.Open(b.TempDir(), file.Options{SyncInterval: sync})
				if err != nil {
					b.Fatal(err)
				}
				defer fs.Close()
				fs.Create(ctx, "k")
				h, _ := fs.Open(ctx, "k")
				defer h.Release()
				benchAppend(b, h, p)
			})
		}
	}
}

func benchAppend(b *testing.B, h sluice.Stream, p []byte) {
	b.SetBytes(int64(len(p)))
	var off int64
	for b.Loop() {
		if _, err := h.Append(ctx, off, p); err != nil {
			b.Fatal(err)
		}
		off += int64(len(p))
	}
}

// BenchmarkPublishToFollow measures the latency from Append on one instance to the
// bytes being readable by a follower on another (p50 and p99 reported), one line at a
// time, waiting for each before the next.
func BenchmarkPublishToFollow(b *testing.B) {
	pub, sub := newBenchStore(b), newBenchStore(b)
	key := fmt.Sprintf("bench-follow-%d", time.Now().UnixNano())
	pub.Create(ctx, key)
	hp, _ := pub.Open(ctx, key)
	defer hp.Release()
	hs, _ := sub.Open(ctx, key)
	defer hs.Release()
	line := []byte("a line of build output, about eighty bytes long, as a producer writes it...\n")
	buf := make([]byte, 4096)
	var off int64
	hs.Read(buf, 0) // starts following
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := hp.Append(ctx, off, line); err != nil {
			b.Fatal(err)
		}
		off += int64(len(line))
		for {
			_, info, ch, err := hs.Read(buf, off-1)
			if err != nil {
				b.Fatal(err)
			}
			if info.Length >= off {
				break
			}
			select {
			case <-ch:
			case <-time.After(failAfter):
				b.Fatal("follower never saw the append")
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func newBenchStore(b *testing.B) *Store {
	b.Helper()
	return newStoreTB(b, Options{})
}
