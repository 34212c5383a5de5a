package sluice

import (
	"testing"
	"time"
)

// TestArchiverBackoff proves the retry rule "exponential backoff with jitter": the delay
// after attempt n lies between half and all of MinBackoff·2ⁿ, capped at MaxBackoff, and
// never overflows however many attempts fail.
func TestArchiverBackoff(t *testing.T) {
	a := NewArchiver(nil, nil, ArchiverOptions{MinBackoff: time.Minute, MaxBackoff: time.Hour})
	for n := 0; n < 200; n++ {
		want := min(time.Minute<<min(n, 10), time.Hour)
		for range 20 {
			if d := a.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
