package bench

import (
	"math"
	"sync"
	"testing"
	"time"
)

// TestHistogramPercentiles checks the percentiles of known data: 1..10,000 µs, each once,
// recorded in shuffled order by several goroutines. The p-th percentile of that set is
// p·100 µs; the histogram must be within its 1% precision, and the maximum exact.
func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 10000 - g; v >= 1; v -= 4 {
				h.Record(time.Duration(v) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if h.Count() != 10000 {
		t.Fatalf("count %d, want 10000", h.Count())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.001, 10 * time.Microsecond},
		{0.50, 5000 * time.Microsecond},
		{0.90, 9000 * time.Microsecond},
		{0.99, 9900 * time.Microsecond},
		{0.999, 9990 * time.Microsecond},
		{1, 10000 * time.Microsecond},
	} {
		got := h.Quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.01 {
			t.Errorf("Quantile(%v) = %v, want %v within 1%% (off by %.2f%%)", tc.q, got, tc.want, rel*100)
		}
	}
	if h.Max() != 10*time.Millisecond {
		t.Errorf("Max = %v, want 10ms exactly", h.Max())
	}
	if got, want := h.Mean(), 5000500*time.Nanosecond; got != want {
		t.Errorf("Mean = %v, want %v", got, want)
	}
	s := h.Summary()
	if s.Count != 10000 || math.Abs(s.P99Ms-9.9) > 0.099 || s.MaxMs != 10 {
		t.Errorf("Summary = %+v", s)
	}
}

// TestHistogramSkewed checks a distribution like a real run's: 990 fast lines and 10 slow
// ones; p99 must be a fast one, p99.9 and the maximum a slow one.
func TestHistogramSkewed(t *testing.T) {
	var h Histogram
	for range 990 {
		h.Record(2 * time.Millisecond)
	}
	for range 10 {
		h.Record(300 * time.Millisecond)
	}
	near := func(got, want time.Duration) bool { return math.Abs(float64(got-want)) <= 0.01*float64(want) }
	if got := h.Quantile(0.99); !near(got, 2*time.Millisecond) {
		t.Errorf("p99 = %v, want 2ms", got)
	}
	if got := h.Quantile(0.999); !near(got, 300*time.Millisecond) {
		t.Errorf("p99.9 = %v, want 300ms", got)
	}
	if got := h.Quantile(0.5); !near(got, 2*time.Millisecond) {
		t.Errorf("p50 = %v, want 2ms", got)
	}
}

// TestHistogramBounds checks clamping to 1 µs..60 s, the empty histogram, and Merge.
func TestHistogramBounds(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Errorf("empty histogram: p50 %v, max %v, mean %v; want 0", h.Quantile(0.5), h.Max(), h.Mean())
	}
	h.Record(-time.Second) // a clock step: counts as the minimum
	h.Record(time.Hour)
	if h.Max() != time.Minute {
		t.Errorf("Max = %v, want 60s (clamped)", h.Max())
	}
	if got := h.Quantile(0); got < time.Microsecond || got > 1010*time.Nanosecond {
		t.Errorf("lowest = %v, want about 1µs", got)
	}
	var o Histogram
	o.Record(5 * time.Millisecond)
	o.Merge(&h)
	if o.Count() != 3 || o.Max() != time.Minute {
		t.Errorf("merged: count %d max %v, want 3 and 60s", o.Count(), o.Max())
	}
	if got := o.Quantile(0.5); math.Abs(float64(got-5*time.Millisecond)) > 0.01*float64(5*time.Millisecond) {
		t.Errorf("merged p50 = %v, want 5ms", got)
	}
}

// TestHistogramBuckets checks the bucket layout: contiguous, every value inside its
// bucket, no bucket wider than 1/64 of its values above 128 ns, and 60 s in range.
func TestHistogramBuckets(t *testing.T) {
	if b := bucketOf(maxValue); b >= numBuckets {
		t.Fatalf("60s falls in bucket %d of %d", b, numBuckets)
	}
	next := int64(0)
	for i := range numBuckets {
		lo, w := bucketRange(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if lo >= subCount && float64(w)/float64(lo) > 1.0/64 {
			t.Fatalf("bucket %d is %d wide at %d", i, w, lo)
		}
		for _, v := range []int64{lo, lo + w - 1} {
			if bucketOf(v) != i {
				t.Fatalf("value %d in bucket %d, want %d", v, bucketOf(v), i)
			}
		}
		next = lo + w
	}
}
