package backoff

import (
	"context"
	"testing"
	"time"
)

// TestDelay proves the rule "exponential backoff with equal jitter": the delay after
// attempt n lies between half and all of min·2ⁿ, capped at max, and never overflows
// however many attempts fail.
func TestDelay(t *testing.T) {
	for n := 0; n < 200; n++ {
		want := min(time.Minute<<min(n, 10), time.Hour)
		for range 20 {
			if d := Delay(time.Minute, time.Hour, n); d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if d := Delay(0, time.Second, 3); d != 0 {
		t.Fatalf("Delay with min 0 = %v, want 0", d)
	}
}

// TestSleep proves Sleep reports a full wait, and one that its context cut short.
func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1ms reported it was cut short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Fatal("Sleep with a done context waited, or reported a full wait")
	}
}
