package nats

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
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
			s.Create(ctx, key, sluice.CreateOptions{})
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
				fs.Create(ctx, "k", sluice.CreateOptions{})
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
	pub.Create(ctx, key, sluice.CreateOptions{})
	hp, _ := pub.Open(ctx, key)
	defer hp.Release()
	hs, _ := sub.Open(ctx, key)
	defer hs.Release()
	line := []byte("a line of build output, about eighty bytes long, as a producer writes it...\n")
	buf := make([]byte, 4096)
	var off int64
	hs.Read(context.Background(), buf, 0) // starts following
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := hp.Append(ctx, off, line); err != nil {
			b.Fatal(err)
		}
		off += int64(len(line))
		for {
			_, info, ch, err := hs.Read(context.Background(), buf, off-1)
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

// newBenchStore opens a Store for the benchmarks that call Append in a loop, without
// Linger: in a loop no bytes gather while an Append is held, so holding it would only
// measure the wait. BenchmarkLineWrites measures Linger, with a producer whose bytes do.
func newBenchStore(b *testing.B) *Store {
	b.Helper()
	return newStoreTB(b, Options{Linger: -1})
}

// BenchmarkLineWrites measures what a producer writing one 80-byte line at a time costs
// JetStream, with and without Linger: chunks (messages) per line, bytes stored per line
// (payload and per-chunk overhead, one replica's share), and the latency from a line's
// write to a follower on another instance reading it (p50 and p99). The lines reach
// Append as they reach the HTTP server's publish loop: through a kernel buffer (a pipe)
// read whole, so lines written while an Append is in flight or held join the next one.
func BenchmarkLineWrites(b *testing.B) {
	for _, every := range []time.Duration{time.Millisecond, 100 * time.Microsecond} {
		for _, linger := range []time.Duration{-1, 5 * time.Millisecond} {
			name := fmt.Sprintf("every=%v/linger=%v", every, max(linger, 0))
			b.Run(name, func(b *testing.B) { benchLineWrites(b, every, linger) })
		}
	}
}

func benchLineWrites(b *testing.B, every, linger time.Duration) {
	s, other := newStoreTB(b, Options{Linger: linger}), newStoreTB(b, Options{})
	key := fmt.Sprintf("bench-lines-%d", time.Now().UnixNano())
	s.Create(ctx, key, sluice.CreateOptions{})
	h, err := s.Open(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Release()
	f, err := other.Open(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Release()
	f.Read(context.Background(), nil, 0) // starts following
	line := []byte("a line of build output, about eighty bytes long, as a producer writes it...\n")
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close()
	written := make([]atomic.Int64, b.N) // each line's write time, in Unix nanoseconds
	appended := make(chan error, 1)
	go func() { appended <- appendFrom(h, pr, func(sluice.Info) {}) }()
	lat := make([]time.Duration, 0, b.N)
	followed := make(chan error, 1)
	go func() { // a follower on the other instance
		buf := make([]byte, 64<<10)
		var off int64
		for end := int64(b.N * len(line)); off < end; {
			p, _, changed, err := f.Read(context.Background(), buf, off)
			if err != nil {
				followed <- err
				return
			}
			if len(p) == 0 {
				<-changed
				continue
			}
			now := time.Now().UnixNano()
			for i := off / int64(len(line)); i < (off+int64(len(p)))/int64(len(line)); i++ {
				lat = append(lat, time.Duration(now-written[i].Load()))
			}
			off += int64(len(p))
		}
		followed <- nil
	}()
	before, err := s.js1.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		written[i].Store(time.Now().UnixNano())
		if _, err := pw.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	pw.Close()
	for _, c := range []chan error{appended, followed} {
		if err := <-c; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after, err := s.js1.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	chunks := float64(after.State.Msgs - before.State.Msgs)
	stored := float64(after.State.Bytes - before.State.Bytes)
	payload := float64(b.N * len(line))
	b.ReportMetric(chunks/float64(b.N), "chunks/line")
	b.ReportMetric(stored/float64(b.N), "stored-B/line")
	b.ReportMetric((stored-payload)/chunks, "overhead-B/chunk")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
