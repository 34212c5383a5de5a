package closelog

import (
	"fmt"
	"slices"
	"testing"
)

// TestSince proves a reader misses no close: it gets every key added after its cursor,
// in order, once, and is told when the log no longer holds some of them.
func TestSince(t *testing.T) {
	var l Log
	n := l.Notify()
	l.Add("a")
	select {
	case <-n:
	default:
		t.Fatal("Add did not close the channel Notify returned before it")
	}
	l.Add("b")
	keys, cur, ok := l.Since(0)
	if !slices.Equal(keys, []string{"a", "b"}) || cur != 2 || !ok {
		t.Fatalf("Since(0) = %v, %d, %v; want [a b], 2, true", keys, cur, ok)
	}
	if keys, cur2, ok := l.Since(cur); len(keys) != 0 || cur2 != cur || !ok {
		t.Fatalf("Since(%d) with nothing new = %v, %d, %v", cur, keys, cur2, ok)
	}
	for i := range 3 * Keep {
		l.Add(fmt.Sprint(i))
	}
	keys, end, ok := l.Since(cur)
	if ok {
		t.Fatal("a reader left behind by more than Keep closes was told it had them all")
	}
	if len(keys) < Keep || keys[len(keys)-1] != fmt.Sprint(3*Keep-1) || end != 2+3*Keep {
		t.Fatalf("Since after overflow: %d keys ending %q, cursor %d", len(keys), keys[len(keys)-1], end)
	}
	if len(l.keys) >= 2*Keep {
		t.Fatalf("log holds %d keys, want fewer than %d", len(l.keys), 2*Keep)
	}
}
