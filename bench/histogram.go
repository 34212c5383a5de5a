package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// A Histogram counts durations in log-spaced buckets, HDR style: each power of two is
// split into 64 buckets, so a bucket is at most 1/64 of its value wide and a reported
// percentile, the bucket's midpoint, is within 0.8% of the true one. Values are
// nanoseconds from 1 µs (anything below counts as 1 µs) to 60 s (anything above counts
// as 60 s); the exact maximum is kept besides. It holds about 16 KiB whatever the number
// of samples, and is safe for concurrent use: followers record into one shared Histogram
// with atomic adds, so no follower keeps a slice of samples.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64 // nanoseconds, for the mean
	max    atomic.Int64 // nanoseconds, exact
}

const (
	subBits  = 7 // 2^subBits sub-buckets below the first doubling, 2^(subBits-1) per doubling after
	subCount = 1 << subBits
	subHalf  = subCount / 2
	minValue = int64(time.Microsecond)
	maxValue = int64(60 * time.Second)
	// numBuckets covers values below 2^36 ns (68.7 s), so maxValue (60 s) fits.
	numBuckets = (36-subBits)*subHalf + subCount
)

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits
	return shift*subHalf + int(v>>shift)
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	shift := i/subHalf - 1
	return int64(i%subHalf+subHalf) << shift, 1 << shift
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := min(max(int64(d), minValue), maxValue)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for m := h.max.Load(); v > m && !h.max.CompareAndSwap(m, v); m = h.max.Load() {
	}
}

// Count is the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest duration recorded (clamped to 1 µs..60 s).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean is the average duration recorded.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// Quantile returns the duration below or at which a fraction q (0..1) of the recorded
// durations lie: the midpoint of the bucket holding the ceil(q·n)-th smallest, never
// above the maximum. It is 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, w := bucketRange(i)
			return time.Duration(min(lo+w/2, h.max.Load()))
		}
	}
	return h.Max()
}

// Merge adds the counts of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	v := o.max.Load()
	for m := h.max.Load(); v > m && !h.max.CompareAndSwap(m, v); m = h.max.Load() {
	}
}

// Summary is a histogram's percentiles, in milliseconds for people and machines alike.
type Summary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Summary returns the histogram's count, mean, p50, p90, p99, p99.9 and maximum.
func (h *Histogram) Summary() Summary {
	return Summary{
		Count:  h.Count(),
		MeanMs: ms(h.Mean()),
		P50Ms:  ms(h.Quantile(0.50)),
		P90Ms:  ms(h.Quantile(0.90)),
		P99Ms:  ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)),
		MaxMs:  ms(h.Max()),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
