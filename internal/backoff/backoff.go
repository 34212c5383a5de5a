// Package backoff is the one retry rule of Sluice's clients and background work:
// exponential delays with jitter, and a sleep that a context cuts short.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns how long to wait after failed attempt n (from 0): min doubled n times,
// at most max, with "equal jitter": between half and all of it. The randomness spreads
// the retries of many clients that failed together (every producer of a server that
// just restarted, every stream of an archive that was down); the half that is kept
// makes sure a retry never comes at once.
func Delay(min, max time.Duration, n int) time.Duration {
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d = minDur(d, max); d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// Sleep waits for d or until ctx is done, and reports whether the whole wait elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
